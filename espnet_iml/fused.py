"""Fused kernels of the spiking front end: fewer passes over memory (OUR DESIGN, issue 13).

In the spiking Conv2d front end, BatchNorm, the input-aware threshold, rounding and masks
run element-wise over conv1's full 2-D map (C x T/2 x 39 per utterance). Composed from
torch ops, every op is a pass over that map and a fresh 4-byte-per-element tensor, and
autograd keeps several of them for backward; on a CPU the fresh tensors alone cost more
than the arithmetic (each is page-faulted in anew). These autograd functions compute the
same values and gradients (tested in float64 against the module-by-module path) with:

- **conv1 -> bn1 (training) folded exactly.** conv1 has ONE input channel, so its output at
  every position is ``W_c . p + b_c`` with ``p`` the 9 input values under the kernel. The
  batch mean and biased variance of channel c over the valid positions are therefore
  ``W_c . mu + b_c`` and ``W_c^T Sigma W_c``, with ``mu`` and ``Sigma`` the mean and
  covariance of the 9-dim input patches: a 9 x 9 matrix from the (small) input instead of
  two passes over the 144-channel output. The normalized map is then ONE convolution with
  the folded weight ``W_c * s_c`` and bias ``beta_c - s_c W_c . mu``
  (``s_c = gamma_c / sqrt(var_c + eps)``); autograd carries the gradient through the
  9 x 9 statistics to W, b, gamma, beta (the conv bias, cancelled by the batch mean, gets a
  zero gradient, exactly as in exact arithmetic).
- **The IMLS neuron in place.** Threshold statistics once per token (one reduction that
  writes nothing), then divide, round, clamp and scale in the same buffer.
- **Recompute instead of save.** Backward recomputes the normalized map from the input
  (conv1: one cheap convolution; bn2: one affine pass) instead of keeping it: the front end
  keeps the neuron outputs that the next layer needs anyway, and the 2-D input, nothing
  else (a ReLU front end keeps the same).
- **bn2 + neuron2 in one function** with BatchNorm's backward written out, its output
  written directly in the (B, T, C x F) layout the projection reads.
- **Channels-last 2-D maps** (``channels_last_one_channel``): a frame's values are
  contiguous for its threshold, and conv2 runs in mkldnn's native layout.

The composed path (``SpikingConv2dSubsampling`` calling its modules one by one) stays the
reference, and is taken when a module is hooked (profilers such as espnet_iml.energy), when
a neuron records its counts or is not an input-aware IMLS neuron (the LIF baseline), and
under ``sync_norm`` with several processes.
"""

from typing import Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from espnet_iml.imls import imls_counts_, imls_grad_, imls_threshold


# --------------------------------------------------------------------------- conv1 + bn1 + IMLS


def patch_moments(xs4: torch.Tensor, mask: Optional[torch.Tensor], kernel: int, stride: int
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, sum p, sum p p^T) over the valid output positions of a one-input-channel conv,
    in float64. xs4: (B, 1, T, F); mask: (B, 1, T', 1) bool over output frames or None."""
    b = xs4.size(0)
    p = F.unfold(xs4.double(), kernel, stride=stride)  # (B, k*k, T' * F')
    if mask is not None:
        t_out = mask.size(2)
        m = mask.to(p.dtype).reshape(b, 1, t_out, 1).expand(b, 1, t_out, p.size(2) // t_out)
        pm = p * m.reshape(b, 1, -1)
        n = m.sum()
    else:
        pm = p
        n = torch.tensor(float(p.size(0) * p.size(2)), dtype=p.dtype, device=p.device)
    s1 = pm.sum((0, 2))
    pp = p.transpose(0, 1).reshape(p.size(1), -1)
    s2 = pm.transpose(0, 1).reshape(p.size(1), -1) @ pp.T
    return n, s1, s2


def fold_conv_bn_train(conv: torch.nn.Conv2d, bn, xs4: torch.Tensor,
                       mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``bn(conv(xs4))`` in training mode as ONE conv (see module doc);
    updates bn's running statistics. Differentiable in conv's and bn's parameters."""
    ksz, stride = conv.kernel_size[0], conv.stride[0]
    n, s1, s2 = patch_moments(xs4, mask, ksz, stride)
    n_f = float(n)
    nn_ = max(n_f, 1.0)
    mu = s1 / nn_
    cov = s2 / nn_ - torch.outer(mu, mu)
    w2 = conv.weight.reshape(conv.out_channels, -1)
    wd = w2.double()
    wmu = wd @ mu  # W . mu (the conv bias cancels in x - mean)
    var = ((wd @ cov) * wd).sum(1).clamp_min(0.0)
    mean = wmu + (conv.bias.double() if conv.bias is not None else 0.0)
    bn.update_running(mean, var, nn_)
    scale = bn.weight * torch.rsqrt(var.to(bn.weight.dtype) + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    if conv.bias is not None:
        # b - mean (= -W . mu): the bias keeps its (zero) gradient, as in exact arithmetic
        return weight, bn.bias + (conv.bias - mean.to(scale.dtype)) * scale
    return weight, bn.bias - mean.to(scale.dtype) * scale


class _ConvIMLS(torch.autograd.Function):
    """y = IMLS(conv2d(xs, w, b)) with an input-aware threshold over ``dims``; backward
    recomputes the convolution instead of saving its 2-D output."""

    @staticmethod
    def forward(ctx, xs4, w, b, k, mask, stride, levels, dims, eps):
        u = F.conv2d(xs4, w, b, stride=stride)
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()
        theta, mean_abs = imls_threshold(u, k, dims, eps)
        y = imls_counts_(u, theta, mask, levels).mul_(theta)
        ctx.save_for_backward(xs4, w, b, k, theta, mean_abs, mask)
        ctx.cfg = (stride, levels, dims, eps)
        return y

    @staticmethod
    def backward(ctx, gy):
        xs4, w, b, k, theta, mean_abs, mask = ctx.saved_tensors
        stride, levels, dims, eps = ctx.cfg
        u = F.conv2d(xs4, w, b, stride=stride)
        low = u.dtype
        if low in (torch.float16, torch.bfloat16):
            u = u.float()
        grad_u, grad_k = imls_grad_(u.div_(theta), gy.to(u.dtype), theta, mean_abs, k, mask,
                                    levels, dims, eps)
        del u
        grad_u = grad_u.to(low)
        need = ctx.needs_input_grad
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad_u, xs4, w, [w.size(0)], [stride, stride], [0, 0], [1, 1], False, [0, 0], 1,
            [need[0], need[1], need[2]])
        return gx, gw, gb, grad_k, None, None, None, None, None


def conv_bn_imls(conv: torch.nn.Conv2d, bn, neuron, xs4: torch.Tensor,
                 mask: Optional[torch.Tensor]) -> torch.Tensor:
    """neuron(bn(conv(xs4), mask), mask) for a one-input-channel conv: training mode folds
    bn with the batch statistics (fold_conv_bn_train), eval mode with its running ones."""
    mask = drop_full_mask(mask)
    if bn.training:
        w, b = fold_conv_bn_train(conv, bn, xs4, mask)
    else:
        w, b = fold_conv_bn_eval(conv, bn)
    dims = neuron.reduce_dims
    stride = conv.stride[0]
    dev = xs4.device.type
    if torch.is_autocast_enabled(dev):
        low = torch.get_autocast_dtype(dev)
        xs4, w, b = xs4.to(low), w.to(low), b.to(low)
    xs4 = channels_last_one_channel(xs4)
    with torch.autocast(device_type=dev, enabled=False):
        if not torch.is_grad_enabled():
            u = F.conv2d(xs4, w, b, stride=stride)
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            theta, _ = imls_threshold(u, neuron.k, dims, neuron.eps)
            return imls_counts_(u, theta, mask, neuron.levels).mul_(theta)
        return _ConvIMLS.apply(xs4, w, b, neuron.k, mask, stride, neuron.levels, dims,
                               neuron.eps)


def drop_full_mask(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """None when every position is valid (an unpadded batch): the masked passes are then
    skipped. CPU only, where the check is free; on a GPU it would wait for the device."""
    if mask is not None and mask.device.type == "cpu" and bool(mask.all()):
        return None
    return mask


def channels_last_one_channel(x: torch.Tensor) -> torch.Tensor:
    """The same (B, 1, T, F) data with channels-last strides. With one channel both layouts
    hold the same bytes, but the strides decide the layout of the conv's OUTPUT: channels
    last, each frame's C x F' values are contiguous (the threshold reduces over them in one
    run) and conv2's mkldnn kernels run without converting layouts back and forth (on a
    CPU about half of conv2's time in the NCHW layout ESPnet uses)."""
    x = x.contiguous()
    return x.as_strided(x.shape, (x.stride(0), 1, x.stride(2), x.stride(3)))


def fold_conv_bn_eval(conv: torch.nn.Conv2d, bn) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``bn(conv(x))`` in eval mode (bn a per-channel affine a x + c)."""
    a, c = bn.eval_affine()
    bias = conv.bias * a + c if conv.bias is not None else c
    return conv.weight * a.view(-1, 1, 1, 1), bias


# --------------------------------------------------------------------------- bn2 + IMLS


class _BNIMLSTokens(torch.autograd.Function):
    """IMLS(BN(x)) for x (B, C, T, F) with masked batch statistics per channel and a
    threshold per (b, t) over (C, F); output (B, T, C * F). Backward recomputes BN(x)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, k, mask, levels, eps_bn, eps):
        b, c, t, f = x.shape
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        s1 = xf.sum(-1)  # (B, C, T)
        s2 = torch.linalg.vecdot(xf, xf, dim=-1)
        if mask is not None:
            m = mask.reshape(b, 1, t).to(xf.dtype)
            s1, s2 = s1 * m, s2 * m
            n = float(m.sum()) * f
        else:
            n = float(b * t * f)
        n = max(n, 1.0)
        mean = s1.sum((0, 2)) / n
        var = (s2.sum((0, 2)) / n - mean * mean).clamp_min(0.0)
        invstd = torch.rsqrt(var + eps_bn)
        scale = gamma.to(xf.dtype) * invstd
        shift = beta.to(xf.dtype) - mean * scale
        u = _affine_tokens(xf, scale, shift)
        tmask = mask.reshape(b, t, 1) if mask is not None else None
        theta, mean_abs = imls_threshold(u, k, (-1,), eps)
        y = imls_counts_(u, theta, tmask, levels).mul_(theta)
        ctx.save_for_backward(x, gamma, k, mean, invstd, scale, shift, theta, mean_abs, tmask)
        ctx.cfg = (levels, eps, n)
        n_t = torch.tensor(n)
        ctx.mark_non_differentiable(mean, var, n_t)
        return y, mean, var, n_t

    @staticmethod
    def backward(ctx, gy, _gm, _gv, _gn):
        x, gamma, k, mean, invstd, scale, shift, theta, mean_abs, tmask = ctx.saved_tensors
        levels, eps, n = ctx.cfg
        b, c, t, f = x.shape
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        u = _affine_tokens(xf, scale, shift)
        g, grad_k = imls_grad_(u.div_(theta), gy.to(u.dtype), theta, mean_abs, k, tmask,
                               levels, (-1,), eps)
        del u
        g4 = g.view(b, t, c, f).permute(0, 2, 1, 3)  # (B, C, T, F) view; 0 at padded tokens
        sg = g4.sum((0, 2, 3))
        sgx = torch.linalg.vecdot(g4, xf, dim=-1).sum((0, 2))  # sum g x
        sgxh = invstd * (sgx - mean * sg)  # sum g xhat = dL/dgamma
        # dL/dx = s (g - sum g / n - xhat sum(g xhat) / n) on valid positions
        #       = s g + (s mean invstd sum(g xhat) - s sum g) / n - s invstd sum(g xhat) / n x
        d = scale * invstd * sgxh / n
        cst = (scale * mean * invstd * sgxh - scale * sg) / n
        gx = torch.empty_like(xf)
        torch.mul(g4, scale.view(1, c, 1, 1), out=gx)
        gx.add_(cst.view(1, c, 1, 1)).addcmul_(xf, -d.view(1, c, 1, 1))
        if tmask is not None:
            gx.mul_(tmask.reshape(b, 1, t, 1))
        return (gx.to(x.dtype), sgxh.to(gamma.dtype), sg.to(gamma.dtype), grad_k,
                None, None, None, None)


def _affine_tokens(xf: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """shift + scale * x per channel, written as (B, T, C * F) (tokens contiguous)."""
    b, c, t, f = xf.shape
    u = torch.empty(b, t, c, f, dtype=xf.dtype, device=xf.device)
    torch.addcmul(shift.view(1, c, 1, 1), xf, scale.view(1, c, 1, 1), out=u.permute(0, 2, 1, 3))
    return u.view(b, t, c * f)


def bn_imls_tokens(bn, neuron, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """neuron(flatten(bn(x, mask)), mask) for x (B, C, T, F), a per-frame threshold over
    C x F and the output (B, T, C * F); mask (B, 1, T, 1) bool or None. ``bn`` None: x is
    already normalized (bn folded into the conv before it, eval)."""
    b, c, t, f = x.shape
    dev = x.device.type
    mask = drop_full_mask(mask)
    with torch.autocast(device_type=dev, enabled=False):
        if bn is not None and bn.training:
            y, mean, var, n = _BNIMLSTokens.apply(x, bn.weight, bn.bias, neuron.k, mask,
                                                  neuron.levels, bn.eps, neuron.eps)
            bn.update_running(mean, var, float(n))
            return y
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        if bn is None:
            u = torch.empty(b, t, c, f, dtype=xf.dtype, device=xf.device)
            u.permute(0, 2, 1, 3).copy_(xf)
            u = u.view(b, t, c * f)
        else:
            a, cst = bn.eval_affine()
            u = _affine_tokens(xf, a.to(xf.dtype), cst.to(xf.dtype))
        tmask = mask.reshape(b, t, 1) if mask is not None else None
        if torch.is_grad_enabled():
            return neuron(u, tmask)
        theta, _ = imls_threshold(u, neuron.k, (-1,), neuron.eps)
        return imls_counts_(u, theta, tmask, neuron.levels).mul_(theta)
