"""Masked BatchNorm: statistics over valid positions only, equal to BatchNorm of the
valid positions gathered together."""

import pytest
import torch

from espnet_iml.norm import MaskedBatchNorm


def test_statistics_ignore_padding_1d_and_2d():
    torch.manual_seed(0)
    lengths = [20, 12, 7]
    for channel_dim, shape in [(-1, (3, 20, 8)), (1, (3, 8, 20, 5))]:
        bn = MaskedBatchNorm(8, channel_dim=channel_dim).double()
        x = torch.randn(*shape, dtype=torch.float64) * 2 + 1
        time_dim = 1 if channel_dim == -1 else 2
        mshape = [3, 1, 1] if channel_dim == -1 else [3, 1, 20, 1]
        if channel_dim == -1:
            mshape = [3, 20, 1]
        mask = torch.zeros(*mshape, dtype=torch.bool)
        for i, n in enumerate(lengths):
            mask[i].narrow(time_dim - 1, 0, n).fill_(True)
        x_pad = x.masked_fill(~mask, 1e3)  # garbage in padding must not matter
        y = bn(x_pad, mask)
        valid = [x[i].narrow(time_dim - 1, 0, n) for i, n in enumerate(lengths)]
        flat = torch.cat([v.movedim(channel_dim if channel_dim == -1 else 0, -1).reshape(-1, 8)
                          for v in valid])
        ref_bn = torch.nn.BatchNorm1d(8).double()
        ref = ref_bn(flat)
        got = torch.cat([y[i].narrow(time_dim - 1, 0, n)
                         .movedim(channel_dim if channel_dim == -1 else 0, -1).reshape(-1, 8)
                         for i, n in enumerate(lengths)])
        torch.testing.assert_close(got, ref)
        torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
        torch.testing.assert_close(bn.running_var, ref_bn.running_var)


def test_eval_mode_is_the_folded_affine_map():
    bn = MaskedBatchNorm(4)
    bn.train()
    bn(torch.randn(2, 10, 4) * 3 + 2)
    bn.eval()
    x = torch.randn(2, 5, 4)
    a, c = bn.eval_affine()
    torch.testing.assert_close(bn(x), x * a + c)


def test_torch_sync_batchnorm_conversion_leaves_masked_norms_alone():
    """convert_sync_batchnorm swaps torch BatchNorms by type; ours has a mask and a channel
    layout that SyncBatchNorm lacks, so it must stay (same state, same training output)."""
    from espnet_iml.encoder import IMLSpikeformerEncoder

    torch.manual_seed(0)
    enc = IMLSpikeformerEncoder(80, output_size=16, attention_heads=2, linear_units=32,
                                num_blocks=1, qkv_conv_kernel=3, dropout_rate=0.0)
    n_masked = sum(isinstance(m, MaskedBatchNorm) for m in enc.modules())
    assert n_masked >= 4  # front end, branch norms, Rep layers
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    x, lens = torch.randn(2, 40, 80), torch.tensor([40, 25])
    torch.manual_seed(1)
    ref = enc(x, lens)[0]
    enc.load_state_dict(before)
    conv = torch.nn.SyncBatchNorm.convert_sync_batchnorm(enc)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in conv.modules())
    assert sum(isinstance(m, MaskedBatchNorm) for m in conv.modules()) == n_masked
    assert conv.state_dict().keys() == before.keys()
    torch.manual_seed(1)
    torch.testing.assert_close(conv(x, lens)[0], ref)


def test_sync_norm_option_reaches_every_masked_norm():
    from espnet_iml.encoder import IMLSpikeformerEncoder

    small = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
                 qkv_conv_kernel=3)
    for sync in (False, True):
        enc = IMLSpikeformerEncoder(80, **small, sync_norm=sync)
        norms = [m for m in enc.modules() if isinstance(m, MaskedBatchNorm)]
        assert norms and all(m.sync is sync for m in norms)


# --- Synchronized statistics across 2 processes ------------------------------------------
# Each rank holds part of a padded batch (its own lengths and padded length). Reference: one
# torch.nn.BatchNorm1d over the valid positions of all ranks gathered together.
LAYOUTS = {  # channel_dim -> (per-rank padded shapes, lengths per rank)
    -1: ([(2, 20, 6), (3, 14, 6)], [[20, 9], [14, 5, 11]]),
    1: ([(2, 6, 20, 3), (3, 6, 14, 3)], [[20, 9], [14, 5, 11]]),
}


def _rank_data(channel_dim: int, rank: int):
    """x (padding filled with garbage), mask, and per-position loss weights (0 at padding)."""
    shapes, lengths = LAYOUTS[channel_dim]
    g = torch.Generator().manual_seed(10 * rank + (channel_dim % 4))
    x = torch.randn(*shapes[rank], generator=g, dtype=torch.float64) * 2 + 1
    t_dim = 1 if channel_dim == -1 else 2
    mshape = [x.size(0), x.size(1), 1] if channel_dim == -1 else [x.size(0), 1, x.size(2), 1]
    mask = torch.zeros(*mshape, dtype=torch.bool)
    for i, n in enumerate(lengths[rank]):
        mask[i].narrow(t_dim - 1, 0, n).fill_(True)
    x = x.masked_fill(~mask, 1e3)
    w = torch.randn(*x.shape, generator=g, dtype=torch.float64) * mask
    return x, mask, w


def _valid_rows(t: torch.Tensor, channel_dim: int, lengths) -> torch.Tensor:
    """Valid positions of a padded (B, T, C) or (B, C, T, F) tensor as (N, C) rows."""
    t_dim = 1 if channel_dim == -1 else 2
    rows = []
    for i, n in enumerate(lengths):
        v = t[i].narrow(t_dim - 1, 0, n)
        rows.append(v.reshape(-1, v.size(-1)) if channel_dim == -1
                    else v.movedim(0, -1).reshape(-1, v.size(0)))
    return torch.cat(rows)


def _sync_worker(rank: int, init: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        result = {}
        for sync in (True, False):
            for channel_dim in LAYOUTS:
                torch.manual_seed(0)
                bn = MaskedBatchNorm(6, channel_dim=channel_dim, sync=sync).double()
                with torch.no_grad():
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.uniform_(-0.5, 0.5)
                x, mask, w = _rank_data(channel_dim, rank)
                x.requires_grad_(True)
                y = bn(x, mask)
                (y * w).sum().backward()
                result[sync, channel_dim] = dict(
                    y=y.detach(), x_grad=x.grad, weight_grad=bn.weight.grad,
                    bias_grad=bn.bias.grad, running_mean=bn.running_mean,
                    running_var=bn.running_var)
        torch.save(result, f"{out}.{rank}")
        torch.distributed.barrier()  # neither rank tears gloo down while the other uses it
        open(f"{out}.{rank}.done", "w").close()
    finally:
        torch.distributed.destroy_process_group()


def _reference(channel_dim: int, ranks):
    """BatchNorm1d (training mode) on the valid rows of the given ranks, and gradients of
    sum(y * w) over those rows."""
    _, lengths = LAYOUTS[channel_dim]
    xs, ws = [], []
    for r in ranks:
        x, _, w = _rank_data(channel_dim, r)
        xs.append(_valid_rows(x, channel_dim, lengths[r]))
        ws.append(_valid_rows(w, channel_dim, lengths[r]))
    flat = torch.cat(xs).requires_grad_(True)
    torch.manual_seed(0)
    ref_bn = torch.nn.BatchNorm1d(6).double()
    with torch.no_grad():
        ref_bn.weight.uniform_(0.5, 1.5)
        ref_bn.bias.uniform_(-0.5, 0.5)
    y = ref_bn(flat)
    (y * torch.cat(ws)).sum().backward()
    sizes = [len(v) for v in xs]
    return dict(y=list(y.detach().split(sizes)), x_grad=list(flat.grad.split(sizes)),
                weight_grad=ref_bn.weight.grad, bias_grad=ref_bn.bias.grad,
                running_mean=ref_bn.running_mean, running_var=ref_bn.running_var)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Both ranks' results, with and without sync (one spawn of 2 gloo processes)."""
    tmp = tmp_path_factory.mktemp("sync_norm")
    try:
        torch.multiprocessing.spawn(_sync_worker, args=(f"file://{tmp}/init", str(tmp / "out")),
                                    nprocs=2)
    except torch.multiprocessing.ProcessExitedException:
        # On a busy machine gloo has (rarely) aborted a process while tearing down after
        # the work was done ("terminate called without an active exception"): results
        # that both ranks completed past the final barrier are still whole.
        if not all((tmp / f"out.{r}.done").exists() for r in range(2)):
            raise
    return [torch.load(tmp / f"out.{r}") for r in range(2)]


def test_sync_norm_matches_one_process_on_the_combined_batch(two_ranks):
    """sync=True on 2 gloo processes == one BatchNorm over both ranks' valid positions:
    outputs, running statistics, and gradients (through the all-reduced statistics)."""
    got = [{dim: r[True, dim] for dim in LAYOUTS} for r in two_ranks]
    for channel_dim in LAYOUTS:
        _, lengths = LAYOUTS[channel_dim]
        ref = _reference(channel_dim, [0, 1])
        for r in range(2):
            g = got[r][channel_dim]
            torch.testing.assert_close(_valid_rows(g["y"], channel_dim, lengths[r]),
                                       ref["y"][r])
            torch.testing.assert_close(_valid_rows(g["x_grad"], channel_dim, lengths[r]),
                                       ref["x_grad"][r])
            torch.testing.assert_close(g["running_mean"], ref["running_mean"])
            torch.testing.assert_close(g["running_var"], ref["running_var"])
        # Without DDP each rank's parameter gradient is its own loss's share: they add up.
        for name in ("weight_grad", "bias_grad"):
            torch.testing.assert_close(got[0][channel_dim][name] + got[1][channel_dim][name],
                                       ref[name])


def test_without_sync_each_process_keeps_its_own_statistics(two_ranks):
    """The default: each rank normalizes with, and tracks, its own share's statistics."""
    got = [{dim: r[False, dim] for dim in LAYOUTS} for r in two_ranks]
    for channel_dim in LAYOUTS:
        _, lengths = LAYOUTS[channel_dim]
        for r in range(2):
            ref = _reference(channel_dim, [r])
            g = got[r][channel_dim]
            torch.testing.assert_close(_valid_rows(g["y"], channel_dim, lengths[r]),
                                       ref["y"][0])
            torch.testing.assert_close(g["running_mean"], ref["running_mean"])
            torch.testing.assert_close(g["running_var"], ref["running_var"])
