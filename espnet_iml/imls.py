"""Input-aware Multi-Level Spike (IMLS) neuron.

The paper states only the idea: simulate multi-timestep spike firing inside ONE timestep with
an adaptive, input-aware threshold. Everything concrete here is OUR DESIGN (see
docs/design.md), built from I-LIF (SpikeYOLO) and SpikingBrain's adaptive threshold:

    theta = |k| * mean(|U|)  over the channel dims of each token   (input-aware threshold)
    S     = clamp(floor(U / theta + 1/2), 0, D)                     (integer spike count)
    out   = S * theta                                               (theta folded downstream)

Backward is a straight-through estimator inside the firing range ``0 <= U/theta <= D`` and
zero outside. ``S`` equals the number of spikes an integrate-and-fire neuron emits over D
steps when the whole input charge arrives at step one (``if_reference``), and a synaptic
layer fed the D binary slots of ``S`` gives the same result as one fed ``S``
(``expand_binary`` / ``binary_slot_linear``): that is what makes inference additions-only.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

THRESHOLD_MODES = ("input_aware", "constant")


class _RoundClampSTE(torch.autograd.Function):
    """floor(x + 1/2) clamped to [0, D]; gradient 1 inside [0, D], 0 outside."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int) -> torch.Tensor:
        ctx.save_for_backward((x >= 0) & (x <= levels))
        # floor(x + 0.5), not torch.round: round-half-to-even would disagree with the
        # integrate-and-fire reference at exact .5 inputs.
        return torch.floor(x + 0.5).clamp_(0, levels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None


def firing_bounds(dtype: torch.dtype, levels: int) -> Tuple[float, float]:
    """(lo, hi): the floats just outside [0, D] in ``dtype``, so that ``lo < x < hi`` is
    exactly ``0 <= x <= D`` (the firing range) for hardtanh_backward, one vectorized op
    (a bool mask multiplied into a float tensor costs several times more on a CPU)."""
    lo = torch.nextafter(torch.zeros((), dtype=dtype), torch.full((), -1.0, dtype=dtype))
    hi = torch.nextafter(torch.full((), float(levels), dtype=dtype),
                         torch.full((), float(levels + 1), dtype=dtype))
    return float(lo), float(hi)


def imls_threshold(u: torch.Tensor, k: torch.Tensor, dims: Sequence[int], eps: float):
    """(theta, mean|U|) per token over ``dims``: theta = max(|k| mean|U|, eps), from one
    reduction that writes no temporary."""
    n = 1
    for d in dims:
        n *= u.size(d)
    mean_abs = abs_sum(u, tuple(dims)) / n
    return (k.abs() * mean_abs).clamp_min(eps), mean_abs


def abs_sum(u: torch.Tensor, dims: Tuple[int, ...], chunk: int = 1 << 20) -> torch.Tensor:
    """sum |u| over ``dims`` (keepdim). |u| then a sum, not torch.linalg.vector_norm(ord=1),
    which reduces several times slower on a CPU; a large tensor goes slice by slice along
    dim 0 through one scratch buffer, so no tensor of its full size is allocated."""
    dims = tuple(d % u.dim() for d in dims)
    if u.numel() <= chunk or 0 in dims or u.size(0) == 1:
        return u.abs().sum(dims, keepdim=True)
    out_shape = [1 if d in dims else u.size(d) for d in range(u.dim())]
    out = torch.empty(out_shape, dtype=u.dtype, device=u.device)
    scratch = torch.empty_like(u[0])
    inner = tuple(d - 1 for d in dims)
    for i in range(u.size(0)):
        torch.sum(torch.abs(u[i], out=scratch), inner, keepdim=True, out=out[i])
    return out


def imls_counts_(x: torch.Tensor, theta: torch.Tensor, mask: Optional[torch.Tensor],
                 levels: int, inplace: bool = True) -> torch.Tensor:
    """S = clamp(floor(U / theta + 1/2), 0, D), 0 where ``mask`` (bool, broadcastable) is
    False, computed in the buffer ``x`` holding U (``inplace``) or in one new tensor.
    Clamping before flooring gives the same integers as floor-then-clamp: the bounds are
    integers and floor is monotone."""
    if mask is not None:
        # a padded token divides by +inf: 0 + 1/2 floors to 0 (a small op, no extra pass)
        theta = theta.masked_fill(~mask, float("inf"))
    x = x.div_(theta) if inplace else torch.div(x, theta)
    return x.add_(0.5).clamp_(0, levels).floor_()


def imls_grad_(x: torch.Tensor, gy: torch.Tensor,
               theta: torch.Tensor, mean_abs: Optional[torch.Tensor], k: torch.Tensor,
               mask: Optional[torch.Tensor], levels: int, dims: Optional[Sequence[int]],
               eps: float, grad_theta: Optional[torch.Tensor] = None):
    """Backward of y = S * theta: returns (dL/dU, dL/dk). ``x`` = a buffer holding
    U / theta (consumed); ``dims`` None = constant threshold theta = max(|k|, eps).

        dL/dU_i = g_i [0 <= x_i <= D] + sign(U_i) |k| / n * g_theta      (input-aware)
        g_theta = sum_token g_i (S_i - [0 <= x_i <= D] x_i) (+ dL/dtheta from outside)
        dL/dk   = sign(k) sum_token g_theta mean|U|   (|k| for a constant threshold)
    with no gradient where theta sits at its floor eps, and none at padded positions."""
    lo, hi = firing_bounds(x.dtype, levels)
    if grad_theta is None and dims is not None:
        if mask is not None:
            # one pass: padded positions below the range (S = 0, no direct gradient) and
            # their token's g_theta is 0, so the sign term vanishes there too
            x.masked_fill_(~mask, -1.0)
        dims = tuple(d % x.dim() for d in dims)
        if 0 not in dims:
            return _imls_grad_in_place(x, gy, theta, mean_abs, k, levels, dims, eps, lo, hi)
        mask = None
    per = x.clamp(0, levels).add_(0.5).floor_()  # S
    x_in = torch.ops.aten.hardtanh_backward(x, x, lo, hi)  # x inside the range, else 0
    per.sub_(x_in).mul_(gy)
    if mask is not None:
        per.masked_fill_(~mask, 0.0)
    g_theta = per.sum(dim=tuple(dims), keepdim=True) if dims is not None else per.sum()
    del per
    if grad_theta is not None:
        g_theta = g_theta + (grad_theta if dims is not None else grad_theta.sum())
    grad_u = torch.ops.aten.hardtanh_backward.grad_input(gy, x, lo, hi, grad_input=x_in)
    if mask is not None:
        grad_u.masked_fill_(~mask, 0.0)
    if dims is None:
        g_theta = g_theta * (k.abs() > eps).to(x.dtype)  # clamped: no gradient
        return grad_u, (g_theta * torch.sign(k)).reshape(k.shape).to(k.dtype)
    g_theta = g_theta * (k.abs() * mean_abs > eps).to(x.dtype)  # clamped: no gradient
    n = x.numel() // g_theta.numel()
    grad_u.addcmul_(x.sign_(), g_theta * (k.abs() / n))  # sign(U / theta) = sign(U)
    grad_k = (g_theta * mean_abs).sum() * torch.sign(k)
    return grad_u, grad_k.reshape(k.shape).to(k.dtype)


def _imls_grad_in_place(x, gy, theta, mean_abs, k, levels, dims, eps, lo, hi,
                        chunk: int = 1 << 20):
    """imls_grad_ for an input-aware threshold over ``dims`` (not dim 0) and no outside
    gradient of theta: the gradient is written into ``x`` itself, and a large tensor goes
    slice by slice along dim 0 through two scratch buffers (tokens never straddle dim 0),
    so backward allocates no tensor of the map's size (on a CPU each fresh one costs more
    than the arithmetic)."""
    n = x.numel() // theta.numel()
    coef = (k.abs() * mean_abs > eps).to(x.dtype) * (k.abs() / n)  # clamped theta: 0
    g_theta = torch.empty_like(theta)
    if x.numel() > chunk and x.size(0) > 1:
        parts = range(x.size(0))
        s1, s2 = torch.empty_like(x[0]), torch.empty_like(x[0])
        inner = tuple(d - 1 for d in dims)
    else:
        parts = [None]
        s1, s2 = torch.empty_like(x), torch.empty_like(x)
        inner = dims
    for i in parts:
        xs, gs, gt = (x, gy, g_theta) if i is None else (x[i], gy[i], g_theta[i])
        cs = coef if i is None else coef[i]
        per = torch.clamp(xs, 0, levels, out=s1).add_(0.5).floor_()  # S
        x_in = torch.ops.aten.hardtanh_backward.grad_input(xs, xs, lo, hi, grad_input=s2)
        per.sub_(x_in).mul_(gs)  # g * (S - inside * x)
        torch.sum(per, inner, keepdim=True, out=gt)
        direct = torch.ops.aten.hardtanh_backward.grad_input(gs, xs, lo, hi, grad_input=s2)
        xs.sign_().mul_(gt * cs).add_(direct)  # sign(U) |k| / n g_theta + g inside
    grad_k = (g_theta * (k.abs() * mean_abs > eps).to(x.dtype) * mean_abs).sum() * torch.sign(k)
    return x, grad_k.reshape(k.shape).to(k.dtype)


class _IMLSFire(torch.autograd.Function):
    """Fused input-aware IMLS: y = S * theta, S = clamp(floor(U/theta + 1/2), 0, D) * mask,
    theta = max(|k| * mean(|U|), eps) over ``dims`` (or |k| when ``dims`` is None).

    Same values and gradients as composing the ops under autograd (tested), with the
    gradient written out (``imls_grad_``): a handful of passes over the input instead of the
    autograd graph of a dozen ops, and only U kept for backward (the counts are recomputed
    from U, exactly).
    """

    @staticmethod
    def forward(ctx, u, k, levels, dims, eps, mask):
        if dims is None:
            theta = k.abs().clamp_min(eps).to(u.dtype).reshape([1] * u.dim())
            mean_abs = None
        else:
            theta, mean_abs = imls_threshold(u, k, dims, eps)
        counts = imls_counts_(u, theta, mask, levels, inplace=False)
        ctx.save_for_backward(u, k, theta, mean_abs, mask)
        ctx.levels, ctx.dims, ctx.eps = levels, dims, eps
        ctx.mark_non_differentiable(counts)
        return counts * theta, counts, theta

    @staticmethod
    def backward(ctx, grad, _grad_counts, grad_theta_out):
        u, k, theta, mean_abs, mask = ctx.saved_tensors
        x = u / theta
        grad_u, grad_k = imls_grad_(x, grad, theta, mean_abs, k, mask, ctx.levels,
                                    ctx.dims, ctx.eps, grad_theta_out)
        return grad_u, grad_k, *[None] * 4


def spike_count(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer spike count of normalized input ``x = U / theta`` (differentiable, STE)."""
    return _RoundClampSTE.apply(x, levels)


@torch.no_grad()
def if_reference(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Explicit D-step integrate-and-fire simulation, the reference IMLS must match.

    The membrane receives the whole normalized charge ``x`` at step one, pre-charged by half a
    threshold (so that firing rounds rather than truncates); at each of the D steps it fires
    when it reaches the threshold 1 and is reset by subtraction.
    """
    v = x + 0.5
    count = torch.zeros_like(x)
    for _ in range(levels):
        fire = (v >= 1.0).to(x.dtype)
        count += fire
        v = v - fire
    return count


def expand_binary(counts: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer counts (..., C) -> D binary slots (D, ..., C): slot d fires iff count > d."""
    slots = torch.arange(levels, device=counts.device, dtype=counts.dtype)
    return (counts.unsqueeze(0) > slots.view(-1, *([1] * counts.dim()))).to(counts.dtype)


def binary_slot_linear(
    layer: nn.Linear, slots: torch.Tensor, theta: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Spike-driven evaluation of ``layer(S * theta)`` from binary slots (D, ..., C).

    Each slot is a binary spike tensor, so ``W @ slot`` is pure accumulation; the per-token
    threshold scales the sum afterwards and the bias is added once, not once per slot.
    """
    acc = sum(nn.functional.linear(slot, layer.weight) for slot in slots)
    if theta is not None:
        acc = acc * theta
    if layer.bias is not None:
        acc = acc + layer.bias
    return acc


class IMLSNeuron(nn.Module):
    """IMLS neuron: one timestep, up to ``levels`` spikes per neuron.

    Args:
        levels: D, the maximum spike count (D >= 1; D = 1 is a binary neuron).
        threshold: "input_aware" (theta = |k| * mean|U| per token; OUR DESIGN) or
            "constant" (theta = |k|, a learnable per-layer constant, as in I-LIF).
        threshold_init: initial k.
        reduce_dims: dims averaged for the input-aware threshold (the channel dims of a token).
        eps: floor of theta, so a silent token does not divide by zero.
    """

    def __init__(
        self,
        levels: int = 4,
        threshold: str = "input_aware",
        threshold_init: float = 1.0,
        reduce_dims: Sequence[int] = (-1,),
        eps: float = 1e-4,
    ):
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"spike_levels (D) must be an integer >= 1, got {levels!r}")
        if threshold not in THRESHOLD_MODES:
            raise ValueError(
                f"threshold must be one of {THRESHOLD_MODES}, got {threshold!r}"
            )
        if not (math.isfinite(threshold_init) and threshold_init > 0):
            raise ValueError(f"threshold_init must be a finite number > 0, got {threshold_init}")
        self.levels = levels
        self.threshold = threshold
        self.reduce_dims = tuple(reduce_dims)
        self.eps = eps
        self.k = nn.Parameter(torch.tensor(float(threshold_init)))
        # Set by profilers (espnet_iml.energy): keep the last integer counts for inspection.
        self.recording = False
        self.last_counts: Optional[torch.Tensor] = None
        # Set by espnet_iml.rate.SpikeCountMeter (firing-rate-aware training): while it is
        # active, forward (and the fused kernels standing in for it) add the counts to it.
        self.meter = None

    @property
    def metered(self) -> bool:
        """Whether a spike-count meter is measuring this neuron now."""
        return self.meter is not None and self.meter.active

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.threshold}"

    def _fire(self, u: torch.Tensor, mask: Optional[torch.Tensor]):
        # Threshold and rounding in fp32 even under bf16 autocast: a rounding step is
        # exactly where low precision changes the integer output.
        with torch.autocast(device_type=u.device.type, enabled=False):
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            dims = self.reduce_dims if self.threshold == "input_aware" else None
            m = mask.to(torch.bool) if mask is not None else None
            return _IMLSFire.apply(u, self.k, self.levels, dims, self.eps, m)

    def fire(
        self, u: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return (integer spike counts, per-token threshold theta); counts are 0 where
        ``mask`` (broadcastable to ``u``, True = valid) is False."""
        _, counts, theta = self._fire(u, mask)
        return counts, theta

    def forward(self, u: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out, counts, theta = self._fire(u, mask)
        if self.recording:
            self.last_counts = counts
        if self.metered:
            self.meter.add_imls(self, u, mask, counts, theta)
        return out
