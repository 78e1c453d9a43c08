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
- **BatchNorm + IMLS in one function** (``bn_imls``: bn2 + neuron2, and in the blocks
  each branch norm + its neuron and the FFN's hidden LinearBN + neuron), both backwards
  written out, only the norm's input kept. bn2 runs on conv2's channels-last output as a
  (B, T, F, C) map; the projection takes its columns permuted to (F, C) order instead of
  transposing the map.
- **conv1 as one matrix product, channels-last** (``conv_from_patches``): the 9-tap conv
  of a one-channel input is a (B T' F' x 9) x (9 x C) product that writes the 2-D map in
  channels-last layout: a frame's values are contiguous for its threshold, and conv2 runs
  in mkldnn's native layout.

- **Spike counts for firing-rate-aware training** (espnet_iml.rate): while a neuron's meter
  is active, the fused functions also return the spike sum, whose backward is the meter's
  straight-through gradient (dS/dU = 1/theta, dS/dtheta = -U/theta^2 inside [0, D]) folded
  into the neuron's own: ``gy + c / theta`` and an outside threshold gradient
  ``-c / theta * sum_token S`` (c the gradient of the sum).

The composed path (``SpikingConv2dSubsampling`` calling its modules one by one) stays the
reference, and is taken when a module is hooked (profilers such as espnet_iml.energy), when
a neuron records its counts or is not an input-aware IMLS neuron (the LIF baseline), and
under ``sync_norm`` with several processes.
"""

from typing import Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

from espnet_iml.imls import IMLSNeuron, _IMLSFire, imls_counts_, imls_grad_, imls_threshold
from espnet_iml.norm import MaskedBatchNorm, bn_grad_last, bn_stats_last, has_hooks
from espnet_iml.rate import valid_positions


def _counted(counts: torch.Tensor, dims: Tuple[int, ...], metered: bool):
    """(spike sum per token over ``dims``, or None when no meter asks for it)."""
    return counts.sum(dims, keepdim=True) if metered else None


def _spikes_out(s_tok: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return s_tok.sum() if s_tok is not None else like.new_zeros(())


def _metered_grads(gy: torch.Tensor, g_spikes: Optional[torch.Tensor], theta: torch.Tensor,
                   s_tok: Optional[torch.Tensor]):
    """(gy, outside threshold gradient) with the spike sum's gradient folded in (module doc)."""
    if s_tok is None or g_spikes is None:
        return gy, None
    c = g_spikes.to(theta.dtype) / theta
    return gy + c, -c * s_tok


def _report(neuron, spikes: torch.Tensor, frames: torch.Tensor,
            mask: Optional[torch.Tensor]) -> None:
    if neuron.metered:
        neuron.meter.add(spikes, valid_positions(frames, mask))


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
    return conv_frames(p2, w, b, shape).permute(0, 3, 1, 2)


def conv_frames(p2: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                shape: Tuple[int, int, int]) -> torch.Tensor:
    """``conv_from_patches`` as (B, T', F', C), contiguous: a frame is one run of values."""
    bsz, t, f = shape
    return (p2 @ _weight_and_bias(w, b).t()).view(bsz, t, f, -1)


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

    # Inside, the map is handled as (B, T', F', C) frames (threshold over the last two
    # dims, one contiguous run per frame); it leaves as the (B, C, T', F') channels-last view.

    @staticmethod
    def forward(ctx, p2, w, b, k, mask, shape, levels, eps, metered):
        u = conv_frames(p2, w, b, shape)
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()
        theta, mean_abs = imls_threshold(u, k, (-2, -1), eps)
        counts = imls_counts_(u, theta, mask, levels)
        s_tok = _counted(counts, (-2, -1), metered)
        y = counts.mul_(theta)
        ctx.save_for_backward(p2, w, b, k, theta, mean_abs, mask, s_tok)
        ctx.cfg = (shape, levels, eps)
        return y.permute(0, 3, 1, 2), _spikes_out(s_tok, y)

    @staticmethod
    def backward(ctx, gy, g_spikes):
        p2, w, b, k, theta, mean_abs, mask, s_tok = ctx.saved_tensors
        shape, levels, eps = ctx.cfg
        u = conv_frames(p2, w, b, shape)
        low = u.dtype
        if low in (torch.float16, torch.bfloat16):
            u = u.float()
        gy = gy.permute(0, 2, 3, 1).to(u.dtype)  # (B, T', F', C)
        gy, g_theta = _metered_grads(gy, g_spikes, theta, s_tok)
        grad_u, grad_k = imls_grad_(u.div_(theta), gy, theta, mean_abs, k, mask, levels,
                                    (-2, -1), eps, g_theta)
        del u
        g2 = grad_u.reshape(p2.size(0), -1).to(low)  # rows x channels
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
    dev = xs4.device.type
    if torch.is_autocast_enabled(dev):
        low = torch.get_autocast_dtype(dev)
        p2, w, b = p2.to(low), w.to(low), b.to(low)
    if mask is not None:
        mask = mask.reshape(shape[0], shape[1], 1, 1)  # per frame of (B, T', F', C)
    with torch.autocast(device_type=dev, enabled=False):
        if not torch.is_grad_enabled():
            u = conv_frames(p2, w, b, shape)
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            theta, _ = imls_threshold(u, neuron.k, (-2, -1), neuron.eps)
            counts = imls_counts_(u, theta, mask, neuron.levels)
            if neuron.metered:
                _report(neuron, counts.sum(), counts, mask)
            return counts.mul_(theta).permute(0, 3, 1, 2)
        y, spikes = _ConvIMLS.apply(p2, w, b, neuron.k, mask, shape, neuron.levels, neuron.eps,
                                    neuron.metered)
        _report(neuron, spikes, y.permute(0, 2, 3, 1), mask)
        return y


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


class _BNIMLS(torch.autograd.Function):
    """IMLS(BN(x)) for x (..., C): masked batch statistics per channel (last dim), the
    threshold per token over the last ``td`` dims. Only x is kept: backward recomputes
    BN(x) (one affine pass) and writes both backwards out (imls_grad_, bn_grad_last)."""

    @staticmethod
    def forward(ctx, x, weight, bias, k, mask, levels, eps_bn, eps, td, metered):
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean, var, var_passes, invstd, scale, shift, n = bn_stats_last(xf, mask, weight,
                                                                       bias, eps_bn)
        u = torch.addcmul(shift, xf, scale)
        dims = tuple(range(-td, 0))
        theta, mean_abs = imls_threshold(u, k, dims, eps)
        counts = imls_counts_(u, theta, mask, levels)
        s_tok = _counted(counts, dims, metered)
        y = counts.mul_(theta)
        ctx.save_for_backward(x, weight, k, mean, invstd, scale, shift, theta, mean_abs, mask,
                              var_passes, s_tok)
        ctx.cfg = (levels, eps, n, dims)
        n_t = torch.tensor(n)
        ctx.mark_non_differentiable(mean, var, n_t)
        return y, mean, var, n_t, _spikes_out(s_tok, y)

    @staticmethod
    def backward(ctx, gy, _gm, _gv, _gn, g_spikes):
        (x, weight, k, mean, invstd, scale, shift, theta, mean_abs, mask,
         var_passes, s_tok) = ctx.saved_tensors
        levels, eps, n, dims = ctx.cfg
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        u = torch.addcmul(shift, xf, scale)
        gy, g_theta = _metered_grads(gy.to(u.dtype), g_spikes, theta, s_tok)
        g, grad_k = imls_grad_(u.div_(theta), gy, theta, mean_abs, k, mask,
                               levels, dims, eps, g_theta)
        del u
        gx, gw, gb = bn_grad_last(xf, g, weight, mean, invstd, scale, mask, var_passes, n)
        return gx.to(x.dtype), gw, gb, grad_k, None, None, None, None, None, None


def fusable_neuron(neuron, td: int = 1) -> bool:
    """An input-aware IMLS neuron over the last ``td`` dims, not recording, not hooked."""
    return (isinstance(neuron, IMLSNeuron) and neuron.threshold == "input_aware"
            and not neuron.recording and not has_hooks(neuron)
            and (td != 1 or tuple(neuron.reduce_dims) == (-1,)))


def fusable_norm(norm) -> bool:
    """A masked BatchNorm over the last dim whose statistics it need not take itself."""
    return isinstance(norm, MaskedBatchNorm) and norm.channel_dim == -1 and not norm.observed()


def bn_imls(bn, neuron, x: torch.Tensor, mask: Optional[torch.Tensor], td: int = 1
            ) -> torch.Tensor:
    """neuron(bn(x, mask), mask) for x (..., C), bn over the last dim, the neuron's
    threshold over the last ``td`` dims (``td`` = 2: a frame of the front end's (B, T, F, C)
    map, whatever the neuron's own reduce_dims say); training or eval."""
    dims = tuple(range(-td, 0))
    with torch.autocast(device_type=x.device.type, enabled=False):
        if bn.training:
            y, mean, var, n, spikes = _BNIMLS.apply(x, bn.weight, bn.bias, neuron.k, mask,
                                                    neuron.levels, bn.eps, neuron.eps, td,
                                                    neuron.metered)
            bn.update_running(mean, var, float(n))
            _report(neuron, spikes, y, mask)
            return y
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        a, c = bn.eval_affine()
        u = torch.addcmul(c.to(xf.dtype), xf, a.to(xf.dtype))
        return _fire_frames(neuron, u, mask, dims)


def _fire_frames(neuron, u: torch.Tensor, mask: Optional[torch.Tensor],
                 dims: Tuple[int, ...]) -> torch.Tensor:
    """The input-aware neuron over ``dims`` of the normalized ``u``, in place when no
    gradient is needed; a meter gets the counts."""
    if torch.is_grad_enabled():
        out, counts, theta = _IMLSFire.apply(u, neuron.k, neuron.levels, dims, neuron.eps, mask)
        if neuron.metered:
            neuron.meter.add_imls(neuron, u, mask, counts, theta)
        return out
    theta, _ = imls_threshold(u, neuron.k, dims, neuron.eps)
    counts = imls_counts_(u, theta, mask, neuron.levels)
    if neuron.metered:
        _report(neuron, counts.sum(), counts, mask)
    return counts.mul_(theta)


def norm_then_neuron(norm, neuron, x: torch.Tensor, mask: Optional[torch.Tensor]
                     ) -> torch.Tensor:
    """``neuron(norm(x, mask), mask)``, fused (bn_imls) where it may be."""
    if fusable_norm(norm) and fusable_neuron(neuron) and not has_hooks(norm):
        return bn_imls(norm, neuron, x, mask)
    return neuron(norm(x, mask), mask)


def linear_bn_then_neuron(layer, neuron, x: torch.Tensor, mask: Optional[torch.Tensor]
                          ) -> torch.Tensor:
    """``neuron(layer(x, mask), mask)`` for a LinearBN ``layer``: in training its Linear,
    then BatchNorm and neuron fused; in eval the folded layer, then the neuron."""
    if (layer.training and fusable_norm(layer.bn) and fusable_neuron(neuron)
            and not has_hooks(layer, layer.linear, layer.bn)):
        return bn_imls(layer.bn, neuron, layer.linear(x), mask)
    return neuron(layer(x, mask), mask)


def neuron_frames(neuron, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """IMLS over (B, T, F, C) frames (threshold over the last two dims), x already
    normalized (eval: bn folded into the conv before)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        u = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return _fire_frames(neuron, u, mask, (-2, -1))  # in place on u: our conv output
