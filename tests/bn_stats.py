"""Shared by the folding and energy tests: BatchNorm statistics that are not the identity."""

import torch

from espnet_iml.norm import MaskedBatchNorm


def randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Give every MaskedBatchNorm a non-trivial affine and running statistics, so that folding
    it into a synaptic layer really changes that layer's weights; returns ``model``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MaskedBatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model
