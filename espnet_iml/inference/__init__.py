"""Spike-driven inference of a trained IML-Spikeformer encoder (ours).

``spike_driven(encoder)`` returns an inference-only module that executes every
accumulate-only synaptic layer from binary spike events and every real-valued operation
explicitly, and counts both as it runs; its output equals the float model's eval output
(float64, to rounding). ``espnet_iml.energy.count_energy(model, spike_driven=True)`` uses it
for the energy report.

Files: events.py (the executed primitives and what they count), neuron.py, norm.py,
frontend.py, attention.py, ffn.py, block.py, encoder.py.
"""

import copy

import torch

from espnet_iml.inference.encoder import SpikeDrivenEncoder


def spike_driven(encoder, dtype: torch.dtype = torch.float64) -> SpikeDrivenEncoder:
    """The spike-driven form of a trained ``IMLSpikeformerEncoder``, in ``dtype``
    (float64 by default: the integer spike counts then match the float model's exactly
    unless an input lies within rounding of a threshold)."""
    # Convert a copy first: the folds (BatchNorm into the convs, the re-parameterized
    # branches) are computed at construction and must be computed in ``dtype``, not in the
    # trained model's float32 (that alone moved a float32 model's outputs by ~3e-8).
    return SpikeDrivenEncoder(copy.deepcopy(encoder).to(dtype)).to(dtype).eval()


__all__ = ["SpikeDrivenEncoder", "spike_driven"]
