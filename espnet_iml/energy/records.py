"""Operation records: what one synaptic layer, one element-wise op and one neuron did.

Two sources fill them (both through ``Tally``):

* the hook-based counter (``espnet_iml.energy.counting``), which observes a float model and
  classifies each synaptic layer as AC or MAC by where its input came from;
* the spike-driven encoder (``espnet_iml.inference``), which executes the encoder from
  binary spike events and counts the operations it performs.

Counting conventions shared by both (the energy models in ``espnet_iml.energy.models``
price them):

* synaptic layer: ``macs`` = dense multiply-accumulates as run; ``macs_valid`` = dense MACs
  at valid (non-padded) positions (the ANN twin's cost); ``ac_ops`` = accumulates driven by
  spike events (sum over events of their fan-out); ``mac_ops`` = MACs on real-valued input;
* element-wise op: ``mults`` = multiplies involving a real value (each one a MAC under the
  strict convention: its accumulate, if any, is included), ``adds`` = additions and
  comparisons that are not the accumulate of one of those multiplies. ``ann_mults`` /
  ``ann_adds`` = what the ANN twin (the same network with real activations and no
  neurons) executes at that place: equal for shared ops (norms, the temporal filter, the
  decay mask, residual adds), different for neuron-only ops (thresholds, threshold scales).
"""

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

import torch

PARTS_ORDER = ("encoder", "decoder", "ctc")


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
    ac_ops: float = 0.0  # accumulates driven by spike events (sum of event fan-outs)
    mac_ops: float = 0.0  # MACs of real-fed calls
    ann_mac_ops: Optional[float] = None  # the ANN twin's share of them where it differs
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
    def spiked_macs(self) -> float:
        """The ANN twin's MACs at the positions the SNN feeds with spikes."""
        return self.macs_valid - (self.mac_ops if self.ann_mac_ops is None else self.ann_mac_ops)

    @property
    def mean_count(self) -> Optional[float]:
        """MAC-weighted mean spike count of the input over spike-fed calls."""
        spiked = self.spiked_macs
        return self.ac_ops / spiked if spiked > 0 else None


@dataclass
class ElementwiseStat:
    """One non-synaptic op (see the module docstring for mults / adds / ann_*)."""

    name: str
    kind: str
    part: str
    mults: float = 0.0
    adds: float = 0.0
    ann_mults: float = 0.0
    ann_adds: float = 0.0


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

    def add(self, counts: torch.Tensor) -> None:
        """Account the integer counts of the valid positions of one call."""
        vals = counts.reshape(-1)
        self.calls += 1
        self.valid += vals.numel()
        self.count_sum += float(vals.double().sum())
        hist = torch.bincount(vals.long().clamp(0, self.levels), minlength=self.levels + 1)
        self.hist = [a + int(b) for a, b in zip(self.hist or [0] * (self.levels + 1),
                                                hist.tolist())]


def spike_bits(levels: int) -> int:
    """Bits of a count in {0..levels}: ceil(log2(levels + 1))."""
    return max(1, math.ceil(math.log2(levels + 1)))


WORD_BITS = 32


class Tally:
    """Per-layer operation records of one measurement, grouped into parts.

    Args:
        root_part: part name of records whose name does not start with one of ``parts``
            (for an encoder measured directly: "encoder").
        parts: top-level names reported as separate parts.
        sram_pj_per_64bit: memory model constant carried to the report (None: default).
    """

    def __init__(
        self,
        root_part: Optional[str] = None,
        parts: Sequence[str] = PARTS_ORDER,
        sram_pj_per_64bit: Optional[float] = None,
    ):
        from espnet_iml.energy.models import SRAM_PJ_PER_64BIT

        self.root_part = root_part
        self.parts = tuple(parts)
        self.sram_pj_per_64bit = (
            SRAM_PJ_PER_64BIT if sram_pj_per_64bit is None else sram_pj_per_64bit
        )
        self.layers: "OrderedDict[str, LayerStat]" = OrderedDict()
        self.elementwise: "OrderedDict[str, ElementwiseStat]" = OrderedDict()
        self.neurons: "OrderedDict[str, NeuronStat]" = OrderedDict()
        # parts whose counts come from an execution of every op (the spike-driven encoder)
        self.executed_parts: List[str] = []
        # parts that are T-step SNNs, with their T (espnet_iml.energy.timesteps)
        self.multistep_parts: Dict[str, int] = {}

    def part(self, name: str) -> str:
        top = name.split(".", 1)[0]
        if top in self.parts:
            return top
        return self.root_part or (top if name else "model")

    def layer(self, name: str, kind: str) -> LayerStat:
        st = self.layers.get(name)
        if st is None:
            st = self.layers[name] = LayerStat(name, kind, self.part(name))
        return st

    def neuron(self, name: str, levels: int) -> NeuronStat:
        st = self.neurons.get(name)
        if st is None:
            st = self.neurons[name] = NeuronStat(name, self.part(name), levels)
        return st

    def elementwise_op(
        self,
        name: str,
        kind: str,
        mults: float = 0.0,
        adds: float = 0.0,
        ann_mults: Optional[float] = None,
        ann_adds: Optional[float] = None,
    ) -> None:
        """Account an element-wise op; ``ann_*`` None: the ANN twin does the same."""
        st = self.elementwise.get(name)
        if st is None:
            st = self.elementwise[name] = ElementwiseStat(name, kind, self.part(name))
        st.mults += mults
        st.adds += adds
        st.ann_mults += mults if ann_mults is None else ann_mults
        st.ann_adds += adds if ann_adds is None else ann_adds

    def real_layer(self, name: str, kind: str, macs: float, out_elems: int) -> None:
        """A synaptic layer call on real-valued input: every op a MAC."""
        st = self.layer(name, kind)
        st.calls += 1
        st.macs += int(macs)
        st.macs_valid += macs
        st.mac_ops += macs
        st.nonzero_macs += macs
        st.act_bits_snn_macs += macs * WORD_BITS
        st.out_elems += out_elems

    def spike_layer(
        self,
        name: str,
        kind: str,
        macs: float,
        macs_valid: float,
        ac_ops: float,
        nonzero_macs: float,
        out_elems: int,
        levels: int,
        sources: Sequence[str] = (),
        r_other: Optional[float] = None,
    ) -> None:
        """A synaptic layer call driven by spike events (``ac_ops`` accumulates)."""
        st = self.layer(name, kind)
        st.calls += 1
        st.spike_calls += 1
        st.macs += int(macs)
        st.macs_valid += macs_valid
        st.ac_ops += ac_ops
        st.nonzero_macs += nonzero_macs
        st.act_bits_snn_macs += macs_valid * spike_bits(levels)
        st.out_elems += out_elems
        st.spike_levels = levels
        if r_other is not None:
            st.r_other_sum += macs_valid * r_other
        for s in sources:
            if s not in st.sources:
                st.sources.append(s)

    def merge(self, other: "Tally", prefix: str = "") -> None:
        """Add ``other``'s records under ``prefix`` (e.g. "encoder."); a part that ``other``
        executed is executed here too."""
        for src, dst in ((other.layers, self.layers), (other.elementwise, self.elementwise),
                         (other.neurons, self.neurons)):
            for st in src.values():
                name = prefix + st.name
                if name in dst:
                    raise ValueError(f"merge: {name} is already counted")
                kw = dict(name=name, part=self.part(name))
                if isinstance(st, LayerStat):
                    kw["sources"] = [prefix + s for s in st.sources]
                if isinstance(st, NeuronStat):
                    kw["hist"] = list(st.hist)
                dst[name] = replace(st, **kw)
                if st.part in other.executed_parts and kw["part"] not in self.executed_parts:
                    self.executed_parts.append(kw["part"])
