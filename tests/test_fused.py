"""Fused front-end kernels (espnet_iml.fused) against the module-by-module path: the same
values, gradients and running statistics in float64, in training and in eval; the exact
algebra the fusion relies on; and the fallbacks that keep profilers working."""

import copy

import pytest
import torch

from espnet_iml.fused import conv_patches, fold_conv_bn_train, patch_moments
from espnet_iml.imls import if_reference
from espnet_iml.norm import MaskedBatchNorm
from espnet_iml.subsampling import SpikingConv2dSubsampling


def _pair(channels=6, odim=16, seed=0):
    torch.manual_seed(seed)
    fused = SpikingConv2dSubsampling(80, odim, True, dict(levels=4), channels).double()
    with torch.no_grad():
        for bn in (fused.bn1, fused.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    ref = copy.deepcopy(fused)
    ref.fusable = lambda: False  # the module-by-module path
    assert fused.fusable()
    return fused, ref


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(3, 61, 80, generator=g, dtype=torch.float64) * 2 + 0.5
    return xs, torch.tensor([61, 44, 23])


@pytest.mark.parametrize("channels, padded", [(6, True), (0, True), (6, False)])
def test_fused_training_step_equals_module_path(channels, padded):
    fused, ref = _pair(channels)
    xs, lens = _batch()
    if not padded:
        lens = torch.full_like(lens, xs.size(1))
    for step in range(2):  # the second step uses the running statistics of the first
        x1 = xs.clone().requires_grad_()  # a trainable front end before the encoder
        x2 = xs.clone().requires_grad_()
        y1, l1 = fused(x1, lens)
        y2, l2 = ref(x2, lens)
        assert torch.equal(l1, l2)
        torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
        g = torch.randn_like(y1)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        for (name, p1), (_, p2) in zip(fused.named_parameters(), ref.named_parameters()):
            scale = p2.grad.abs().max().clamp_min(1.0)
            torch.testing.assert_close(p1.grad / scale, p2.grad / scale, rtol=1e-9, atol=1e-9,
                                       msg=name)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-9)
        for (name, b1), (_, b2) in zip(fused.named_buffers(), ref.named_buffers()):
            torch.testing.assert_close(b1, b2, rtol=1e-10, atol=1e-12, msg=name)
        xs = xs.flip(1)


def test_fused_eval_folds_both_batchnorms_and_equals_module_path():
    fused, ref = _pair()
    xs, lens = _batch()
    with torch.no_grad():
        fused(xs, lens)
        ref(xs, lens)
    fused.eval()
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(xs, lens)[0], ref(xs, lens)[0], rtol=1e-10,
                                   atol=1e-10)
    # with gradients enabled (eval-mode fine-tuning of the rest of a model)
    y1, y2 = fused(xs, lens)[0], ref(xs, lens)[0]
    torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
    y1.sum().backward()
    y2.sum().backward()
    torch.testing.assert_close(fused.conv1.weight.grad, ref.conv1.weight.grad)


def test_front_end_counts_equal_the_d_step_reference():
    """The fused neuron1 output is S * theta with S the D-step integrate-and-fire count of
    U / theta, U = bn1(conv1(x)) computed the textbook way, theta = |k| mean|U| per frame."""
    fused, _ = _pair()
    xs, lens = _batch()
    fused.eval()
    with torch.no_grad():
        fused(xs, lens)
        from espnet_iml.fused import conv_bn_imls

        x4 = xs.unsqueeze(1)
        mask = torch.ones(3, 1, 30, 1, dtype=torch.bool)
        y = conv_bn_imls(fused.conv1, fused.bn1, fused.neuron1, x4, mask)
        bn = fused.bn1
        u = (fused.conv1(x4) - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            bn.running_var.view(1, -1, 1, 1) + bn.eps) * bn.weight.view(1, -1, 1, 1) \
            + bn.bias.view(1, -1, 1, 1)
        theta = fused.neuron1.k.abs() * u.abs().mean((1, 3), keepdim=True)
        torch.testing.assert_close(y, if_reference(u / theta, 4) * theta)


def test_patch_moments_give_the_batchnorm_statistics_of_the_conv_output():
    """Mean and biased variance of conv1's output over valid frames, written out from the
    output itself, equal W . mu + b and W^T Sigma W from the 9-dim input patches."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 5, 3, 2).double()
    bn = MaskedBatchNorm(5, channel_dim=1).double()
    xs, lens = _batch()
    x4 = xs.unsqueeze(1)
    out = conv(x4)
    t_valid = torch.div(lens - 1, 2, rounding_mode="floor")
    mask = (torch.arange(out.size(2))[None] < t_valid[:, None])[:, None, :, None]
    valid = torch.cat([out[i, :, :t].reshape(5, -1) for i, t in enumerate(t_valid)], 1)
    p2 = conv_patches(x4, 3, 2)
    rows = mask.expand(3, 1, out.size(2), out.size(3)).reshape(-1)
    n, s1, s2 = patch_moments(p2, rows)
    assert n == valid.size(1)
    mu = s1 / n
    cov = s2 / n - torch.outer(mu, mu)
    w = conv.weight.reshape(5, 9)
    torch.testing.assert_close(w @ mu + conv.bias, valid.mean(1))
    torch.testing.assert_close(((w @ cov) * w).sum(1), valid.var(1, unbiased=False))
    # the folded conv reproduces the normalized map on valid frames
    weight, bias = fold_conv_bn_train(conv, bn, p2, rows)
    folded = torch.nn.functional.conv2d(x4, weight, bias, stride=2)
    textbook = (out - valid.mean(1).view(1, 5, 1, 1)) / torch.sqrt(
        valid.var(1, unbiased=False).view(1, 5, 1, 1) + bn.eps)
    torch.testing.assert_close(folded * mask, textbook * mask)


def test_hooked_or_recording_modules_take_the_module_path():
    fused, _ = _pair()
    handle = fused.conv1.register_forward_hook(lambda *a: None)
    assert not fused.fusable()
    handle.remove()
    assert fused.fusable()
    fused.neuron2.recording = True
    assert not fused.fusable()
    fused.neuron2.recording = False
    fused.bn1.register_forward_pre_hook(lambda *a: None)
    assert not fused.fusable()
    real = SpikingConv2dSubsampling(80, 16, False)
    assert not real.fusable()


def test_constant_threshold_neurons_take_the_module_path():
    fe = SpikingConv2dSubsampling(80, 16, True, dict(levels=4, threshold="constant"))
    assert not fe.fusable()
    out, _ = fe(torch.randn(2, 30, 80), torch.tensor([30, 20]))
    assert torch.isfinite(out).all()


def _module_path():
    """A global no-op forward hook: every fused kernel then falls back to its modules
    (they would bypass the hook), which gives the composed reference."""
    from torch.nn.modules.module import register_module_forward_hook

    return register_module_forward_hook(lambda *a: None)


def _encoder_pair(**extra):
    """A small float64 encoder with non-trivial BatchNorm affines, and a copy of it."""
    from espnet_iml.encoder import IMLSpikeformerEncoder

    torch.manual_seed(0)
    conf = dict(output_size=16, attention_heads=2, linear_units=24, num_blocks=2,
                qkv_conv_kernel=3, dropout_rate=0.0, frontend_channels=6, **extra)
    fused = IMLSpikeformerEncoder(80, **conf).double()
    with torch.no_grad():
        for m in fused.modules():
            if isinstance(m, MaskedBatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return fused, copy.deepcopy(fused)


def _assert_same_grads_and_buffers(a, b):
    for (name, p1), (_, p2) in zip(a.named_parameters(), b.named_parameters()):
        scale = p2.grad.abs().max().clamp_min(1.0)
        torch.testing.assert_close(p1.grad / scale, p2.grad / scale, rtol=1e-8, atol=1e-8,
                                   msg=name)
    for (name, b1), (_, b2) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(b1, b2, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_encoder_training_step_equals_composed_modules(norm):
    """The whole encoder (front end, branch norm + neuron, FFN LinearBN + neuron, fused
    masked BatchNorms): outputs, every parameter's gradient and the running statistics of
    two training steps equal the module-by-module computation (float64, padded batch)."""
    fused, ref = _encoder_pair(branch_norm=norm)
    xs, lens = _batch()
    for step in range(2):
        y1, o1, _ = fused(xs, lens)
        handle = _module_path()
        try:
            y2, o2, _ = ref(xs, lens)
        finally:
            handle.remove()
        assert torch.equal(o1, o2)
        torch.testing.assert_close(y1, y2, rtol=1e-9, atol=1e-9)
        g = torch.randn_like(y1)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        _assert_same_grads_and_buffers(fused, ref)
    fused.eval()
    ref.eval()
    with torch.no_grad():
        y1 = fused(xs, lens)[0]
        handle = _module_path()
        try:
            y2 = ref(xs, lens)[0]
        finally:
            handle.remove()
    torch.testing.assert_close(y1, y2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("lens", [[61, 44, 23], [61, 61, 61]])
def test_rate_meter_keeps_the_fused_path_with_the_composed_gradient(lens):
    """Firing-rate-aware training: with a spike-count meter active, the encoder still takes
    the fused kernels (the meter is no hook), and r, every parameter's gradient of
    (output . g + 3 r) and the running statistics equal the composed path's, where every
    neuron adds its straight-through counts itself (float64; padded and unpadded)."""
    from espnet_iml.rate import SpikeCountMeter

    fused, ref = _encoder_pair()
    meters = SpikeCountMeter(fused), SpikeCountMeter(ref)
    assert fused.embed.fusable()
    xs, _ = _batch()
    lens = torch.tensor(lens)
    outs = []
    for enc, meter, composed in ((fused, meters[0], False), (ref, meters[1], True)):
        handle = _module_path() if composed else None
        try:
            meter.start()
            y = enc(xs, lens)[0]
            r = meter.stop()
        finally:
            if handle is not None:
                handle.remove()
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        ((y * g).sum() + 3.0 * r).backward()
        outs.append((y, r))
    (y1, r1), (y2, r2) = outs
    torch.testing.assert_close(y1, y2, rtol=1e-9, atol=1e-9)
    assert 0.05 < r1.item() < 4 and r1.item() == pytest.approx(r2.item(), rel=1e-12)
    _assert_same_grads_and_buffers(fused, ref)
    for meter in meters:
        meter.remove()
    assert all(n.meter is None for n in meters[0].neurons)
