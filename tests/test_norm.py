"""Masked BatchNorm: statistics over valid positions only, equal to BatchNorm of the
valid positions gathered together; its eval form, and the layers that fold it (LinearBN,
RepTemporalProjection), against the textbook (x - mean) / sqrt(var + eps) * w + b."""

import pytest
import torch

from espnet_iml.norm import MaskedBatchNorm
from espnet_iml.rep import LinearBN, RepTemporalProjection


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
def _textbook(x, mean, var, eps, w, b):
    """(x - mean) / sqrt(var + eps) * w + b, per channel on the last dim."""
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _set_stats(bn, mean, var, w, b):
    with torch.no_grad():
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    return bn.eval()


MEAN = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
# small variances, where leaving eps out changes the result by far more than rounding
VAR = torch.tensor([1e-3, 0.02, 1.0, 0.0], dtype=torch.float64)
W = torch.tensor([1.5, -0.5, 1.0, 2.0], dtype=torch.float64)
B = torch.tensor([0.1, 0.2, -0.3, 0.0], dtype=torch.float64)


def test_eval_form_is_the_textbook_formula_with_eps():
    x = torch.randn(2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bn = _set_stats(MaskedBatchNorm(4, eps=0.05).double(), MEAN, VAR, W, B)
    torch.testing.assert_close(bn(x), _textbook(x, MEAN, VAR, 0.05, W, B), rtol=1e-12, atol=1e-12)
    # channels first (the front end's 2-D maps)
    bn2d = _set_stats(MaskedBatchNorm(4, channel_dim=1, eps=0.05).double(), MEAN, VAR, W, B)
    x2d = torch.randn(2, 4, 3, 6, dtype=torch.float64)
    want = _textbook(x2d.movedim(1, -1), MEAN, VAR, 0.05, W, B).movedim(-1, 1)
    torch.testing.assert_close(bn2d(x2d), want, rtol=1e-12, atol=1e-12)


def test_folded_layers_equal_linear_then_textbook_batchnorm():
    """LinearBN and RepTemporalProjection fold their BatchNorms in eval: the result must be
    the layer followed by the textbook formula (default eps 1e-5, variances near it)."""
    torch.manual_seed(0)
    var = torch.tensor([1e-6, 3e-5, 0.5, 2.0], dtype=torch.float64)
    x = torch.randint(0, 5, (2, 9, 3)).double()
    layer = LinearBN(3, 4).double()
    _set_stats(layer.bn, MEAN, var, W, B)
    layer.eval()  # the folded path: one Linear with merged weights and bias
    want = _textbook(x @ layer.linear.weight.T, MEAN, var, 1e-5, W, B)
    torch.testing.assert_close(layer(x), want, rtol=1e-10, atol=1e-10)

    proj = RepTemporalProjection(3, 4, kernel_size=3).double()
    _set_stats(proj.bn_id, MEAN, var, W, B)
    _set_stats(proj.bn_conv, -MEAN, var.flip(0), B, W)
    proj.eval()  # the folded path: one depthwise conv with a merged kernel and bias
    mask = torch.ones(2, 9, 1, dtype=torch.bool)
    z = x @ proj.pointwise.weight.T  # (B, T, C)
    kern = proj.conv.weight[:, 0, :]  # (C, 3), centred: taps at t - 1, t, t + 1
    zp = torch.nn.functional.pad(z, (0, 0, 1, 1))
    conv = sum(zp[:, tap:tap + 9] * kern[:, tap] for tap in range(3))
    want = (_textbook(z, MEAN, var, 1e-5, W, B)
            + _textbook(conv, -MEAN, var.flip(0), 1e-5, B, W))
    torch.testing.assert_close(proj(x, mask), want, rtol=1e-10, atol=1e-10)


def test_training_form_uses_eps_with_batch_statistics():
    """Training: (x - batch mean) / sqrt(biased batch var + eps) * w + b."""
    x = torch.randn(3, 40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = x * torch.tensor([1e-2, 0.1, 1.0, 1e-3], dtype=torch.float64)  # small variances
    bn = MaskedBatchNorm(4, eps=1e-3).double()
    with torch.no_grad():
        bn.weight.copy_(W)
        bn.bias.copy_(B)
    flat = x.reshape(-1, 4)
    mean, var = flat.mean(0), ((flat - flat.mean(0)) ** 2).mean(0)
    torch.testing.assert_close(bn(x), _textbook(x, mean, var, 1e-3, W, B), rtol=1e-10, atol=1e-10)
    n = flat.shape[0]
    torch.testing.assert_close(bn.running_var, 0.9 * 1.0 + 0.1 * var * n / (n - 1))
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)


def test_linear_bn_trains_with_batch_statistics():
    """Training mode: Linear then BatchNorm with this batch's statistics (not the folded
    eval form), and the running statistics move."""
    torch.manual_seed(0)
    layer = LinearBN(3, 4).double()
    _set_stats(layer.bn, MEAN, VAR, W, B).train()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    z = (x @ layer.linear.weight.T).reshape(-1, 4)
    mean, var = z.mean(0), ((z - z.mean(0)) ** 2).mean(0)
    want = _textbook(z, mean, var, 1e-5, W, B).reshape(2, 9, 4)
    torch.testing.assert_close(layer(x), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.bn.running_mean, 0.9 * MEAN + 0.1 * mean)


@pytest.mark.parametrize("kernel", [0, 1])
def test_rep_projection_without_temporal_context(kernel):
    """kernel 0: pointwise + BN only; kernel 1: a per-channel scale as the conv branch. Eval
    (folded) and training forms against the textbook formula."""
    torch.manual_seed(0)
    var = torch.tensor([1e-6, 3e-5, 0.5, 2.0], dtype=torch.float64)
    proj = RepTemporalProjection(3, 4, kernel_size=kernel).double()
    assert hasattr(proj, "conv") == (kernel > 0)
    _set_stats(proj.bn_id, MEAN, var, W, B)
    if kernel:
        _set_stats(proj.bn_conv, -MEAN, var.flip(0), B, W)
    proj.eval()  # folded
    x = torch.randint(0, 5, (2, 6, 3)).double()
    mask = torch.ones(2, 6, 1, dtype=torch.bool)
    z = x @ proj.pointwise.weight.T
    want = _textbook(z, MEAN, var, 1e-5, W, B)
    if kernel:
        want = want + _textbook(z * proj.conv.weight[:, 0, 0], -MEAN, var.flip(0), 1e-5, B, W)
    torch.testing.assert_close(proj(x, mask), want, rtol=1e-10, atol=1e-10)
    proj.train()
    zf = z.reshape(-1, 4)
    want = _textbook(z, zf.mean(0), zf.var(0, unbiased=False), 1e-5, W, B)
    if kernel:
        c = zf * proj.conv.weight[:, 0, 0]
        want = want + _textbook(z * proj.conv.weight[:, 0, 0], c.mean(0),
                                c.var(0, unbiased=False), 1e-5, B, W)
    torch.testing.assert_close(proj(x, mask), want, rtol=1e-10, atol=1e-10)


def _composed_masked_bn(x, w, b, mask, eps, channel_dim=-1):
    """Masked BatchNorm as plain differentiable ops (autograd does the gradient): batch
    mean and biased variance over valid positions, applied at every position."""
    dims = [d for d in range(x.dim()) if d != channel_dim % x.dim()]
    shape = [1] * x.dim()
    shape[channel_dim] = x.size(channel_dim)
    m = mask.to(x.dtype).expand_as(x)
    n = m.sum(dims)
    mean = (x * m).sum(dims) / n
    var = (((x - mean.view(shape)) ** 2) * m).sum(dims) / n
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) * w.view(shape) \
        + b.view(shape)


@pytest.mark.parametrize("masked", [True, False])
def test_training_gradient_equals_composed_autograd(masked):
    """The written-out backward of the training form, for x, weight and bias, with padded
    positions (whose outputs use the valid statistics and so carry gradient too)."""
    g = torch.Generator().manual_seed(2)
    x1 = (torch.randn(3, 11, 5, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    mask = torch.ones(3, 11, 1, dtype=torch.bool)
    if masked:
        mask[0, 7:] = False
        mask[2, 4:] = False
    bn = MaskedBatchNorm(5, eps=1e-3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 1.0, 2.0, 0.3]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0, 1.0]))
    w2 = bn.weight.detach().clone().requires_grad_()
    b2 = bn.bias.detach().clone().requires_grad_()
    up = torch.randn(3, 11, 5, generator=g, dtype=torch.float64)
    y1 = bn(x1, mask if masked else None)
    y2 = _composed_masked_bn(x2, w2, b2, mask, 1e-3)
    torch.testing.assert_close(y1, y2)
    (y1 * up).sum().backward()
    (y2 * up).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(bn.weight.grad, w2.grad)
    torch.testing.assert_close(bn.bias.grad, b2.grad)
