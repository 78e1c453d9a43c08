"""IMLS neuron, executed: threshold, then the D binary slots it emits."""

from typing import NamedTuple, Tuple

import torch
from torch import nn

from espnet_iml.energy.records import Tally
from espnet_iml.imls import IMLSNeuron


class Spikes(NamedTuple):
    """A neuron's output: integer counts, the per-token threshold theta (output = counts x
    theta), and the D binary slots (slot d = 1 where count > d; counts = their sum)."""

    counts: torch.Tensor
    theta: torch.Tensor
    slots: torch.Tensor


class SpikeDrivenNeuron(nn.Module):
    """Executes an ``IMLSNeuron`` with the model's arithmetic (so its counts are the
    model's, bit for bit): theta = max(|k| * mean|U|, eps) over ``reduce_dims`` (or
    max(|k|, eps)), y = U / theta + 1/2, and slot d fires where y >= d + 1, which is
    floor(y) > d, i.e. count = clamp(floor(y), 0, D) > d.

    Counted per input element: one division (a MAC), one add for mean|U|, one add for the
    half, D comparisons emitting the slots; per token two multiplies (mean, |k|) and one
    comparison (eps). The ANN twin has a ReLU here: one comparison per element. The count
    is the neuron's native output (a ceil(log2(D + 1))-bit number) and the slots are its
    thermometer code; neither conversion is counted.

    Args:
        neuron: the trained neuron.
        name: its module path in the encoder (records are named after it).
    """

    def __init__(self, neuron: IMLSNeuron, name: str):
        super().__init__()
        self.name = name
        self.levels = neuron.levels
        self.input_aware = neuron.threshold == "input_aware"
        self.reduce_dims: Tuple[int, ...] = tuple(neuron.reduce_dims)
        self.eps = neuron.eps
        self.register_buffer("k_abs", neuron.k.detach().abs().clone())

    def forward(self, u: torch.Tensor, tally: Tally) -> Spikes:
        dims = self.reduce_dims
        n = u.numel()
        if self.input_aware:
            theta = (self.k_abs.to(u.dtype) * u.abs().mean(dim=dims, keepdim=True))
            theta = theta.clamp_min(self.eps)
            tokens = theta.numel()
            mults, adds = n + 2 * tokens, 2 * n + tokens
        else:
            theta = self.k_abs.clamp_min(self.eps).to(u.dtype).reshape([1] * u.dim())
            mults, adds = n, n
        y = u / theta + 0.5
        slots = torch.stack([(y >= d + 1) for d in range(self.levels)]).to(u.dtype)
        counts = slots.sum(0)
        tally.elementwise_op(self.name + ".threshold", "threshold", mults=mults,
                             adds=adds + self.levels * n, ann_mults=0.0, ann_adds=n)
        tally.neuron(self.name, self.levels).add(counts)
        return Spikes(counts, theta, slots)
