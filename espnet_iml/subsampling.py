"""Conv2d x4 subsampling front end, spiking or real-valued.

Spiking (default, OUR DESIGN following spiking vision Transformers): the first conv is the
encoding layer (real-valued fbank in: multiply-accumulate), its output is spiked by IMLS, so
the second conv and the projection take spike counts (accumulate-only). This choice alone
moves the theoretical energy ratio from about 2x to about 5-7x (docs/design.md).
Real-valued: Conv-ReLU-Conv-ReLU-Linear as ESPnet's Conv2dSubsampling.

Output lengths are computed from the input lengths, not from the padded mask: ESPnet
202511's Conv2dSubsampling gets them wrong for utterances padded in a batch.
"""

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from espnet_iml.fused import (
    bn_imls,
    conv_bn_imls,
    drop_full_mask,
    fold_conv_bn_eval,
    neuron_frames,
)
from espnet_iml.imls import IMLSNeuron
from espnet_iml.norm import MaskedBatchNorm, has_hooks


def conv_out_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Valid output frames of one kernel-3 stride-2 conv."""
    return torch.div(lengths - 1, 2, rounding_mode="floor")


def time_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T) bool, True at frames < lengths."""
    return torch.arange(length, device=lengths.device)[None] < lengths[:, None]


class SpikingConv2dSubsampling(nn.Module):
    """(B, T, idim) -> (B, T', odim), T' = ((T - 1) // 2 - 1) // 2.

    Args:
        idim: input feature size (80 for fbank).
        odim: output size (model width).
        spiking: IMLS after each conv (True) or ReLU (False).
        neuron: IMLS settings (levels, threshold, threshold_init).
        channels: conv channels (0: odim, as ESPnet's Conv2dSubsampling). Fewer channels
            (OUR OPTION) shrink the 2-D maps where a spiking front end spends most of a
            training step.
    """

    min_frames = 7

    def __init__(
        self, idim: int, odim: int, spiking: bool = True, neuron: dict = None,
        channels: int = 0,
    ):
        super().__init__()
        self.spiking = spiking
        c = channels or odim
        self.conv1 = nn.Conv2d(1, c, 3, 2)
        self.conv2 = nn.Conv2d(c, c, 3, 2)
        if spiking:
            neuron = dict(neuron or {})
            self.bn1 = MaskedBatchNorm(c, channel_dim=1)
            # Thresholds per frame, over channels x frequency.
            self.neuron1 = IMLSNeuron(**neuron, reduce_dims=(1, 3))
            self.bn2 = MaskedBatchNorm(c, channel_dim=1)
            self.neuron2 = IMLSNeuron(**neuron, reduce_dims=(-1,))
        self.out = nn.Linear(c * (((idim - 1) // 2 - 1) // 2), odim)
        # eval: bn1 and bn2 folded into conv1 and conv2 (False: the modules one by one,
        # the training form, as LinearBN.fold_in_eval)
        self.fold_in_eval = True

    def fusable(self) -> bool:
        """Whether the fused kernels (espnet_iml.fused) may stand in for the modules: both
        neurons input-aware IMLS neurons not recording counts, no hooks on the modules
        (profilers), BatchNorm statistics not synchronized across processes."""
        if not self.spiking or (not self.training and not self.fold_in_eval):
            return False
        neurons = (self.neuron1, self.neuron2)
        if not all(isinstance(n, IMLSNeuron) and n.threshold == "input_aware"
                   and not n.recording for n in neurons):
            return False
        if tuple(self.neuron1.reduce_dims) != (1, 3) or tuple(self.neuron2.reduce_dims) != (-1,):
            return False
        return not (self.bn1.observed() or self.bn2.observed()
                    or has_hooks(self.conv1, self.conv2, self.out, *neurons))

    def forward(
        self, xs: torch.Tensor, ilens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        l1 = conv_out_lengths(ilens)
        l2 = conv_out_lengths(l1)
        if self.fusable():
            return self.forward_fused(xs, l1, l2), l2
        x = self.conv1(xs.unsqueeze(1))
        if self.spiking:
            m1 = time_mask(l1, x.size(2))[:, None, :, None]
            x = self.neuron1(self.bn1(x, m1), m1)
        else:
            x = torch.relu(x)
        x = self.conv2(x)
        if self.spiking:
            x = self.bn2(x, time_mask(l2, x.size(2))[:, None, :, None])
        b, c, t, f = x.shape
        # Flatten before the second neuron (its threshold spans channels x freq of a frame
        # either way), so the projection is fed the neuron's output directly.
        x = x.transpose(1, 2).reshape(b, t, c * f)
        if self.spiking:
            x = self.neuron2(x, time_mask(l2, t)[..., None])
        else:
            x = torch.relu(x)
        return self.out(x), l2

    def forward_fused(self, xs: torch.Tensor, l1: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
        """The spiking path with fused kernels (espnet_iml.fused): same values and gradients
        as the module path above (tests/test_fused.py). bn1 folds into conv1 (batch
        statistics in training, running ones in eval); the 2-D maps are channels-last, so
        bn2 + neuron2 run on (B, T, F, C) frames and the projection takes its input columns
        in (F, C) order (its weight permuted) rather than a transposed copy of the map."""
        xs4 = xs.unsqueeze(1)
        t1 = (xs4.size(2) - 3) // 2 + 1
        m1 = time_mask(l1, t1)[:, None, :, None]
        x = conv_bn_imls(self.conv1, self.bn1, self.neuron1, xs4, m1)
        if self.bn2.training:
            x = self.conv2(x)
        else:
            w, b = fold_conv_bn_eval(self.conv2, self.bn2)
            x = F.conv2d(x, w, b, stride=self.conv2.stride)
        bsz, c, t, f = x.shape
        x = x.permute(0, 2, 3, 1)  # (B, T, F, C): a view of the channels-last map
        if not x.is_contiguous():
            x = x.contiguous()
        m2 = drop_full_mask(time_mask(l2, t)[:, :, None, None])
        if self.bn2.training:
            x = bn_imls(self.bn2, self.neuron2, x, m2, td=2)
        else:
            x = neuron_frames(self.neuron2, x, m2)
        # out.weight's input index is c * F + f; the frames are laid out f * C + c
        w = self.out.weight.view(-1, c, f).transpose(1, 2).reshape(-1, c * f)
        return F.linear(x.reshape(bsz, t, f * c), w, self.out.bias)
