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
