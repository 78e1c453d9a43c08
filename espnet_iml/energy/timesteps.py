"""Counting a T-step SNN (``neuron: lif``) against the same one-step ANN twin.

A multi-step encoder runs its network on T copies of the input stacked along the batch
(``espnet_iml.lif``), so the hooks see every layer run T times. The SNN does run T times:
its accumulates, thresholds, norms and residual adds are counted as run. Its ANN twin (the
same network with real activations) runs once, so every ANN-side quantity of those records
is divided by T. The first layer sees the same real input at every step: an SNN computes it
once and reuses it (direct encoding), so a real-fed layer whose input is identical in all T
copies has its SNN MACs divided by T too (``same_every_step`` decides this on the tensor,
not by name). A layer's spike levels become T (a count over the T steps is in 0..T), which
sets the quantized-ANN comparator's bits to ceil(log2(T + 1)), as D + 1 levels do for IMLS.

Counts that stay summed over the T steps: a layer's mean input count (spikes per position
over the T steps, 0..T, the quantity IMLS's count in 0..D compares with) and its non-zero
share (steps with a non-zero input per position, 0..T).

The memory model is not applied to a T-step SNN (its totals say None): it leaves out the
membrane potentials kept between timesteps (a read and a write per neuron and step), which
is the memory cost that sets a multi-step SNN apart, and it would credit the SNN with it.
"""

from typing import Collection

import torch

from espnet_iml.energy.records import Tally


def is_under(name: str, prefix: str) -> bool:
    """True if module ``name`` is ``prefix`` or inside it ("" holds every module)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def same_every_step(x: torch.Tensor, timesteps: int) -> bool:
    """True if ``x`` (T x B, ...) holds the same values in each of its T copies."""
    if x.dim() == 0 or x.size(0) % timesteps:
        return False
    steps = x.reshape(timesteps, -1)
    return bool((steps == steps[:1]).all())


def one_step_twin(tally: Tally, prefix: str, timesteps: int,
                  computed_once: Collection[str]) -> None:
    """Convert, in place, the records under ``prefix`` (a T-step encoder's module name, ""
    for the whole tally) from "as run, T times" to the convention above."""
    t = float(timesteps)
    for st in tally.layers.values():
        if not is_under(st.name, prefix):
            continue
        st.macs = int(round(st.macs / t))
        st.macs_valid /= t
        st.ann_mac_ops = st.mac_ops / t
        if st.spike_levels:
            st.spike_levels *= timesteps
        if st.name in computed_once:
            st.mac_ops /= t
            st.nonzero_macs /= t
            st.act_bits_snn_macs /= t
            st.out_elems = int(round(st.out_elems / t))
    for e in tally.elementwise.values():
        if is_under(e.name, prefix):
            e.ann_mults /= t
            e.ann_adds /= t
