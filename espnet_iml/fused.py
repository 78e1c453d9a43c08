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
- **conv1 as one matrix product, channels-last** (``conv_from_patches``): the 9-tap conv
  of a one-channel input is a (B T' F' x 9) x (9 x C) product that writes the 2-D map in
  channels-last layout: a frame's values are contiguous for its threshold, and conv2 runs
  in mkldnn's native layout.

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


def conv_patches(xs4: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """(B * T' * F', k * k + 1): the input values under the kernel at each output position
    of a one-input-channel conv (im2col), rows ordered (b, t', f'), and a last column of
    ones (so the bias rides in the same matrix product: no separate pass to add it)."""
    p = F.unfold(xs4, kernel, stride=stride).transpose(1, 2)  # (B, T' * F', k*k)
    ones = torch.ones(p.shape[:2] + (1,), dtype=p.dtype, device=p.device)
    return torch.cat((p, ones), dim=2).reshape(-1, p.size(2) + 1)


def conv_from_patches(p2: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                      shape: Tuple[int, int, int]) -> torch.Tensor:
    """The conv as ONE matrix product, rows (b, t', f') x channels: returned as (B, C, T',
    F') in channels-last layout, so each frame's C x F' values are contiguous (the threshold
    reduces over them in one run) and conv2's mkldnn kernels run in their native layout
    without converting (on a CPU about half of conv2's time in ESPnet's NCHW layout)."""
    bsz, t, f = shape
    u = p2 @ _weight_and_bias(w, b).t()
    return u.view(bsz, t, f, -1).permute(0, 3, 1, 2)


def _weight_and_bias(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(C, k * k + 1): the conv weight with the bias as its last column."""
    return torch.cat((w.reshape(w.size(0), -1), b[:, None]), dim=1)


def patch_moments(p2: torch.Tensor, rows: Optional[torch.Tensor]
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, sum p, sum p p^T) over the valid rows of ``conv_patches`` (``rows``: bool per
    row, None = all), in float64."""
    pd = p2[:, :-1].double()
    if rows is not None:
        pm = pd * rows.to(pd.dtype)[:, None]
        n = rows.sum().to(pd.dtype)
    else:
        pm = pd
        n = torch.tensor(float(pd.size(0)), dtype=pd.dtype, device=pd.device)
    return n, pm.sum(0), pm.T @ pd


def fold_conv_bn_train(conv: torch.nn.Conv2d, bn, p2: torch.Tensor,
                       rows: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``bn(conv(x))`` in training mode as ONE conv (see module doc), from
    the patches ``p2 = conv_patches(x)`` and the valid ``rows``; updates bn's running
    statistics. Differentiable in conv's and bn's parameters."""
    n, s1, s2 = patch_moments(p2, rows)
    nn_ = max(float(n), 1.0)
    mu = s1 / nn_
    cov = s2 / nn_ - torch.outer(mu, mu)
    wd = conv.weight.reshape(conv.out_channels, -1).double()
    var = ((wd @ cov) * wd).sum(1).clamp_min(0.0)
    mean = wd @ mu + (conv.bias.double() if conv.bias is not None else 0.0)
    bn.update_running(mean, var, nn_)
    scale = bn.weight * torch.rsqrt(var.to(bn.weight.dtype) + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    if conv.bias is not None:
        # b - mean (= -W . mu): the bias keeps its (zero) gradient, as in exact arithmetic
        return weight, bn.bias + (conv.bias - mean.to(scale.dtype)) * scale
    return weight, bn.bias - mean.to(scale.dtype) * scale


class _ConvIMLS(torch.autograd.Function):
    """y = IMLS(conv(x; w, b)) from the patches of x, with an input-aware threshold over
    ``dims``; backward recomputes the conv (one small-K matrix product) instead of saving
    its 2-D output."""

    @staticmethod
    def forward(ctx, p2, w, b, k, mask, shape, levels, dims, eps):
        u = conv_from_patches(p2, w, b, shape)
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()
        theta, mean_abs = imls_threshold(u, k, dims, eps)
        y = imls_counts_(u, theta, mask, levels).mul_(theta)
        ctx.save_for_backward(p2, w, b, k, theta, mean_abs, mask)
        ctx.cfg = (shape, levels, dims, eps)
        return y

    @staticmethod
    def backward(ctx, gy):
        p2, w, b, k, theta, mean_abs, mask = ctx.saved_tensors
        shape, levels, dims, eps = ctx.cfg
        u = conv_from_patches(p2, w, b, shape)
        low = u.dtype
        if low in (torch.float16, torch.bfloat16):
            u = u.float()
        grad_u, grad_k = imls_grad_(u.div_(theta), gy.to(u.dtype), theta, mean_abs, k, mask,
                                    levels, dims, eps)
        del u
        g2 = grad_u.permute(0, 2, 3, 1).reshape(p2.size(0), -1).to(low)  # rows x channels
        need = ctx.needs_input_grad
        gp = g2 @ _weight_and_bias(w, b) if need[0] else None
        gwb = g2.T @ p2  # weight and (last column) bias gradients in one product
        gw = gwb[:, :-1].reshape(w.shape) if need[1] else None
        gb = gwb[:, -1].clone() if need[2] else None
        return gp, gw, gb, grad_k, None, None, None, None, None


def conv_bn_imls(conv: torch.nn.Conv2d, bn, neuron, xs4: torch.Tensor,
                 mask: Optional[torch.Tensor]) -> torch.Tensor:
    """neuron(bn(conv(xs4), mask), mask) for a one-input-channel conv without padding:
    training mode folds bn with the batch statistics (fold_conv_bn_train), eval mode with
    its running ones. Output (B, C, T', F') in channels-last layout."""
    mask = drop_full_mask(mask)
    ksz, stride = conv.kernel_size[0], conv.stride[0]
    shape = (xs4.size(0), (xs4.size(2) - ksz) // stride + 1, (xs4.size(3) - ksz) // stride + 1)
    p2 = conv_patches(xs4, ksz, stride)
    if bn.training:
        rows = None
        if mask is not None:
            rows = mask.reshape(shape[0], shape[1], 1).expand(shape).reshape(-1)
        w, b = fold_conv_bn_train(conv, bn, p2, rows)
    else:
        w, b = fold_conv_bn_eval(conv, bn)
    dims = neuron.reduce_dims
    dev = xs4.device.type
    if torch.is_autocast_enabled(dev):
        low = torch.get_autocast_dtype(dev)
        p2, w, b = p2.to(low), w.to(low), b.to(low)
    with torch.autocast(device_type=dev, enabled=False):
        if not torch.is_grad_enabled():
            u = conv_from_patches(p2, w, b, shape)
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            theta, _ = imls_threshold(u, neuron.k, dims, neuron.eps)
            return imls_counts_(u, theta, mask, neuron.levels).mul_(theta)
        return _ConvIMLS.apply(p2, w, b, neuron.k, mask, shape, neuron.levels, dims,
                               neuron.eps)


def drop_full_mask(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """None when every position is valid (an unpadded batch): the masked passes are then
    skipped. CPU only, where the check is free; on a GPU it would wait for the device."""
    if mask is not None and mask.device.type == "cpu" and bool(mask.all()):
        return None
    return mask


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
