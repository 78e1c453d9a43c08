"""The spiking feed-forward branch, executed from spikes."""

import torch
from torch import nn

from espnet_iml.block import SpikingFeedForward
from espnet_iml.energy.records import Tally
from espnet_iml.inference import events
from espnet_iml.inference.neuron import SpikeDrivenNeuron
from espnet_iml.inference.norm import build_norm


class SpikeDrivenFeedForward(nn.Module):
    """norm -> IMLS -> (events @ W1^T) * theta + b1 -> IMLS -> (events @ W2^T) * theta + b2,
    with W1, W2 the folded LinearBN weights.

    Args:
        ffn: the trained branch; name: its module path ("encoders.<i>.ffn").
    """

    def __init__(self, ffn: SpikingFeedForward, name: str):
        super().__init__()
        self.name = name
        self.norm = build_norm(ffn.norm, f"{name}.norm")
        self.in_neuron = SpikeDrivenNeuron(ffn.in_neuron, f"{name}.in_neuron")
        self.mid_neuron = SpikeDrivenNeuron(ffn.mid_neuron, f"{name}.mid_neuron")
        with torch.no_grad():
            for key, layer in (("1", ffn.w1), ("2", ffn.w2)):
                w, b = layer.folded()
                self.register_buffer("w" + key, w.detach().clone())
                self.register_buffer("b" + key, b.detach().clone())

    def forward(self, x: torch.Tensor, tally: Tally) -> torch.Tensor:
        s = self.in_neuron(self.norm(x, tally), tally)
        name = f"{self.name}.w1"
        acc = events.event_linear(s.slots, self.w1, tally, name, "LinearBN", [self.in_neuron.name])
        s = self.mid_neuron(events.scale_tokens(acc, s.theta, self.b1, tally, name), tally)
        name = f"{self.name}.w2"
        acc = events.event_linear(s.slots, self.w2, tally, name, "LinearBN", [self.mid_neuron.name])
        return events.scale_tokens(acc, s.theta, self.b2, tally, name)
