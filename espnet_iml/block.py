"""One IML-Spikeformer block: HD-RepSSA and a spiking FFN on a real-valued residual stream.

OUR DESIGN (spec + prototype): membrane shortcut (the residual stream carries membrane-like
real values; every branch starts with masked BatchNorm -> IMLS, so every synaptic layer in
the block is fed spike counts), FFN ratio set by ``linear_units``.
"""

from typing import List, Optional

import torch
from torch import nn

from espnet_iml.attention import HDRepSSA
from espnet_iml.fused import linear_bn_then_neuron, norm_then_neuron
from espnet_iml.imls import IMLSNeuron
from espnet_iml.norm import branch_norm
from espnet_iml.rep import LinearBN


class SpikingFeedForward(nn.Module):
    """BN -> IMLS -> LinearBN(size, units) -> IMLS -> LinearBN(units, size)."""

    def __init__(self, size: int, units: int, neuron: dict, norm: str = "batch"):
        super().__init__()
        self.norm = branch_norm(norm, size)
        self.in_neuron = IMLSNeuron(**neuron)
        self.w1 = LinearBN(size, units)
        self.mid_neuron = IMLSNeuron(**neuron)
        self.w2 = LinearBN(units, size)
        self.fold_in_eval = True  # eval: norm + neuron as one kernel (False: one by one)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.training and not self.fold_in_eval:
            h = self.in_neuron(self.norm(x, mask), mask)
            h = self.mid_neuron(self.w1(h, mask), mask)
            return self.w2(h, mask)
        # fused BatchNorm + IMLS kernels where they may run (espnet_iml.fused)
        h = norm_then_neuron(self.norm, self.in_neuron, x, mask)
        h = linear_bn_then_neuron(self.w1, self.mid_neuron, h, mask)
        return self.w2(h, mask)


class SpikingBlock(nn.Module):
    """x + SSA(IMLS(BN(x))), then x + FFN(x).

    Args:
        size, heads, units: width, attention heads, FFN hidden units.
        levels, threshold, threshold_init: IMLS settings.
        decay_exponents: per-head HDM exponents (None = no decay mask).
        qkv_conv_kernel, causal: see HDRepSSA.
        dropout_rate: dropout on each branch before the residual add.
        norm: norm before each branch's first neuron, "batch" (masked BatchNorm) or
            "layer" (per-token LayerNorm).
    """

    def __init__(
        self,
        size: int,
        heads: int,
        units: int,
        levels: int = 4,
        threshold: str = "input_aware",
        threshold_init: float = 1.0,
        decay_exponents: Optional[List[float]] = None,
        qkv_conv_kernel: int = 15,
        causal: bool = False,
        dropout_rate: float = 0.1,
        norm: str = "batch",
    ):
        super().__init__()
        neuron = dict(levels=levels, threshold=threshold, threshold_init=threshold_init)
        self.attn_norm = branch_norm(norm, size)
        self.attn_neuron = IMLSNeuron(**neuron)
        self.attn = HDRepSSA(
            size, heads, levels, decay_exponents, qkv_conv_kernel, causal, threshold,
            threshold_init,
        )
        self.ffn = SpikingFeedForward(size, units, neuron, norm)
        self.dropout = nn.Dropout(dropout_rate)
        self.fold_in_eval = True  # eval: norm + neuron as one kernel (False: one by one)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, size); mask: (B, T, 1) bool, True = valid frame."""
        if not self.training and not self.fold_in_eval:
            s = self.attn_neuron(self.attn_norm(x, mask), mask)
        else:
            s = norm_then_neuron(self.attn_norm, self.attn_neuron, x, mask)
        x = x + self.dropout(self.attn(s, mask))
        return x + self.dropout(self.ffn(x, mask))
