"""Operation arithmetic of the synaptic layers: dense multiply-accumulate counts of a Linear,
a ConvNd and a matrix product, the summed fan-out of a convolution's input (how many MACs
each input element takes part in, so that spike events can be counted per element), and the
mean spike count over valid positions. Plain functions of shapes and tensors; the hooks that
apply them live in ``espnet_iml.energy.counting``."""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F


def linear_macs(input_shape: Sequence[int], in_features: int, out_features: int) -> int:
    """MACs of a Linear applied to an input of ``input_shape`` (..., in_features)."""
    if input_shape[-1] != in_features:
        raise ValueError(f"input has {input_shape[-1]} features, layer expects {in_features}")
    return math.prod(input_shape[:-1]) * in_features * out_features


def conv_macs(
    output_shape: Sequence[int], in_channels: int, groups: int, kernel_size: Sequence[int]
) -> int:
    """MACs of a ConvNd with output (B, C_out, *spatial): each output element sums
    ``in_channels / groups x prod(kernel)`` products."""
    return math.prod(output_shape) * (in_channels // groups) * math.prod(kernel_size)


def matmul_macs(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """MACs of ``a @ b`` with (..., n, k) @ (..., k, m) and broadcast batch dims."""
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise ValueError("matmul_macs needs operands of at least 2 dims")
    n, k = a_shape[-2:]
    k2, m = b_shape[-2:]
    if k != k2:
        raise ValueError(f"inner dims differ: {k} vs {k2}")
    batch = torch.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]))
    return math.prod(batch) * n * k * m


def mean_count(counts: torch.Tensor, valid: Optional[torch.Tensor] = None) -> Tuple[float, int]:
    """(mean count over valid positions, number of valid positions)."""
    if valid is None:
        return float(counts.double().mean()), counts.numel()
    n = int(valid.sum())
    return (float(counts.double()[valid].sum()) / n if n else 0.0), n


def conv_fanout(m: nn.Module):
    """Summed fan-out of a ConvNd input: each output position sums the inputs in its window
    over C_in / groups channels for each of C_out / groups output channels, so
    sum(values x fan-out) = C_out / groups x sum over output positions of the window sums
    of the channel-summed values (exact at borders and with strides; zero padding adds
    nothing). Only valid output positions count: those whose window lies entirely on valid
    input (the frames the encoder's length arithmetic keeps)."""
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
    pad = m.padding if not isinstance(m.padding, str) else 0

    def window_sums(v: torch.Tensor) -> torch.Tensor:
        ones = torch.ones((1, 1) + tuple(m.kernel_size), dtype=v.dtype, device=v.device)
        return conv(v.sum(1, keepdim=True), ones, None, m.stride, pad, m.dilation)

    def fanout(v: torch.Tensor, valid: torch.Tensor) -> float:
        full = m.in_channels * math.prod(m.kernel_size) - 0.5
        out_valid = window_sums(valid) >= full
        return float((window_sums(v) * out_valid).sum()) * (m.out_channels // m.groups)

    return fanout
