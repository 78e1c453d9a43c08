"""The norms in front of each block branch, executed. They follow a residual add, so no
synaptic layer precedes them to fold into: each runs on its own and is counted."""

import torch
from torch import nn

from espnet_iml.energy.records import Tally
from espnet_iml.norm import MaskedBatchNorm


class AffineNorm(nn.Module):
    """A MaskedBatchNorm at eval: y = a * x + c per channel (one MAC per element).

    Args:
        norm: the trained norm; name: its module path.
    """

    def __init__(self, norm: MaskedBatchNorm, name: str):
        super().__init__()
        self.name = name
        a, c = norm.eval_affine()
        self.register_buffer("a", a.detach().clone())
        self.register_buffer("c", c.detach().clone())

    def forward(self, x: torch.Tensor, tally: Tally) -> torch.Tensor:
        tally.elementwise_op(self.name, "norm (BatchNorm affine)", mults=x.numel())
        return x * self.a + self.c


class ExplicitLayerNorm(nn.Module):
    """LayerNorm over the last dim written out, so every multiply is seen and counted.

    Per token of d channels: mean (d adds, one division), centring (d adds), variance (d
    squares accumulated, one division), rsqrt of var + eps (one add; the rsqrt counted as
    one multiply), then (x - mean) * rstd * w + b (2 d multiplies, the bias add fused):
    3 d + 3 multiplies and 2 d + 1 adds.

    Args:
        norm: the trained torch LayerNorm (elementwise affine); name: its module path.
    """

    def __init__(self, norm: nn.LayerNorm, name: str):
        super().__init__()
        self.name = name
        self.eps = norm.eps
        self.register_buffer("weight", norm.weight.detach().clone())
        self.register_buffer("bias", norm.bias.detach().clone())

    def forward(self, x: torch.Tensor, tally: Tally) -> torch.Tensor:
        d = x.size(-1)
        tokens = x.numel() // d
        mean = x.sum(-1, keepdim=True) / d
        xc = x - mean
        var = (xc * xc).sum(-1, keepdim=True) / d
        rstd = torch.rsqrt(var + self.eps)
        tally.elementwise_op(self.name, "norm (LayerNorm)", mults=tokens * (3 * d + 3),
                             adds=tokens * (2 * d + 1))
        return xc * rstd * self.weight + self.bias


def build_norm(norm: nn.Module, name: str) -> nn.Module:
    """The executed form of a branch norm (MaskedBatchNorm or TokenLayerNorm)."""
    if isinstance(norm, MaskedBatchNorm):
        return AffineNorm(norm, name)
    if isinstance(norm, nn.LayerNorm):
        return ExplicitLayerNorm(norm, name)
    raise TypeError(f"{name}: no spike-driven form for {type(norm).__name__}")
