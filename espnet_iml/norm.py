"""BatchNorm whose statistics are taken over valid (non-padded) positions only.

Plain BatchNorm in training mode mixes padded frames into the batch statistics, so an
utterance would normalize differently beside a longer one. In eval mode a BatchNorm is a
per-channel affine map, which is what lets it fold into the neighbouring synaptic layer.

Distributed training (ours): by default each process normalizes with the statistics of its
own share of the batch and updates its own running statistics, as torch's BatchNorm does
under DDP. DDP (ESPnet's settings) copies rank 0's buffers to the other ranks at the start
of each forward and ESPnet saves rank 0's model, so the running statistics that fold into
the inference form are rank 0's: an average over rank 0's shares of the batches only.
With ``sync = True`` (encoder option ``sync_norm``) the count, sum and sum of squares over
valid positions are summed over all processes, so every process normalizes with, and
stores, the statistics of the whole global batch (padding still excluded).
"""

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase


def distributed_world() -> int:
    """Number of processes of the initialized default process group (1 when none)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 1
    return torch.distributed.get_world_size()


def has_hooks(*modules: nn.Module) -> bool:
    """Whether a forward hook (global or on one of ``modules``) watches these modules: the
    fused and folded paths compute several modules in one kernel and would bypass it."""
    from torch.nn.modules import module as _module

    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all processes, differentiable: the gradient of every process's
    input is the sum of all processes' output gradients (torch.distributed.nn)."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x, op=torch.distributed.ReduceOp.SUM)


def bn_stats_last(xf: torch.Tensor, mask: Optional[torch.Tensor], weight: torch.Tensor,
                  bias: torch.Tensor, eps: float):
    """Batch statistics of x (..., C) over valid positions (``mask`` broadcastable to
    (..., 1)), without an autograd graph: (mean, var, raw var >= 0, invstd, scale, shift,
    n), with y = scale * x + shift the normalized output."""
    c = xf.size(-1)
    x2 = xf.reshape(-1, c)
    if mask is not None:
        m = mask.expand(*xf.shape[:-1], 1).reshape(-1).to(xf.dtype)
        n = float(m.sum())
        s1 = m @ x2
        s2 = m @ x2.square()
    else:
        n = float(x2.size(0))
        s1 = x2.sum(0)
        s2 = torch.linalg.vecdot(x2, x2, dim=0)
    n = max(n, 1.0)
    mean = s1 / n
    raw = s2 / n - mean * mean
    var = raw.clamp_min(0.0)
    invstd = torch.rsqrt(var + eps)
    scale = weight.to(xf.dtype) * invstd
    shift = bias.to(xf.dtype) - mean * scale
    return mean, var, raw >= 0, invstd, scale, shift, n


def bn_grad_last(xf: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                 invstd: torch.Tensor, scale: torch.Tensor, mask: Optional[torch.Tensor],
                 var_passes: torch.Tensor, n: float):
    """Backward of the training-mode masked BatchNorm y = scale * x + shift over x (..., C),
    given dL/dy = g at EVERY position (padded outputs use the valid statistics too):

        dL/dx = s g + valid * (d1 + 2 d2 x),   with sums over all positions
        d2 = -w (sum g x - mean sum g) invstd^3 / (2 n),   d1 = (-s sum g - 2 mean n d2) / n
        dL/dw = sum g xhat,   dL/db = sum g
    Returns (dL/dx, dL/dw, dL/db)."""
    c = xf.size(-1)
    x2, g2 = xf.reshape(-1, c), g.reshape(-1, c)
    sg = g2.sum(0)
    sgxh = invstd * (torch.linalg.vecdot(g2, x2, dim=0) - mean * sg)  # sum g xhat
    d2 = -weight.to(xf.dtype) * sgxh * invstd * invstd / (2.0 * n)
    d2 = d2 * var_passes  # a variance clamped at 0 passes no gradient
    d1 = (-scale * sg - 2.0 * mean * n * d2) / n
    gx = torch.addcmul(d1, xf, 2.0 * d2)  # the statistics' part, valid positions only
    if mask is not None:
        gx.masked_fill_(~mask, 0.0)
    gx.addcmul_(g, scale)
    return gx, sgxh.to(weight.dtype), sg.to(weight.dtype)


class _MaskedBNChannelsLast(torch.autograd.Function):
    """Training-mode masked BatchNorm of x (..., C) with the gradient written out
    (``bn_grad_last``): the statistics are taken without an autograd graph and only x is
    kept for backward (the composed ops kept x, x * mask and their graph). Same values and
    gradients as the composed form (tests/test_norm.py)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mask, eps):
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean, var, var_passes, invstd, scale, shift, n = bn_stats_last(xf, mask, weight,
                                                                       bias, eps)
        y = torch.addcmul(shift, xf, scale).to(x.dtype)
        ctx.save_for_backward(x, weight, mean, invstd, scale, mask, var_passes)
        ctx.n = n
        n_t = torch.tensor(n)
        ctx.mark_non_differentiable(mean, var, n_t)
        return y, mean, var, n_t

    @staticmethod
    def backward(ctx, g, _gm, _gv, _gn):
        x, weight, mean, invstd, scale, mask, var_passes = ctx.saved_tensors
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        gf = g.float() if g.dtype in (torch.float16, torch.bfloat16) else g
        gx, gw, gb = bn_grad_last(xf, gf, weight, mean, invstd, scale, mask, var_passes,
                                  ctx.n)
        return gx.to(x.dtype), gw, gb, None, None


class MaskedBatchNorm(_NormBase):
    """BatchNorm over a tensor with channels at ``channel_dim`` and a validity mask.

    It has torch BatchNorm's parameters, buffers and state-dict keys but is deliberately not
    a ``torch.nn.modules.batchnorm._BatchNorm``: torch's tools that swap BatchNorms by type
    (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``) would replace it with a layer that
    knows neither the mask nor the channel layout, so they leave it alone (ours).

    Args:
        num_features: number of channels.
        channel_dim: where the channels are (-1 for (B, T, C); 1 for (B, C, T, F)).
        eps, momentum: as torch.nn.BatchNorm1d.
        sync: in training under an initialized torch.distributed process group of more
            than one process, compute the statistics over all processes' valid positions
            (every process must then run the same number of training forwards, as
            ESPnet's trainer does).
    """

    def __init__(
        self,
        num_features: int,
        channel_dim: int = -1,
        eps: float = 1e-5,
        momentum: float = 0.1,
        sync: bool = False,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.channel_dim = channel_dim
        self.sync = sync

    def extra_repr(self) -> str:
        return super().extra_repr() + f", channel_dim={self.channel_dim}, sync={self.sync}"

    def _shape(self, x: torch.Tensor) -> list:
        shape = [1] * x.dim()
        shape[self.channel_dim] = self.num_features
        return shape

    def eval_affine(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode map ``y = a * x + c`` per channel (used for folding)."""
        a = self.weight / torch.sqrt(self.running_var + self.eps)
        return a, self.bias - a * self.running_mean

    @torch.no_grad()
    def update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        """Move the running statistics towards this batch's mean and biased variance over
        ``n`` valid positions (the stored variance is the unbiased one, as torch's)."""
        self.num_batches_tracked += 1
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
        self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)

    def observed(self) -> bool:
        """Whether the statistics must be taken by this module itself: synchronized across
        processes, or hooked by a profiler. Fused callers (espnet_iml.fused) then call it."""
        return (self.sync and distributed_world() > 1) or has_hooks(self)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: any shape with channels at ``channel_dim``; mask: bool, broadcastable to x with
        size 1 at the channel dim, True at valid positions (None = all valid)."""
        shape = self._shape(x)
        if not self.training:
            a, c = self.eval_affine()
            return x * a.view(shape) + c.view(shape)

        if self.channel_dim % x.dim() == x.dim() - 1 and not (
            self.sync and distributed_world() > 1
        ):
            with torch.autocast(device_type=x.device.type, enabled=False):
                y, mean, var, n = _MaskedBNChannelsLast.apply(
                    x, self.weight, self.bias, mask, self.eps)
            self.update_running(mean, var, float(n))
            return y

        dims = [d for d in range(x.dim()) if d != self.channel_dim % x.dim()]
        # statistics in fp32 at least (bf16 autocast would make them coarse)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        # One pass for each moment (sum, sum of squares) and one fused affine pass: on the
        # front end's 2-D maps this norm is a large share of a training step.
        if mask is None:
            n = float(x.numel() // self.num_features)
            xm = xf
        else:
            m = mask.to(xf.dtype)
            n = float(m.sum()) * (xf.numel() / max(m.numel(), 1)) / self.num_features
            xm = xf * m
        s1, s2 = xm.sum(dims), (xm * xf).sum(dims)
        if self.sync and distributed_world() > 1:
            # One collective for all three, in float64 so that counts of many millions stay
            # exact; the count carries no gradient.
            count = torch.full((1,), n, dtype=torch.float64, device=s1.device)
            total = all_reduce_sum(torch.cat([s1.double(), s2.double(), count]))
            n = float(total[-1].detach())
            s1 = total[: self.num_features].to(s1.dtype)
            s2 = total[self.num_features : -1].to(s2.dtype)
        n = max(n, 1.0)
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0.0)
        self.update_running(mean, var, n)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift.view(shape), xf, scale.view(shape)).to(x.dtype)


class TokenLayerNorm(nn.LayerNorm):
    """LayerNorm over each token's channels, with MaskedBatchNorm's call signature.

    Per-token statistics need no batch and no padding mask, and do not depend on how well
    the training speakers' statistics match the test speakers'; the price is a mean and a
    variance computed at run time per token (listed with the non-AC operations).
    """

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return super().forward(x)


BRANCH_NORMS = {"batch": MaskedBatchNorm, "layer": TokenLayerNorm}


def branch_norm(kind: str, size: int) -> nn.Module:
    """The norm in front of each block branch's first neuron ("batch" or "layer")."""
    if kind not in BRANCH_NORMS:
        raise ValueError(f"branch_norm must be one of {tuple(BRANCH_NORMS)}, got {kind!r}")
    return BRANCH_NORMS[kind](size)
