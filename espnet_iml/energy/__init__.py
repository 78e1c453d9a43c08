"""Theoretical inference energy of a spiking network.

* ``records``: what each layer / op / neuron did (the ``Tally`` both counters fill);
* ``counting``: the hook-based counter (``count_energy``), which observes a float model,
  and, with ``spike_driven=True``, runs each IML-Spikeformer encoder's spike-driven form
  (``espnet_iml.inference``) and takes that encoder's counts from what it executed;
  ``elementwise``: the norms, attention scale, residual adds and activations it models;
  ``timesteps``: a T-step LIF encoder's counts against its one-step ANN twin;
* ``provenance``: which tensors are spikes (neuron outputs and their views);
  ``executed``: the spike-driven run beside the float model, checked against it;
* ``models``: picojoule constants and the energy conventions (strict, generous, memory,
  quantized ANN), documented there;
* ``report``: ``EnergyReport`` (JSON, markdown); ``plots``: its figures.
* ``inputs``: the models and utterances ``espnet_iml.bin.energy`` measures; ``measure``:
  one model's counting run over them (batch 1, encoder + CTC + teacher-forced decoder).

Usage::

    with torch.no_grad(), count_energy(model, spike_driven=True) as counter:
        model.encode(speech, lengths)
    report = counter.report()
    print(report.to_markdown()); report.save("out_dir")
"""

from espnet_iml.energy.counting import EnergyCounter, count_energy
from espnet_iml.energy.macs import conv_macs, linear_macs, matmul_macs, mean_count
from espnet_iml.energy.models import (
    E_AC_PJ, E_ADD_PJ, E_MAC_PJ, E_MULT_PJ, SRAM_PJ_PER_64BIT, ac_energy_pj, ann_snn_ratio,
    mac_energy_pj, qmac_energy_pj, sram_pj, strict_pj,
)
from espnet_iml.energy.plots import plot_report
from espnet_iml.energy.records import (
    PARTS_ORDER, WORD_BITS, ElementwiseStat, LayerStat, NeuronStat, Tally, spike_bits,
)
from espnet_iml.energy.report import EnergyReport, markdown_report, summary

__all__ = [
    "E_AC_PJ", "E_ADD_PJ", "E_MAC_PJ", "E_MULT_PJ", "ElementwiseStat", "EnergyCounter",
    "EnergyReport", "LayerStat", "NeuronStat", "PARTS_ORDER", "SRAM_PJ_PER_64BIT", "Tally",
    "WORD_BITS", "ac_energy_pj", "ann_snn_ratio", "conv_macs", "count_energy", "linear_macs",
    "mac_energy_pj", "markdown_report", "matmul_macs", "mean_count", "plot_report",
    "qmac_energy_pj", "spike_bits", "sram_pj", "strict_pj", "summary",
]
