"""One IML-Spikeformer block, executed: x + SSA(IMLS(norm(x))), then x + FFN(x)."""

import torch
from torch import nn

from espnet_iml.block import SpikingBlock
from espnet_iml.energy.records import Tally
from espnet_iml.inference import events
from espnet_iml.inference.attention import SpikeDrivenAttention
from espnet_iml.inference.ffn import SpikeDrivenFeedForward
from espnet_iml.inference.neuron import SpikeDrivenNeuron
from espnet_iml.inference.norm import build_norm


class SpikeDrivenBlock(nn.Module):
    """Executes a ``SpikingBlock`` (eval: no dropout) on one utterance (1, T, size).

    Args:
        block: the trained block; name: its module path ("encoders.<i>").
    """

    def __init__(self, block: SpikingBlock, name: str):
        super().__init__()
        self.name = name
        self.attn_norm = build_norm(block.attn_norm, f"{name}.attn_norm")
        self.attn_neuron = SpikeDrivenNeuron(block.attn_neuron, f"{name}.attn_neuron")
        self.attn = SpikeDrivenAttention(block.attn, f"{name}.attn")
        self.ffn = SpikeDrivenFeedForward(block.ffn, f"{name}.ffn")

    def forward(self, x: torch.Tensor, tally: Tally) -> torch.Tensor:
        s = self.attn_neuron(self.attn_norm(x, tally), tally)
        x = events.residual_add(x, self.attn(s, tally, self.attn_neuron.name), tally,
                                f"{self.name}.attn_residual")
        return events.residual_add(x, self.ffn(x, tally), tally, f"{self.name}.ffn_residual")
