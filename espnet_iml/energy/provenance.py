"""Which tensors are spikes: IMLS neuron outputs, tracked by storage address.

A layer's input is spikes when it IS a neuron's output tensor or a view of it (reshape,
transpose, slice); anything computed from spikes by another op (a sum, a scale) is real.
Each entry holds a weak reference to the output tensor, so an address freed and reused by
another tensor is never mistaken for spikes.
"""

import weakref
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

# (neuron name, spike counts, valid mask or None, D) of a spike tensor
SpikeSource = Tuple[str, torch.Tensor, Optional[torch.Tensor], int]


@dataclass
class _Spikes:
    ref: "weakref.ref"
    neuron: str
    counts: torch.Tensor
    valid: Optional[torch.Tensor]
    levels: int


class SpikeRegistry:
    """Neuron outputs seen in the current forward, by storage address."""

    def __init__(self):
        self._spikes: Dict[int, _Spikes] = {}

    def register(self, neuron: str, out: torch.Tensor, counts: torch.Tensor,
                 valid: Optional[torch.Tensor], levels: int) -> None:
        """``out`` is spikes of ``neuron``; ``counts`` and ``valid`` must have ``out``'s
        memory layout, so that views of ``out`` map onto them."""
        key = out.untyped_storage().data_ptr()

        def _forget(_ref, key=key):
            entry = self._spikes.get(key)
            if entry is not None and entry.ref is _ref:
                del self._spikes[key]

        self._spikes[key] = _Spikes(weakref.ref(out, _forget), neuron, counts, valid, levels)

    def source(self, x: torch.Tensor) -> Optional[SpikeSource]:
        """(neuron name, counts, valid mask, D) if ``x`` is an IMLS output or a view of it."""
        if not isinstance(x, torch.Tensor) or x.numel() == 0:
            return None
        entry = self._spikes.get(x.untyped_storage().data_ptr())
        if entry is None:
            return None
        out = entry.ref()
        if out is None or out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr():
            return None
        counts, valid = entry.counts, entry.valid
        same_view = (
            x.shape == out.shape
            and x.stride() == out.stride()
            and x.storage_offset() == out.storage_offset()
        )
        if not same_view:
            mismatch = counts.stride() != out.stride() or (
                valid is not None and valid.stride() != out.stride()
            )
            if mismatch:
                # Layouts differ: cannot map the view, use the whole tensor's statistics.
                return entry.neuron, counts, valid, entry.levels
            off = x.storage_offset() - out.storage_offset()
            counts = counts.as_strided(x.shape, x.stride(), counts.storage_offset() + off)
            if valid is not None:
                valid = valid.as_strided(x.shape, x.stride(), valid.storage_offset() + off)
        return entry.neuron, counts, valid, entry.levels

    def clear(self) -> None:
        self._spikes.clear()
