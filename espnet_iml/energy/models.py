"""Energy models: picojoule constants and the formulas that price operation counts.

Costs are Horowitz (ISSCC 2014, 45 nm, 32-bit float): multiply 3.7 pJ, add 0.9 pJ, so a
multiply-accumulate (MAC) is 4.6 pJ and an accumulate (AC) 0.9 pJ.

**Strict convention (the headline).** Every operation the spike-driven encoder executes
(``espnet_iml.inference``) is priced: every multiply that involves a real value is a MAC
(4.6 pJ, its accumulate included, whether or not one follows), every other addition or
comparison 0.9 pJ, and only the accumulates driven by binary spike events are ACs (0.9 pJ).
So the threshold scales (the per-token theta that multiplies a layer's accumulated events,
three times per output of conv2 whose window spans three thresholds), the thresholds
themselves (one division per neuron input), the encoding conv, BatchNorm affines that do
not fold, LayerNorm, the attention scale and decay mask and the depthwise temporal filter
are all MACs. The ANN twin (same network, same weights, real activations, no neurons) is
priced the same way from what it would execute: every synaptic op a MAC, plus its own
norms, temporal filter, decay mask, residual adds and one comparison per activation (a
ReLU where the SNN has a neuron):

    E_SNN = 4.6 x (MACs on real input + real multiplies) + 0.9 x (event ACs + other adds)
    E_ANN = 4.6 x (dense synaptic MACs + the twin's real multiplies) + 0.9 x its adds

The strict totals exist only for parts whose operations were executed (the spike-driven
encoder) or that have no spike-fed layer (every op a MAC: the ESPnet decoder, CTC, an ANN
encoder); a part whose spike-fed layers were only observed by hooks has none.

**Generous convention (the field's: Spikformer, Spike-driven Transformer, SpikingJelly's op
counters; our earlier headline).** Synaptic layers only:

* a synaptic layer (Linear, Conv1d/2d, a matrix product) fed real values costs
  ``E_MAC = 4.6 pJ`` per multiply-accumulate;
* a synaptic layer fed spikes costs ``E_AC = 0.9 pJ`` per accumulate, and the number of
  accumulates is ``MACs x r``, with ``r`` the mean spike count of its input over valid
  (non-padded) positions (IMLS counts are in {0..D}, so r can exceed 1);
* the ANN reference is the same network fed real-valued activations: ``E_ANN = 4.6 pJ x
  MACs``. For a layer fed spikes ``E_ANN / E_SNN = (4.6 / 0.9) / r = 5.11 / r``.

Everything else (thresholds, their scales, norms, attention scale, decay mask, temporal
filter) is ignored there; the "+ element-wise" column adds it at 3.7 pJ per multiply and
0.9 pJ per add, equally to the SNN and the ANN (so it only dilutes the ratio).

**Memory-inclusive estimate** (``mem_*``): per synaptic layer, no data reuse (one access
per operand per op, as in per-synaptic-op models such as Lemaire et al., ICONIP 2022;
Dampfhoffer et al., IEEE TETCI 2023): an on-chip SRAM access of a b-bit word costs
``b / 64 x E_SRAM64`` with ``E_SRAM64 = 10 pJ`` (Horowitz 2014: 64-bit read from an 8 KB
SRAM; 32 KB: 20 pJ; 1 MB: 100 pJ). Then

* ANN / MAC layer: per MAC one 32-bit weight read + one 32-bit activation read; per output
  element one 32-bit write;
* SNN AC layer: per MAC position one read of the input count (``ceil(log2(D + 1))`` bits);
  per MAC whose input count is non-zero one 32-bit weight read; per output one write;
* quantized ANN: for layers whose input is spikes in the SNN, per MAC one ``b_q``-bit
  activation read, and a 32-bit weight read only where that activation is non-zero; other
  layers as the ANN. Its compute stays dense (every MAC at ``E_qMAC``).

Not modelled: caches and data reuse (lower both), event routing/addressing (raises the
SNN's), membrane state across timesteps (IMLS has one timestep: none).

**Quantized-ANN reference** (``qann_*``): the same network whose spike-fed layers take
``b_q = ceil(log2(D + 1))``-bit activations (3 bits at D = 4) against 32-bit weights, at
``E_qMAC = 4.6 pJ x b_q / 32`` (a b x 32 array multiplier has b/32 of the partial products
of a 32 x 32 one). The SNN beats it only when ``0.9 x r < 4.6 x b_q / 32``, i.e. r < 0.48
at D = 4.
"""

from typing import List

from espnet_iml.energy.records import WORD_BITS, LayerStat, spike_bits

E_MAC_PJ = 4.6  # 32-bit float multiply (3.7) + add (0.9), Horowitz 2014, 45 nm
E_AC_PJ = 0.9  # 32-bit float add
E_MULT_PJ = 3.7
E_ADD_PJ = 0.9
SRAM_PJ_PER_64BIT = 10.0  # 8 KB SRAM, 64-bit read, Horowitz 2014

SOURCE = ("Horowitz, ISSCC 2014 (45 nm): fp32 mult 3.7 pJ, add 0.9 pJ; "
          "8 KB SRAM 64-bit read 10 pJ")


def mac_energy_pj(macs: float) -> float:
    """Energy of ``macs`` multiply-accumulates on real values."""
    return E_MAC_PJ * macs


def ac_energy_pj(macs: float, mean_count: float) -> float:
    """Energy of a layer of ``macs`` fed spikes whose mean count is ``mean_count``."""
    return E_AC_PJ * macs * mean_count


def qmac_energy_pj(macs: float, bits: int) -> float:
    """Quantized-ANN MAC energy: 4.6 pJ scaled by activation bits / 32."""
    return E_MAC_PJ * macs * bits / WORD_BITS


def sram_pj(bits: float, pj_per_64bit: float = SRAM_PJ_PER_64BIT) -> float:
    """Energy of moving ``bits`` to or from on-chip SRAM."""
    return bits / 64.0 * pj_per_64bit


def elementwise_pj(mults: float, adds: float) -> float:
    """Generous "+ element-wise" price: 3.7 pJ per multiply, 0.9 pJ per add."""
    return mults * E_MULT_PJ + adds * E_ADD_PJ


def strict_pj(mults: float, adds: float) -> float:
    """Strict price: every real multiply a MAC (4.6 pJ), every other add 0.9 pJ."""
    return mults * E_MAC_PJ + adds * E_AC_PJ


def ann_snn_ratio(e_ann: float, e_snn: float) -> float:
    return e_ann / e_snn if e_snn > 0 else float("inf")


def layer_energy(st: LayerStat, pj64: float) -> dict:
    """Energies (pJ) of one synaptic layer under the generous, memory and qANN models."""
    spiked_macs = st.spiked_macs
    real_macs = st.macs_valid - spiked_macs  # the twins' real-fed MACs
    bq = spike_bits(st.spike_levels) if st.spike_levels else WORD_BITS
    e_snn = E_AC_PJ * st.ac_ops + E_MAC_PJ * st.mac_ops
    e_ann = E_MAC_PJ * st.macs_valid
    e_qann = qmac_energy_pj(spiked_macs, bq) + E_MAC_PJ * real_macs
    out_bits = st.out_elems * WORD_BITS
    # SNN: weight read per non-zero driving input (real-fed calls: per MAC), input read at
    # its bit width per MAC position, output write.
    mem_snn = sram_pj(st.nonzero_macs * WORD_BITS + st.act_bits_snn_macs + out_bits, pj64)
    mem_ann = sram_pj(st.macs_valid * 2 * WORD_BITS + out_bits, pj64)
    mem_qann = sram_pj(
        st.nonzero_macs * WORD_BITS + spiked_macs * bq + st.mac_ops * WORD_BITS + out_bits, pj64
    )
    return dict(e_snn=e_snn, e_ann=e_ann, e_qann=e_qann, mem_snn=mem_snn, mem_ann=mem_ann,
                mem_qann=mem_qann)


def part_totals(
    layers: List[dict], elementwise: List[dict], neurons: List[dict], executed: bool
) -> dict:
    """Totals of one part from its layer rows, element-wise rows and neuron rows (the
    dicts of ``EnergyReport``); ``executed``: its ops come from the spike-driven run."""

    def s(rows, key: str) -> float:
        return float(sum(r[key] for r in rows))

    macs_valid, ac_macs, ac_ops = s(layers, "macs_valid"), s(layers, "ac_macs"), s(layers, "ac_ops")
    mac_macs = s(layers, "mac_macs")
    e_snn, e_ann, e_qann = s(layers, "e_snn"), s(layers, "e_ann"), s(layers, "e_qann")
    e_el = elementwise_pj(s(elementwise, "mults"), s(elementwise, "adds"))
    mem_snn, mem_ann, mem_qann = s(layers, "mem_snn"), s(layers, "mem_ann"), s(layers, "mem_qann")
    valid = sum(n["valid"] for n in neurons)
    strict: dict = dict(strict_mac_ops=None, strict_add_ops=None, strict_ann_mac_ops=None,
                        strict_ann_add_ops=None, e_snn_strict_pj=None, e_ann_strict_pj=None,
                        ratio_ann_snn_strict=None)
    if executed or ac_ops == 0:
        mults, adds = mac_macs + s(elementwise, "mults"), ac_ops + s(elementwise, "adds")
        ann_mults, ann_adds = macs_valid + s(elementwise, "ann_mults"), s(elementwise, "ann_adds")
        e_snn_s, e_ann_s = strict_pj(mults, adds), strict_pj(ann_mults, ann_adds)
        strict = dict(strict_mac_ops=mults, strict_add_ops=adds, strict_ann_mac_ops=ann_mults,
                      strict_ann_add_ops=ann_adds, e_snn_strict_pj=e_snn_s,
                      e_ann_strict_pj=e_ann_s, ratio_ann_snn_strict=ann_snn_ratio(e_ann_s, e_snn_s))
    return dict(
        executed=executed,
        macs=int(s(layers, "macs")), macs_valid=macs_valid, ac_macs=ac_macs,
        mac_macs=mac_macs, ac_ops=ac_ops,
        ac_fraction_of_macs=ac_macs / macs_valid if macs_valid else 0.0,
        mean_count_ac_layers=ac_ops / ac_macs if ac_macs else None,
        mean_count_neurons=(sum(n["mean_count"] * n["valid"] for n in neurons) / valid
                            if valid else None),
        **strict,
        e_snn_pj=e_snn, e_ann_pj=e_ann, e_qann_pj=e_qann, e_elementwise_pj=e_el,
        mem_snn_pj=mem_snn, mem_ann_pj=mem_ann, mem_qann_pj=mem_qann,
        ratio_ann_snn=ann_snn_ratio(e_ann, e_snn),
        ratio_ann_snn_with_elementwise=ann_snn_ratio(e_ann + e_el, e_snn + e_el),
        ratio_ann_snn_with_memory=ann_snn_ratio(e_ann + e_el + mem_ann, e_snn + e_el + mem_snn),
        ratio_qann_snn=ann_snn_ratio(e_qann, e_snn),
        ratio_qann_snn_with_memory=ann_snn_ratio(e_qann + e_el + mem_qann,
                                                 e_snn + e_el + mem_snn),
    )

