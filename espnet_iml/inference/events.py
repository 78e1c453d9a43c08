"""Executed primitives of the spike-driven encoder, each counting what it executes.

Spike-fed synaptic layers take the D binary slots of an IMLS count (slot d is 1 where the
count exceeds d) and run once per slot. A slot is a 0/1 tensor, so a matrix product with it
only gathers and adds weights where it is 1: the accumulates counted are the events
actually present in the slots (sum over 1-entries of their fan-out), never ``MACs x r``.
The neuron's per-token threshold theta multiplies the ACCUMULATED sum afterwards, once per
output, by the theta of the input that produced it (``scale_tokens``; ``combine_taps`` for a
convolution whose window spans inputs with different thetas).

Real-valued work is counted as it is executed: a synaptic layer on real input is a MAC per
product, and element-wise multiplies / adds go to ``Tally.elementwise_op``.

Beside the execution only bookkeeping is computed (event counts on booleans and integers,
no floating-point multiply), so every product and multiply in a run is part of the
execution: tests/test_energy_execution.py intercepts them and checks the counts.
"""

from typing import List, Optional, Sequence

import torch
from torch.nn import functional as F

from espnet_iml.energy.records import Tally

SCALE_KIND = "scale (threshold)"


def _events(slots: torch.Tensor) -> int:
    return int((slots != 0).sum())


def event_linear(
    slots: torch.Tensor, weight: torch.Tensor, tally: Tally, name: str, kind: str,
    sources: Sequence[str],
) -> torch.Tensor:
    """sum_d slots[d] @ W^T for slots (D, ..., C_in); no bias, no theta (added after)."""
    acc = sum(F.linear(slot, weight) for slot in slots)
    fan_out = weight.size(0)
    macs = slots[0].numel() * fan_out
    tally.spike_layer(
        name, kind, macs=macs, macs_valid=macs, ac_ops=_events(slots) * fan_out,
        nonzero_macs=_events(slots[0]) * fan_out, out_elems=acc.numel(),
        levels=slots.size(0), sources=sources,
    )
    return acc


def event_matmul_left(
    slots: torch.Tensor, right: torch.Tensor, tally: Tally, name: str, sources: Sequence[str],
    right_counts_mean: Optional[float] = None,
) -> torch.Tensor:
    """sum_d slots[d] @ right: each event (.., i, c) adds row c of ``right`` (integer
    counts for Q K^T) into output row i, so its fan-out is right's column count."""
    acc = sum(torch.matmul(slot, right) for slot in slots)
    fan_out = right.size(-1)
    macs = slots[0].numel() * fan_out
    tally.spike_layer(
        name, "MatMul", macs=macs, macs_valid=macs, ac_ops=_events(slots) * fan_out,
        nonzero_macs=_events(slots[0]) * fan_out, out_elems=acc.numel(),
        levels=slots.size(0), sources=sources, r_other=right_counts_mean,
    )
    return acc


def event_matmul_right(
    left: torch.Tensor, slots: torch.Tensor, tally: Tally, name: str, sources: Sequence[str],
) -> torch.Tensor:
    """sum_e left @ slots[e]: each event (.., j, c) adds column j of the real ``left``
    (the scores of every query row) into output column c: fan-out = left's row count.
    Run as (slots[e]^T @ left^T)^T, so that the events are the left operand of every
    event-driven product here (as in ``event_matmul_left``)."""
    left_t = left.transpose(-2, -1)
    acc = sum(torch.matmul(slot.transpose(-2, -1), left_t) for slot in slots).transpose(-2, -1)
    fan_out = left.size(-2)
    macs = slots[0].numel() * fan_out
    tally.spike_layer(
        name, "MatMul", macs=macs, macs_valid=macs, ac_ops=_events(slots) * fan_out,
        nonzero_macs=_events(slots[0]) * fan_out, out_elems=acc.numel(),
        levels=slots.size(0), sources=sources,
    )
    return acc


def _tap_uses(size: int, tap: int, stride: int, out_size: int, device=None) -> torch.Tensor:
    """(size,) int64: how many outputs read input index i through kernel tap ``tap``."""
    i = torch.arange(size, device=device)
    j = i - tap
    return ((j % stride == 0) & (j >= 0) & (j // stride < out_size)).long()


def event_conv_taps(
    slots: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], tally: Tally, name: str,
    sources: Sequence[str],
) -> List[torch.Tensor]:
    """A Conv2d (no padding) on binary slots (D, B, C, T, F), one partial sum per time tap
    row i: P_i = sum_d conv(slots[d], W[:, :, i:i+1, :]) over the input frames that row
    reads. The caller scales each P_i by its own frames' theta (``combine_taps``)."""
    levels, _, _, t_in, f_in = slots.shape
    c_out, _, kh, kw = weight.shape
    sh, sw = stride
    t_out = (t_in - kh) // sh + 1
    f_out = (f_in - kw) // sw + 1
    span = sh * (t_out - 1) + 1
    partials = []
    for i in range(kh):
        w_i = weight[:, :, i : i + 1, :]
        partials.append(sum(F.conv2d(slot[:, :, i : i + span], w_i, None, (sh, sw))
                            for slot in slots))
    # accumulates: each event at (c, t, f) feeds C_out outputs per (tap row, column) that
    # reads it; counted on the events present, frame by frame and column by column
    col_uses = sum(_tap_uses(f_in, j, sw, f_out, slots.device) for j in range(kw))
    ev = (slots != 0).sum(dim=(1, 2))  # (D, T, F) events, summed over batch and channels
    ops = nonzero = 0
    for i in range(kh):
        row_uses = _tap_uses(t_in, i, sh, t_out, slots.device)
        per_pos = row_uses[:, None] * col_uses[None, :]  # (T, F) uses per input position
        ops += int((ev * per_pos).sum()) * c_out
        nonzero += int((ev[0] * per_pos).sum()) * c_out
    macs = slots.size(1) * c_out * t_out * f_out * weight.size(1) * kh * kw
    tally.spike_layer(
        name, "Conv2d", macs=macs, macs_valid=macs, ac_ops=ops, nonzero_macs=nonzero,
        out_elems=partials[0].numel(), levels=levels, sources=sources,
    )
    return partials


def combine_taps(
    partials: List[torch.Tensor], theta: torch.Tensor, bias: torch.Tensor, stride: int,
    tally: Tally, name: str,
) -> torch.Tensor:
    """sum_i theta[frame read by tap row i] * P_i + bias: the per-frame thresholds of a
    window differ, so each tap row is scaled by its own (one MAC per output per row).
    theta: (B, 1, T_in, 1), or one number (a constant threshold: the rows are summed and
    scaled once). P_i: (B, C, T_out, F_out)."""
    if theta.numel() == 1:
        return scale_tokens(sum(partials), theta, bias.view(1, -1, 1, 1), tally, name)
    t_out = partials[0].size(2)
    span = stride * (t_out - 1) + 1
    out = bias.view(1, -1, 1, 1)
    for i, p in enumerate(partials):
        out = out + p * theta[:, :, i : i + span : stride]
    tally.elementwise_op(name + ".theta_scale", SCALE_KIND, mults=len(partials) * out.numel(),
                         ann_mults=0.0, ann_adds=0.0)
    return out


def scale_tokens(
    acc: torch.Tensor, theta: torch.Tensor, bias: Optional[torch.Tensor], tally: Tally,
    name: str,
) -> torch.Tensor:
    """acc * theta (+ bias): theta per input token, after accumulation; one MAC per output
    (the bias add is its accumulate)."""
    out = acc * theta
    if bias is not None:
        out = out + bias
    tally.elementwise_op(name + ".theta_scale", SCALE_KIND, mults=out.numel(),
                         ann_mults=0.0, ann_adds=0.0)
    return out


def real_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: Sequence[int],
    tally: Tally, name: str,
) -> torch.Tensor:
    """Conv2d on real input: every product a MAC (the bias is the accumulator's start)."""
    out = F.conv2d(x, weight, bias, tuple(stride))
    c_in, kh, kw = weight.shape[1:]
    tally.real_layer(name, "Conv2d", macs=out.numel() * c_in * kh * kw, out_elems=out.numel())
    return out


def real_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], tally: Tally,
    name: str,
) -> torch.Tensor:
    out = F.linear(x, weight, bias)
    tally.real_layer(name, "Linear", macs=x.numel() // x.size(-1) * weight.numel(),
                     out_elems=out.numel())
    return out


def relu(x: torch.Tensor, tally: Tally, name: str) -> torch.Tensor:
    """One comparison per element, in the SNN (real front end) and its ANN twin alike."""
    tally.elementwise_op(name, "activation", adds=x.numel())
    return torch.relu(x)


def residual_add(x: torch.Tensor, y: torch.Tensor, tally: Tally, name: str) -> torch.Tensor:
    tally.elementwise_op(name, "residual add", adds=x.numel())
    return x + y
