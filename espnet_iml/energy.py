"""Theoretical inference energy of a spiking network, counted from one real forward pass.

Convention (the field's, e.g. Spikformer / Spike-driven Transformer / SpikingJelly's op
counters; numbers from Horowitz, ISSCC 2014, 45 nm, 32-bit float):

* a synaptic layer (Linear, Conv1d/2d, a matrix product) fed real values costs
  ``E_MAC = 4.6 pJ`` per multiply-accumulate;
* a synaptic layer fed spikes costs ``E_AC = 0.9 pJ`` per accumulate, and the number of
  accumulates is ``MACs x r``, with ``r`` the mean spike count of its input over valid
  (non-padded) positions. IMLS spikes are integer counts in {0..D} (D binary slots), so r
  can exceed 1;
* the ANN reference is the same network, same weights, fed real-valued activations: every
  synaptic op a MAC, ``E_ANN = 4.6 pJ x MACs``. For a layer fed spikes
  ``E_ANN / E_SNN = (4.6 / 0.9) / r = 5.11 / r``; over a network it is ``5.11 / r_w`` with
  ``r_w`` the MAC-weighted mean count of the spike-fed layers, pulled down by every layer
  fed real values (the encoding layer, ESPnet's decoder).

What is "spikes" is decided by provenance, not by value: a layer's input is spikes when it
IS an IMLS neuron's output tensor or a view of it (reshape / transpose / slice). Neuron
outputs are tracked by storage address with forward hooks; each entry holds a weak
reference to the output tensor, so an address freed and reused by another tensor is never
mistaken for spikes. Anything computed from spikes by another op (a sum, a scale) is real.

Matrix products of two spike tensors (Q K^T): the accumulations are driven by the events
of the LEFT operand (each unit of Q's count adds a row of K), so r is the left operand's
mean count; both operands' counts are kept in the report. A V with real scores A and spike
V is driven by V.

Re-parameterized layers (``LinearBN``, ``RepTemporalProjection``) are counted as units in
their deployed (folded) form whether or not they fold at run time (``fold_in_eval``): the
pointwise projection is the synaptic layer; the depthwise temporal filter of the Q/K/V
generator is listed with the element-wise ops. The counts are identical folded or not.

Element-wise (non-synaptic) ops are listed separately and NOT included in the headline
(convention) totals: IMLS thresholds, norms, the per-token threshold scales folded into
the next layer, the attention scale, the decay mask, the depthwise temporal filter,
residual adds, activations, softmax. They are charged ``E_MULT = 3.7 pJ`` per multiply and
``E_ADD = 0.9 pJ`` per add/compare (Horowitz, fp32) in the "+ element-wise" totals, the
same for the SNN and its ANN twin (so they only dilute the ratio).

Memory-inclusive estimate (``memory_*`` fields). Model, per synaptic layer, no data reuse
(one access per operand per op, as in per-synaptic-op models such as Lemaire et al.,
"An analytical estimation of spiking neural networks energy efficiency", ICONIP 2022;
Dampfhoffer et al., IEEE TETCI 2023): an on-chip SRAM access of a b-bit word costs
``b / 64 x E_SRAM64`` with ``E_SRAM64 = 10 pJ`` (Horowitz 2014: 64-bit read from an 8 KB
SRAM = 10 pJ; 32 KB: 20 pJ; 1 MB: 100 pJ; DRAM 1.3-2.6 nJ: pass ``sram_pj_per_64bit`` to
change it). Then

* ANN / MAC layer: per MAC one 32-bit weight read + one 32-bit activation read; per output
  element one 32-bit write;
* SNN AC layer: per MAC position one read of the input count (``ceil(log2(D + 1))`` bits);
  per MAC whose input count is non-zero one 32-bit weight read (the weight is accumulated
  ``count`` times from a register); per output element one 32-bit write;
* quantized ANN: for layers whose input is spikes in the SNN, per MAC one ``b_q``-bit
  activation read, and a 32-bit weight read only where that activation is non-zero (its
  activations ARE the spike counts, so it can skip the same zeros as the SNN); other
  layers as the ANN. Its compute stays dense (every MAC at ``E_qMAC``), the field's
  convention for ANN references; a zero-gated multiplier would save up to the zero
  fraction of it (reported per layer as ``1 - nonzero_fraction``).

Not modelled: caches and data reuse (lower both), event routing/addressing (raises the
SNN's), membrane state across timesteps (IMLS has one timestep: none).

Quantized-ANN reference (``qann_*``): the same network whose spike-fed layers instead take
``b_q = ceil(log2(D + 1))``-bit activations (D + 1 levels; 3 bits at D = 4) against 32-bit
weights; its MAC energy scales linearly with the activation bit width,
``E_qMAC = 4.6 pJ x b_q / 32`` (a b x 32 array multiplier has b/32 of the partial
products of a 32 x 32 one). Layers fed real values stay at 4.6 pJ. The SNN beats it only
when ``0.9 x r < 4.6 x b_q / 32``, i.e. r < 0.48 at D = 4.

Padding. ``macs`` counts the tensors as run. Spike-fed layers are counted by events:
AC ops = sum over valid input positions of count x fan-out, and ``macs_valid`` = the MACs
that touch valid inputs (Linear: valid tokens; ConvNd: valid output positions, i.e. windows
lying on valid input, exact at borders and strides; a product of two spike tensors: pairs
of valid positions, so padded keys add nothing to Q K^T). All energies use ``macs_valid``,
so a padded batch gives the same numbers as its utterances alone, with two exceptions:
layers fed real values (no mask to read: padded frames are counted), and A V, whose real
scores A carry no mask (V's events also fan out to padded query rows). Run one utterance
per forward (``espnet_iml.bin.energy`` does) for exact per-utterance numbers.

Usage::

    with count_energy(model) as counter:      # model: ESPnetASRModel or an encoder
        model.encode(speech, lengths)
    report = counter.report()
    print(report.to_markdown()); report.save("out_dir")
"""

import json
import math
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from espnet_iml.attention import HDRepSSA, MatMul
from espnet_iml.block import SpikingBlock
from espnet_iml.imls import IMLSNeuron
from espnet_iml.norm import MaskedBatchNorm
from espnet_iml.rep import LinearBN, RepTemporalProjection
from espnet_iml.subsampling import SpikingConv2dSubsampling

E_MAC_PJ = 4.6  # 32-bit float multiply (3.7) + add (0.9), Horowitz 2014, 45 nm
E_AC_PJ = 0.9  # 32-bit float add
E_MULT_PJ = 3.7
E_ADD_PJ = 0.9
SRAM_PJ_PER_64BIT = 10.0  # 8 KB SRAM, 64-bit read, Horowitz 2014
WORD_BITS = 32

PARTS_ORDER = ("encoder", "decoder", "ctc")


# --------------------------------------------------------------------------- plain functions


def linear_macs(input_shape: Sequence[int], in_features: int, out_features: int) -> int:
    """MACs of a Linear applied to an input of ``input_shape`` (..., in_features)."""
    if input_shape[-1] != in_features:
        raise ValueError(f"input has {input_shape[-1]} features, layer expects {in_features}")
    return math.prod(input_shape[:-1]) * in_features * out_features


def conv_macs(
    output_shape: Sequence[int], in_channels: int, groups: int, kernel_size: Sequence[int]
) -> int:
    """MACs of a ConvNd with output (B, C_out, *spatial): each output element sums
    ``in_channels / groups x prod(kernel)`` products."""
    return math.prod(output_shape) * (in_channels // groups) * math.prod(kernel_size)


def matmul_macs(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """MACs of ``a @ b`` with (..., n, k) @ (..., k, m) and broadcast batch dims."""
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise ValueError("matmul_macs needs operands of at least 2 dims")
    n, k = a_shape[-2:]
    k2, m = b_shape[-2:]
    if k != k2:
        raise ValueError(f"inner dims differ: {k} vs {k2}")
    batch = torch.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]))
    return math.prod(batch) * n * k * m


def mac_energy_pj(macs: float) -> float:
    """Energy of ``macs`` multiply-accumulates on real values."""
    return E_MAC_PJ * macs


def ac_energy_pj(macs: float, mean_count: float) -> float:
    """Energy of a layer of ``macs`` fed spikes whose mean count is ``mean_count``."""
    return E_AC_PJ * macs * mean_count


def qmac_energy_pj(macs: float, bits: int) -> float:
    """Quantized-ANN MAC energy: 4.6 pJ scaled by activation bits / 32 (module docstring)."""
    return E_MAC_PJ * macs * bits / WORD_BITS


def spike_bits(levels: int) -> int:
    """Bits of a count in {0..levels}: ceil(log2(levels + 1))."""
    return max(1, math.ceil(math.log2(levels + 1)))


def sram_pj(bits: float, pj_per_64bit: float = SRAM_PJ_PER_64BIT) -> float:
    """Energy of moving ``bits`` to or from on-chip SRAM."""
    return bits / 64.0 * pj_per_64bit


def ann_snn_ratio(e_ann: float, e_snn: float) -> float:
    return e_ann / e_snn if e_snn > 0 else float("inf")


def mean_count(counts: torch.Tensor, valid: Optional[torch.Tensor] = None) -> Tuple[float, int]:
    """(mean count over valid positions, number of valid positions)."""
    if valid is None:
        return float(counts.double().mean()), counts.numel()
    n = int(valid.sum())
    return (float(counts.double()[valid].sum()) / n if n else 0.0), n


# --------------------------------------------------------------------------- records


@dataclass
class LayerStat:
    """One synaptic layer, accumulated over calls."""

    name: str
    kind: str
    part: str
    calls: int = 0
    spike_calls: int = 0
    macs: int = 0  # as run (padded tensors included)
    macs_valid: float = 0.0  # MACs at valid input positions (= macs for real-fed calls)
    ac_ops: float = 0.0  # sum over spike-fed calls of macs_valid x r
    mac_ops: float = 0.0  # macs of real-fed calls
    r_other_sum: float = 0.0  # MAC-weighted count of the second spike operand (Q K^T)
    nonzero_macs: float = 0.0  # MACs whose driving input is non-zero (SNN weight reads)
    out_elems: int = 0
    act_bits_snn_macs: float = 0.0  # sum of macs_valid x input bits (SNN reads)
    spike_levels: int = 0
    sources: List[str] = field(default_factory=list)

    @property
    def op_class(self) -> str:
        if self.spike_calls == 0:
            return "MAC"
        return "AC" if self.spike_calls == self.calls else "mixed"

    @property
    def mean_count(self) -> Optional[float]:
        """MAC-weighted mean spike count of the input over spike-fed calls."""
        spiked = self.macs_valid - self.mac_ops
        return self.ac_ops / spiked if spiked > 0 else None


@dataclass
class ElementwiseStat:
    name: str
    kind: str
    part: str
    mults: float = 0.0
    adds: float = 0.0

    @property
    def energy_pj(self) -> float:
        return self.mults * E_MULT_PJ + self.adds * E_ADD_PJ


@dataclass
class NeuronStat:
    name: str
    part: str
    levels: int
    calls: int = 0
    valid: int = 0
    count_sum: float = 0.0
    hist: List[int] = field(default_factory=list)  # positions at each count 0..D

    @property
    def mean_count(self) -> float:
        return self.count_sum / self.valid if self.valid else 0.0


@dataclass
class _Spikes:
    ref: "weakref.ref"
    neuron: str
    counts: torch.Tensor
    valid: Optional[torch.Tensor]
    levels: int


# --------------------------------------------------------------------------- the counter


def _is_espnet_mha(m: nn.Module) -> bool:
    attrs = ("linear_q", "linear_k", "linear_v", "linear_out", "h", "d_k")
    return all(hasattr(m, a) for a in attrs)


class EnergyCounter:
    """Hooks a model and accumulates per-layer op counts; use through ``count_energy``.

    Args:
        model: the module to profile (an ESPnetASRModel, an encoder, any nn.Module).
        root_part: part name of modules not under a top-level child named in ``parts``
            (for an encoder passed directly: "encoder").
        parts: top-level child names reported as separate parts.
        sram_pj_per_64bit: memory model constant (module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        root_part: Optional[str] = None,
        parts: Sequence[str] = PARTS_ORDER,
        sram_pj_per_64bit: float = SRAM_PJ_PER_64BIT,
    ):
        self.model = model
        self.root_part = root_part
        self.parts = tuple(parts)
        self.sram_pj_per_64bit = sram_pj_per_64bit
        self.layers: "OrderedDict[str, LayerStat]" = OrderedDict()
        self.elementwise: "OrderedDict[str, ElementwiseStat]" = OrderedDict()
        self.neurons: "OrderedDict[str, NeuronStat]" = OrderedDict()
        self._spikes: Dict[int, _Spikes] = {}
        self._handles = []
        self._recording: Dict[IMLSNeuron, bool] = {}

    # ----- setup
    def _part(self, name: str) -> str:
        top = name.split(".", 1)[0]
        if top in self.parts:
            return top
        return self.root_part or (top if name else "model")

    def attach(self) -> "EnergyCounter":
        inside_unit = set()
        for m in self.model.modules():
            if isinstance(m, (LinearBN, RepTemporalProjection)):
                inside_unit.update(id(c) for c in m.modules() if c is not m)
        for name, m in self.model.named_modules():
            if id(m) in inside_unit:
                continue
            hook = None
            if isinstance(m, IMLSNeuron):
                self._recording[m] = m.recording
                m.recording = True
                self.neurons[name] = NeuronStat(name, self._part(name), m.levels)
                hook = self._neuron_hook
            elif isinstance(m, (nn.Linear, LinearBN, RepTemporalProjection)):
                hook = self._linear_hook
            elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
                hook = self._conv_hook
            elif isinstance(m, MatMul):
                hook = self._matmul_hook
            elif _is_espnet_mha(m):
                hook = self._mha_hook
            elif isinstance(m, MaskedBatchNorm):
                hook = self._bn_hook
            elif isinstance(m, nn.LayerNorm):
                hook = self._layernorm_hook
            elif isinstance(m, HDRepSSA):
                hook = self._ssa_hook
            elif isinstance(m, SpikingBlock):
                hook = self._residual_hook
            elif isinstance(m, SpikingConv2dSubsampling):
                hook = self._subsampling_hook
            elif isinstance(m, (nn.ReLU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid)):
                hook = self._activation_hook
            if hook is not None:
                self._handles.append(
                    m.register_forward_hook(self._wrap(hook, name), with_kwargs=True)
                )
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for m, was in self._recording.items():
            m.recording = was
            if not was:
                m.last_counts = None
        self._recording.clear()
        self._spikes.clear()

    def _wrap(self, fn, name):
        def hook(module, args, kwargs, output):
            fn(name, module, args, kwargs, output)

        return hook

    # ----- spike provenance
    def _register_spikes(self, name, out, counts, valid, levels):
        key = out.untyped_storage().data_ptr()

        def _forget(_ref, key=key):
            entry = self._spikes.get(key)
            if entry is not None and entry.ref is _ref:
                del self._spikes[key]

        self._spikes[key] = _Spikes(weakref.ref(out, _forget), name, counts, valid, levels)

    def spike_source(
        self, x: torch.Tensor
    ) -> Optional[Tuple[str, torch.Tensor, Optional[torch.Tensor], int]]:
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

    # ----- hooks
    def _neuron_hook(self, name, m, args, kwargs, out):
        u = args[0]
        mask = args[1] if len(args) > 1 else kwargs.get("mask")
        counts = m.last_counts
        if counts is None or counts.shape != out.shape:
            return
        # same memory layout as the output, so views of the output map onto it
        counts = torch.empty_strided(out.shape, out.stride(), dtype=counts.dtype).copy_(counts)
        valid = None
        if mask is not None:
            valid = torch.empty_strided(out.shape, out.stride(), dtype=torch.bool)
            valid.copy_(mask.to(torch.bool).expand(out.shape))
        self._register_spikes(name, out, counts, valid, m.levels)
        st = self.neurons[name]
        vals = counts[valid] if valid is not None else counts.reshape(-1)
        st.calls += 1
        st.valid += vals.numel()
        st.count_sum += float(vals.double().sum())
        hist = torch.bincount(vals.long().clamp(0, m.levels).reshape(-1), minlength=m.levels + 1)
        st.hist = [a + int(b) for a, b in zip(st.hist or [0] * (m.levels + 1), hist.tolist())]
        # thresholding: |U| accumulate + compare/round per element, one scale per element
        n = u.numel()
        tokens = n // self._reduced_size(u, m.reduce_dims)
        if m.threshold == "input_aware":
            self._elementwise(name + ".threshold", "threshold", mults=n + 2 * tokens, adds=2 * n)
        else:
            self._elementwise(name + ".threshold", "threshold", mults=n, adds=n)

    @staticmethod
    def _reduced_size(u, dims) -> int:
        return math.prod(u.shape[d] for d in dims)

    def _synaptic(
        self,
        name: str,
        kind: str,
        macs: int,
        out_elems: int,
        driving: torch.Tensor,
        other: Optional[torch.Tensor] = None,
        fanout=None,
    ) -> None:
        """Account one call. ``fanout(values)`` maps a tensor shaped like the driving input
        to the number of MACs each element takes part in, summed (None: uniform fan-out,
        macs / numel). Spike-fed layers are counted by events: AC ops = sum over valid
        input positions of count x fan-out, so padding never adds operations."""
        st = self.layers.get(name)
        if st is None:
            st = self.layers[name] = LayerStat(name, kind, self._part(name))
        st.calls += 1
        st.macs += macs
        st.out_elems += out_elems
        src = self.spike_source(driving)
        src_other = self.spike_source(other) if other is not None else None
        if src is None and src_other is not None:  # only the right operand is spikes
            src, src_other = src_other, None
            driving, other = other, driving
            fanout = self._matmul_fanout(other, driving, None, left_drives=False)
        if src is None:
            st.macs_valid += macs
            st.mac_ops += macs
            st.nonzero_macs += macs
            st.act_bits_snn_macs += macs * WORD_BITS
            return
        neuron, counts, valid, levels = src
        counts = counts.double()
        valid_f = valid.double() if valid is not None else torch.ones_like(counts)
        if fanout is None:
            fan = macs / counts.numel()
            fanout = lambda v, valid: fan * float(v.sum())  # noqa: E731
        macs_valid = fanout(valid_f, valid_f)
        ops = fanout(counts * valid_f, valid_f)
        nonzero = fanout((counts > 0).double() * valid_f, valid_f)
        st.spike_calls += 1
        st.macs_valid += macs_valid
        st.ac_ops += ops
        st.nonzero_macs += nonzero
        st.act_bits_snn_macs += macs_valid * spike_bits(levels)
        st.spike_levels = levels
        if src_other is not None:
            r2, _ = mean_count(src_other[1], src_other[2])
            st.r_other_sum += macs_valid * r2
        for n in (neuron, src_other[0] if src_other else None):
            if n is not None and n not in st.sources:
                st.sources.append(n)
        # the per-token threshold theta of each spike operand scales the output once
        self._elementwise(
            name + ".theta_scale", "scale (threshold fold)",
            mults=out_elems * (1 + (src_other is not None)),
        )

    def _valid_or_ones(self, x: torch.Tensor) -> torch.Tensor:
        src = self.spike_source(x)
        if src is not None and src[2] is not None:
            return src[2].double()
        return torch.ones(x.shape, dtype=torch.float64, device=x.device)

    def _matmul_fanout(self, a, b, _unused, left_drives: bool = True):
        """Fan-out of ``a @ b``'s driving operand, restricted to valid positions of the
        other operand (a padded key contributes no MACs to a valid query)."""
        if left_drives:
            other = self._valid_or_ones(b)
            return lambda v, valid: float(torch.matmul(v, other).sum())
        other = self._valid_or_ones(a)
        return lambda v, valid: float(torch.matmul(other, v).sum())

    def _elementwise(self, name, kind, mults=0.0, adds=0.0):
        st = self.elementwise.get(name)
        if st is None:
            st = self.elementwise[name] = ElementwiseStat(name, kind, self._part(name))
        st.mults += mults
        st.adds += adds

    def _linear_hook(self, name, m, args, kwargs, out):
        x = args[0] if args else kwargs.get("x", kwargs.get("input", kwargs.get("s")))
        if isinstance(m, nn.Linear):
            inf, outf = m.in_features, m.out_features
        elif isinstance(m, LinearBN):
            inf, outf = m.linear.in_features, m.linear.out_features
        else:  # RepTemporalProjection: pointwise layer + depthwise temporal filter
            inf, outf = m.pointwise.in_features, m.pointwise.out_features
            taps = max(m.kernel_size, 1)
            self._elementwise(
                name + ".temporal_filter", "depthwise temporal filter",
                mults=out.numel() * taps, adds=out.numel() * taps,
            )
        kind = "Linear" if isinstance(m, nn.Linear) else type(m).__name__
        self._synaptic(name, kind, linear_macs(x.shape, inf, outf), out.numel(), x)

    def _conv_hook(self, name, m, args, kwargs, out):
        x = args[0] if args else kwargs.get("input")
        macs = conv_macs(out.shape, m.in_channels, m.groups, m.kernel_size)
        self._synaptic(name, type(m).__name__, macs, out.numel(), x, fanout=_conv_fanout(m))

    def _matmul_hook(self, name, m, args, kwargs, out):
        a, b = args[0], args[1]
        self._synaptic(name, "MatMul", matmul_macs(a.shape, b.shape), out.numel(), a, b,
                       fanout=self._matmul_fanout(a, b, None))

    def _mha_hook(self, name, m, args, kwargs, out):
        q = args[0] if args else kwargs["query"]
        k = args[1] if len(args) > 1 else kwargs["key"]
        b, t1, t2 = q.size(0), q.size(1), k.size(1)
        macs = b * m.h * t1 * t2 * m.d_k
        scores = b * m.h * t1 * t2
        n_scores = 2 if hasattr(m, "linear_pos") else 1  # rel-pos attention: a second score
        for prod in ("qk", "av") + (("pos",) if n_scores == 2 else ()):
            st = self.layers.get(f"{name}.{prod}")
            if st is None:
                st = self.layers[f"{name}.{prod}"] = LayerStat(
                    f"{name}.{prod}", "MatMul (attention)", self._part(name)
                )
            st.calls += 1
            st.macs += macs
            st.macs_valid += macs
            st.mac_ops += macs
            st.nonzero_macs += macs
            st.act_bits_snn_macs += macs * WORD_BITS
            st.out_elems += scores if prod != "av" else b * t1 * m.h * m.d_k
        # scale 1/sqrt(d_k), softmax (exp ~ 1 mult, sum, divide)
        self._elementwise(name + ".softmax", "softmax + scale", mults=3 * scores * n_scores,
                          adds=scores * (1 + n_scores))

    def _bn_hook(self, name, m, args, kwargs, out):
        self._elementwise(name, "norm (BatchNorm affine)", mults=out.numel(), adds=out.numel())

    def _layernorm_hook(self, name, m, args, kwargs, out):
        n = out.numel()
        self._elementwise(name, "norm (LayerNorm)", mults=3 * n, adds=4 * n)

    def _ssa_hook(self, name, m, args, kwargs, out):
        s = args[0] if args else kwargs["s"]
        b, t, _ = s.shape
        scores = b * m.heads * t * t
        self._elementwise(name + ".scale", "attention scale", mults=scores)
        if m.gammas is not None or m.causal:
            self._elementwise(name + ".decay_mask", "decay mask", mults=scores)

    def _residual_hook(self, name, m, args, kwargs, out):
        self._elementwise(name + ".residual", "residual add", adds=2 * out.numel())

    def _subsampling_hook(self, name, m, args, kwargs, out):
        if not m.spiking:  # two ReLUs, functional inside the module
            c = m.conv2.out_channels
            f = m.out.in_features
            x = args[0] if args else kwargs["xs"]
            t1 = (x.size(1) - 1) // 2
            f1 = (x.size(2) - 1) // 2
            relu = x.size(0) * c * t1 * f1 + out[0].size(0) * out[0].size(1) * f
            self._elementwise(name + ".relu", "activation", adds=relu)

    def _activation_hook(self, name, m, args, kwargs, out):
        n = out.numel()
        if isinstance(m, nn.ReLU):
            self._elementwise(name, "activation", adds=n)
        else:
            self._elementwise(name, "activation", mults=3 * n, adds=n)

    # ----- results
    def reset(self) -> None:
        """Forget counts (hooks stay)."""
        self.layers.clear()
        self.elementwise.clear()
        for st in self.neurons.values():
            st.calls, st.valid, st.count_sum, st.hist = 0, 0, 0.0, []
        self._spikes.clear()

    def release(self) -> None:
        """Drop provenance entries of finished forwards (call between utterances)."""
        self._spikes.clear()

    def report(self, meta: Optional[dict] = None) -> "EnergyReport":
        return EnergyReport.build(self, meta or {})


def _conv_fanout(m: nn.Module):
    """Summed fan-out of a ConvNd input: each output position sums the inputs in its window
    over C_in / groups channels for each of C_out / groups output channels, so
    sum(values x fan-out) = C_out / groups x sum over output positions of the window sums
    of the channel-summed values (exact at borders and with strides; zero padding adds
    nothing). Only valid output positions count: those whose window lies entirely on valid
    input (the frames the encoder's length arithmetic keeps)."""
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
    pad = m.padding if not isinstance(m.padding, str) else 0

    def window_sums(v: torch.Tensor) -> torch.Tensor:
        ones = torch.ones((1, 1) + tuple(m.kernel_size), dtype=v.dtype, device=v.device)
        return conv(v.sum(1, keepdim=True), ones, None, m.stride, pad, m.dilation)

    def fanout(v: torch.Tensor, valid: torch.Tensor) -> float:
        full = m.in_channels * math.prod(m.kernel_size) - 0.5
        out_valid = window_sums(valid) >= full
        return float((window_sums(v) * out_valid).sum()) * (m.out_channels // m.groups)

    return fanout


@contextmanager
def count_energy(model: nn.Module, **kwargs) -> Iterator[EnergyCounter]:
    """Context manager: hooks ``model`` and yields an ``EnergyCounter``; hooks and the
    neurons' ``recording`` flags are restored on exit. Use under ``torch.no_grad()``."""
    counter = EnergyCounter(model, **kwargs).attach()
    try:
        yield counter
    finally:
        counter.detach()


# --------------------------------------------------------------------------- report


def _layer_energy(st: LayerStat, pj64: float) -> dict:
    """Energies (pJ) of one layer under every model of the module docstring."""
    spiked_macs = st.macs_valid - st.mac_ops
    bq = spike_bits(st.spike_levels) if st.spike_levels else WORD_BITS
    e_snn = E_AC_PJ * st.ac_ops + E_MAC_PJ * st.mac_ops
    e_ann = E_MAC_PJ * st.macs_valid
    e_qann = qmac_energy_pj(spiked_macs, bq) + E_MAC_PJ * st.mac_ops
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


@dataclass
class EnergyReport:
    """Per-layer rows, element-wise ops, neuron firing statistics and per-part totals."""

    layers: List[dict]
    elementwise: List[dict]
    neurons: List[dict]
    totals: Dict[str, dict]
    constants: dict
    meta: dict

    @classmethod
    def build(cls, counter: EnergyCounter, meta: dict) -> "EnergyReport":
        pj64 = counter.sram_pj_per_64bit
        layers = []
        for st in counter.layers.values():
            row = dict(
                name=st.name, kind=st.kind, part=st.part, op_class=st.op_class, calls=st.calls,
                macs=st.macs, macs_valid=st.macs_valid, ac_macs=st.macs_valid - st.mac_ops,
                mac_macs=st.mac_ops, ac_ops=st.ac_ops, mean_count=st.mean_count,
                mean_count_other_operand=(
                    st.r_other_sum / (st.macs_valid - st.mac_ops) if st.r_other_sum else None
                ),
                nonzero_fraction=(
                    (st.nonzero_macs - st.mac_ops) / (st.macs_valid - st.mac_ops)
                    if st.macs_valid > st.mac_ops else None
                ),
                spike_sources=list(st.sources),
            )
            row.update(_layer_energy(st, pj64))
            layers.append(row)
        elementwise = [
            dict(name=e.name, kind=e.kind, part=e.part, mults=e.mults, adds=e.adds,
                 energy_pj=e.energy_pj)
            for e in counter.elementwise.values()
        ]
        neurons = [
            dict(name=n.name, part=n.part, levels=n.levels, calls=n.calls, valid=n.valid,
                 mean_count=n.mean_count, level_histogram=n.hist)
            for n in counter.neurons.values() if n.calls
        ]
        parts = []
        for p in list(PARTS_ORDER) + [r["part"] for r in layers + elementwise]:
            if p not in parts and any(r["part"] == p for r in layers + elementwise):
                parts.append(p)
        totals = {p: _totals([r for r in layers if r["part"] == p],
                             [e for e in elementwise if e["part"] == p],
                             [n for n in neurons if n["part"] == p]) for p in parts}
        totals["model"] = _totals(layers, elementwise, neurons)
        constants = dict(
            E_MAC_pJ=E_MAC_PJ, E_AC_pJ=E_AC_PJ, E_MULT_pJ=E_MULT_PJ, E_ADD_pJ=E_ADD_PJ,
            SRAM_pJ_per_64bit=pj64,
            source="Horowitz, ISSCC 2014 (45 nm): fp32 mult 3.7 pJ, add 0.9 pJ; "
                   "8 KB SRAM 64-bit read 10 pJ",
        )
        return cls(layers, elementwise, neurons, totals, constants, dict(meta))

    # ----- output
    def to_dict(self) -> dict:
        return dict(meta=self.meta, constants=self.constants, totals=self.totals,
                    layers=self.layers, elementwise=self.elementwise, neurons=self.neurons)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def ratio(self, part: str = "encoder", kind: str = "compute") -> float:
        """ANN/SNN energy ratio of a part: kind "compute" (convention), "elementwise"
        (+ element-wise ops), "memory" (+ memory), or "qann" (quantized ANN / SNN)."""
        key = dict(compute="ratio_ann_snn", elementwise="ratio_ann_snn_with_elementwise",
                   memory="ratio_ann_snn_with_memory", qann="ratio_qann_snn")[kind]
        return self.totals[part][key]

    def to_markdown(self, title: Optional[str] = None, layer_rows: bool = True) -> str:
        return markdown_report(self, title, layer_rows)

    def save(self, output_dir, prefix: str = "energy", plots: bool = True) -> List[Path]:
        """Write <prefix>.md, <prefix>.json and (plots) two PNGs; returns the paths."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{prefix}.md", out / f"{prefix}.json"]
        paths[0].write_text(self.to_markdown(self.meta.get("title")))
        paths[1].write_text(self.to_json())
        if plots:
            paths += plot_report(self, out, prefix)
        return paths


def _totals(layers: List[dict], elementwise: List[dict], neurons: List[dict]) -> dict:
    def s(key: str) -> float:
        return float(sum(r[key] for r in layers))

    macs_valid, ac_macs, ac_ops = s("macs_valid"), s("ac_macs"), s("ac_ops")
    e_snn, e_ann, e_qann = s("e_snn"), s("e_ann"), s("e_qann")
    e_el = float(sum(e["energy_pj"] for e in elementwise))
    mem_snn, mem_ann, mem_qann = s("mem_snn"), s("mem_ann"), s("mem_qann")
    valid = sum(n["valid"] for n in neurons)
    return dict(
        macs=int(s("macs")), macs_valid=macs_valid, ac_macs=ac_macs,
        mac_macs=s("mac_macs"), ac_ops=ac_ops,
        ac_fraction_of_macs=ac_macs / macs_valid if macs_valid else 0.0,
        mean_count_ac_layers=ac_ops / ac_macs if ac_macs else None,
        mean_count_neurons=(sum(n["mean_count"] * n["valid"] for n in neurons) / valid
                            if valid else None),
        e_snn_pj=e_snn, e_ann_pj=e_ann, e_qann_pj=e_qann, e_elementwise_pj=e_el,
        mem_snn_pj=mem_snn, mem_ann_pj=mem_ann, mem_qann_pj=mem_qann,
        ratio_ann_snn=ann_snn_ratio(e_ann, e_snn),
        ratio_ann_snn_with_elementwise=ann_snn_ratio(e_ann + e_el, e_snn + e_el),
        ratio_ann_snn_with_memory=ann_snn_ratio(e_ann + e_el + mem_ann, e_snn + e_el + mem_snn),
        ratio_qann_snn=ann_snn_ratio(e_qann, e_snn),
        ratio_qann_snn_with_memory=ann_snn_ratio(e_qann + e_el + mem_qann,
                                                 e_snn + e_el + mem_snn),
    )


def _fmt(x, unit=""):
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    a = abs(x)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g} {suffix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _pj(x):
    """pJ with a readable prefix (nJ, uJ, mJ)."""
    a = abs(x)
    for div, unit in ((1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if a >= div:
            return f"{x / div:.4g} {unit}"
    return f"{x:.4g} pJ"


def markdown_report(rep: EnergyReport, title: Optional[str] = None, layer_rows: bool = True) -> str:
    lines = []
    if title:
        lines += [f"## {title}", ""]
    for k, v in rep.meta.items():
        if k != "title":
            lines.append(f"- {k}: {v}")
    if rep.meta:
        lines.append("")
    lines += [
        "### Totals (compute-only = the field's convention; energies summed over the input)",
        "",
        "| part | MACs | AC share of MACs | mean count (AC layers) | E_SNN | E_ANN | "
        "**ANN/SNN** | E_qANN | qANN/SNN | + element-wise ANN/SNN | "
        "+ memory ANN/SNN | + memory qANN/SNN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for part, t in rep.totals.items():
        lines.append(
            f"| {part} | {_fmt(t['macs_valid'])} | {t['ac_fraction_of_macs']:.3f} | "
            f"{_fmt(t['mean_count_ac_layers'])} | {_pj(t['e_snn_pj'])} | {_pj(t['e_ann_pj'])} | "
            f"**{t['ratio_ann_snn']:.3f}** | {_pj(t['e_qann_pj'])} | {t['ratio_qann_snn']:.3f} | "
            f"{t['ratio_ann_snn_with_elementwise']:.3f} | {t['ratio_ann_snn_with_memory']:.3f} | "
            f"{t['ratio_qann_snn_with_memory']:.3f} |"
        )
    lines += [
        "",
        "E_SNN = 4.6 pJ x MACs(real input) + 0.9 pJ x MACs(spike input) x mean count; "
        "E_ANN = 4.6 pJ x MACs; E_qANN: spike-fed layers at 4.6 pJ x b/32 with b = "
        "ceil(log2(D+1)) bits. Memory: SRAM at "
        f"{rep.constants['SRAM_pJ_per_64bit']} pJ per 64 bits (see espnet_iml/energy.py).",
        "",
    ]
    if rep.neurons:
        lines += ["### Firing (IMLS neurons, mean spike count per neuron over valid positions)",
                  "", "| neuron | mean count | share at 0..D |", "|---|---|---|"]
        for n in rep.neurons:
            tot = sum(n["level_histogram"]) or 1
            share = " / ".join(f"{h / tot:.2f}" for h in n["level_histogram"])
            lines.append(f"| {n['name']} | {n['mean_count']:.3f} | {share} |")
        lines.append("")
    if layer_rows:
        lines += ["### Synaptic layers", "",
                  "| layer | kind | class | MACs | mean count | non-zero | E_SNN | E_ANN |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rep.layers:
            lines.append(
                f"| {r['name']} | {r['kind']} | {r['op_class']} | {_fmt(r['macs_valid'])} | "
                f"{_fmt(r['mean_count'])} | {_fmt(r['nonzero_fraction'])} | "
                f"{_pj(r['e_snn'])} | {_pj(r['e_ann'])} |"
            )
        lines.append("")
    if rep.elementwise:
        kinds: "OrderedDict[Tuple[str, str], List[float]]" = OrderedDict()
        for e in rep.elementwise:
            acc = kinds.setdefault((e["part"], e["kind"]), [0.0, 0.0, 0.0])
            acc[0] += e["mults"]
            acc[1] += e["adds"]
            acc[2] += e["energy_pj"]
        lines += ["### Element-wise (non-synaptic) ops, not in the compute-only totals", "",
                  "| part | op | mults | adds | energy |", "|---|---|---|---|---|"]
        for (part, kind), (mu, ad, en) in kinds.items():
            lines.append(f"| {part} | {kind} | {_fmt(mu)} | {_fmt(ad)} | {_pj(en)} |")
        lines.append("")
    return "\n".join(lines)


def plot_report(rep: EnergyReport, out_dir, prefix: str = "energy") -> List[Path]:
    """Two PNGs: per-neuron mean spike counts, and the energy breakdown per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    if rep.neurons:
        names = [n["name"] for n in rep.neurons]
        vals = [n["mean_count"] for n in rep.neurons]
        fig, ax = plt.subplots(figsize=(8, max(3.0, 0.18 * len(names) + 1)))
        ax.barh(range(len(names)), vals, color="tab:blue")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=6)
        ax.invert_yaxis()
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("mean spike count per neuron (valid positions)")
        ax.set_title(rep.meta.get("title", "IMLS firing"), fontsize=9)
        fig.tight_layout()
        p = out_dir / f"{prefix}_spike_counts.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    parts = [p for p in rep.totals if p != "model"]
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 4.0 * len(parts) + 2), 4.5))
    width = 0.25
    colors = ("tab:red", "tab:green", "tab:orange", "tab:grey")
    labels = ("MAC (synaptic)", "AC (synaptic)", "element-wise", "memory")
    for ax, with_memory in zip(axes, (False, True)):
        for i, part in enumerate(parts):
            rows = [r for r in rep.layers if r["part"] == part]
            t = rep.totals[part]
            mac = sum(E_MAC_PJ * r["mac_macs"] for r in rows)
            ac = sum(E_AC_PJ * r["ac_ops"] for r in rows)
            el = t["e_elementwise_pj"]
            stacks = {
                "SNN": [mac, ac, el, t["mem_snn_pj"]],
                "ANN": [t["e_ann_pj"], 0.0, el, t["mem_ann_pj"]],
                "qANN": [t["e_qann_pj"], 0.0, el, t["mem_qann_pj"]],
            }
            for j, (label, vals) in enumerate(stacks.items()):
                x = i + (j - 1) * width
                bottom = 0.0
                for k, v in enumerate(vals if with_memory else vals[:3]):
                    ax.bar(x, v / 1e6, width * 0.9, bottom=bottom / 1e6, color=colors[k],
                           label=labels[k] if (i == 0 and j == 0) else None)
                    bottom += v
                ax.text(x, bottom / 1e6, label, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(parts)))
        ax.set_xticklabels(parts)
        ax.set_ylabel("energy (uJ, summed over the input)")
        ax.set_title("compute + element-wise" if not with_memory else "+ memory (SRAM model)",
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(rep.meta.get("title", "energy breakdown"), fontsize=9)
    fig.tight_layout()
    p = out_dir / f"{prefix}_breakdown.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths


def summary(rep: EnergyReport) -> dict:
    """Compact per-part headline numbers (for CLIs and docs)."""
    return {p: {k: t[k] for k in ("macs_valid", "mean_count_ac_layers", "mean_count_neurons",
                                  "ratio_ann_snn", "ratio_qann_snn",
                                  "ratio_ann_snn_with_elementwise", "ratio_ann_snn_with_memory")}
            for p, t in rep.totals.items()}


__all__ = [
    "E_AC_PJ", "E_MAC_PJ", "EnergyCounter", "EnergyReport", "ac_energy_pj", "ann_snn_ratio",
    "conv_macs", "count_energy", "linear_macs", "mac_energy_pj", "matmul_macs", "mean_count",
    "plot_report", "qmac_energy_pj", "spike_bits", "summary",
]
