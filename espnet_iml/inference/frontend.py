"""The Conv2d x4 subsampling front end, executed (spiking or real-valued).

Spiking: conv1 is the encoding layer (real fbank in: MACs). Its BatchNorm bn1 is a
per-channel affine directly after it, so it folds into conv1's weights and bias; bn2 folds
into conv2 the same way (a per-output-channel scale commutes with conv2's per-frame input
thresholds). OUR DESIGN for the deployed form: exact, and it removes two affine passes.

conv2 is fed neuron1's spikes, whose threshold theta is set per FRAME (over channels x
frequency), and its 3-frame window reads three frames with three thetas. theta cannot
scale conv2's output once; instead conv2 runs as three accumulate-only partial sums, one
per time tap row (each row reads one frame per output), and each partial sum is scaled by
the theta of the frame it read: three MACs per conv2 output (``events.combine_taps``).
neuron2's threshold is per output frame (over channels x frequency of the flattened frame),
so the projection ``out`` is scaled once per output, after accumulation.
"""

from typing import Tuple

import torch
from torch import nn

from espnet_iml.energy.records import Tally
from espnet_iml.inference import events
from espnet_iml.inference.neuron import SpikeDrivenNeuron
from espnet_iml.subsampling import SpikingConv2dSubsampling, conv_out_lengths


def _fold_bn(conv: nn.Conv2d, bn) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of conv followed by bn's eval affine."""
    a, c = bn.eval_affine()
    return conv.weight * a.view(-1, 1, 1, 1), conv.bias * a + c


class SpikeDrivenSubsampling(nn.Module):
    """Executes a ``SpikingConv2dSubsampling`` on one utterance (1, T, idim).

    Args:
        embed: the trained front end; name: its module path ("embed").
    """

    def __init__(self, embed: SpikingConv2dSubsampling, name: str = "embed"):
        super().__init__()
        self.name = name
        self.spiking = embed.spiking
        self.stride = embed.conv1.stride
        with torch.no_grad():
            if self.spiking:
                w1, b1 = _fold_bn(embed.conv1, embed.bn1)
                w2, b2 = _fold_bn(embed.conv2, embed.bn2)
                self.neuron1 = SpikeDrivenNeuron(embed.neuron1, f"{name}.neuron1")
                self.neuron2 = SpikeDrivenNeuron(embed.neuron2, f"{name}.neuron2")
            else:
                w1, b1 = embed.conv1.weight, embed.conv1.bias
                w2, b2 = embed.conv2.weight, embed.conv2.bias
            for key, value in dict(w1=w1, b1=b1, w2=w2, b2=b2, w_out=embed.out.weight,
                                   b_out=embed.out.bias).items():
                self.register_buffer(key, value.detach().clone())

    def forward(self, x: torch.Tensor, tally: Tally) -> torch.Tensor:
        """x: (1, T, idim) -> (1, T', odim), T' = conv_out_lengths twice."""
        n = self.name
        u = events.real_conv2d(x.unsqueeze(1), self.w1, self.b1, self.stride, tally,
                               f"{n}.conv1")
        if not self.spiking:
            h = events.relu(u, tally, f"{n}.relu1")
            h = events.real_conv2d(h, self.w2, self.b2, self.stride, tally, f"{n}.conv2")
            h = events.relu(h.transpose(1, 2).flatten(2), tally, f"{n}.relu2")
            return events.real_linear(h, self.w_out, self.b_out, tally, f"{n}.out")
        s1 = self.neuron1(u, tally)  # theta per frame: (1, 1, T1, 1)
        partials = events.event_conv_taps(s1.slots, self.w2, self.stride, tally, f"{n}.conv2",
                                          [self.neuron1.name])
        h = events.combine_taps(partials, s1.theta, self.b2, self.stride[0], tally,
                                f"{n}.conv2")
        s2 = self.neuron2(h.transpose(1, 2).flatten(2), tally)  # (1, T2, C * F2)
        acc = events.event_linear(s2.slots, self.w_out, tally, f"{n}.out", "Linear",
                                  [self.neuron2.name])
        return events.scale_tokens(acc, s2.theta, self.b_out, tally, f"{n}.out")

    @staticmethod
    def out_length(frames: int) -> int:
        return int(conv_out_lengths(conv_out_lengths(torch.tensor(frames))))
