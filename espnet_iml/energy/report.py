"""Energy report: per-layer rows, element-wise ops, firing statistics and per-part totals
under every energy model of ``espnet_iml.energy.models``, as JSON and markdown."""

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.energy.models import (
    E_AC_PJ, E_ADD_PJ, E_MAC_PJ, E_MULT_PJ, SOURCE, elementwise_pj, layer_energy, part_totals,
)
from espnet_iml.energy.records import PARTS_ORDER, Tally

# per-layer and per-part memory numbers (None for a T-step SNN)
MEMORY_KEYS = (("mem_snn", "mem_ann", "mem_qann"),
               ("mem_snn_pj", "mem_ann_pj", "mem_qann_pj", "ratio_ann_snn_with_memory",
                "ratio_qann_snn_with_memory"))
RATIO_KEYS = dict(strict="ratio_ann_snn_strict", compute="ratio_ann_snn",
                  elementwise="ratio_ann_snn_with_elementwise",
                  memory="ratio_ann_snn_with_memory", qann="ratio_qann_snn")


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
    def build(cls, tally: Tally, meta: dict) -> "EnergyReport":
        pj64 = tally.sram_pj_per_64bit
        layers = []
        for st in tally.layers.values():
            row = dict(
                name=st.name, kind=st.kind, part=st.part, op_class=st.op_class, calls=st.calls,
                macs=st.macs, macs_valid=st.macs_valid, ac_macs=st.spiked_macs,
                mac_macs=st.mac_ops, ac_ops=st.ac_ops, mean_count=st.mean_count,
                mean_count_other_operand=(
                    st.r_other_sum / st.spiked_macs if st.r_other_sum else None
                ),
                nonzero_fraction=(
                    (st.nonzero_macs - st.mac_ops) / st.spiked_macs
                    if st.spiked_macs > 0 else None
                ),
                spike_sources=list(st.sources),
            )
            row.update(layer_energy(st, pj64))
            layers.append(row)
        elementwise = [
            dict(name=e.name, kind=e.kind, part=e.part, mults=e.mults, adds=e.adds,
                 ann_mults=e.ann_mults, ann_adds=e.ann_adds,
                 energy_pj=elementwise_pj(e.mults, e.adds))
            for e in tally.elementwise.values()
        ]
        neurons = [
            dict(name=n.name, part=n.part, levels=n.levels, calls=n.calls, valid=n.valid,
                 mean_count=n.mean_count, level_histogram=n.hist)
            for n in tally.neurons.values() if n.calls
        ]
        parts = []
        for p in list(PARTS_ORDER) + [r["part"] for r in layers + elementwise]:
            if p not in parts and any(r["part"] == p for r in layers + elementwise):
                parts.append(p)

        def rows(p):
            return ([r for r in layers if r["part"] == p], [e for e in elementwise if e["part"] == p],
                    [n for n in neurons if n["part"] == p])

        totals = {p: part_totals(*rows(p), executed=p in tally.executed_parts) for p in parts}
        totals["model"] = part_totals(
            layers, elementwise, neurons,
            executed=all(t["ratio_ann_snn_strict"] is not None for t in totals.values()),
        )
        # no memory model for a T-step SNN (espnet_iml.energy.timesteps)
        for p in list(tally.multistep_parts) + (["model"] if tally.multistep_parts else []):
            totals[p].update({k: None for k in MEMORY_KEYS[1]})
        for row in layers:
            if row["part"] in tally.multistep_parts:
                row.update({k: None for k in MEMORY_KEYS[0]})
        constants = dict(E_MAC_pJ=E_MAC_PJ, E_AC_pJ=E_AC_PJ, E_MULT_pJ=E_MULT_PJ,
                         E_ADD_pJ=E_ADD_PJ, SRAM_pJ_per_64bit=pj64, source=SOURCE)
        return cls(layers, elementwise, neurons, totals, constants, dict(meta))

    # ----- output
    def to_dict(self) -> dict:
        return dict(meta=self.meta, constants=self.constants, totals=self.totals,
                    layers=self.layers, elementwise=self.elementwise, neurons=self.neurons)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def ratio(self, part: str = "encoder", kind: str = "compute") -> Optional[float]:
        """ANN/SNN energy ratio of a part: kind "strict" (the headline; None where the part
        was not executed), "compute" (generous: synaptic layers only), "elementwise"
        (generous + element-wise ops), "memory" (+ memory), or "qann" (quantized ANN)."""
        return self.totals[part][RATIO_KEYS[kind]]

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
            from espnet_iml.energy.plots import plot_report

            paths += plot_report(self, out, prefix)
        return paths


def fmt_count(x, unit=""):
    """A count with a readable prefix (k, M, G, T)."""
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    a = abs(x)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g} {suffix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def fmt_pj(x):
    """pJ with a readable prefix (nJ, uJ, mJ)."""
    if x is None:
        return "-"
    a = abs(x)
    for div, unit in ((1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if a >= div:
            return f"{x / div:.4g} {unit}"
    return f"{x:.4g} pJ"


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.3f}"


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
        "### Totals (energies summed over the input)",
        "",
        "| part | MACs | AC share of MACs | mean count (AC layers) | **ANN/SNN strict** | "
        "E_SNN strict | E_ANN strict | ANN/SNN generous | E_SNN generous | E_ANN generous | "
        "+ element-wise | + memory | qANN/SNN | + memory qANN/SNN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for part, t in rep.totals.items():
        lines.append(
            f"| {part} | {fmt_count(t['macs_valid'])} | {t['ac_fraction_of_macs']:.3f} | "
            f"{fmt_count(t['mean_count_ac_layers'])} | "
            f"**{fmt_ratio(t['ratio_ann_snn_strict'])}** | {fmt_pj(t['e_snn_strict_pj'])} | "
            f"{fmt_pj(t['e_ann_strict_pj'])} | {t['ratio_ann_snn']:.3f} | "
            f"{fmt_pj(t['e_snn_pj'])} | {fmt_pj(t['e_ann_pj'])} | "
            f"{t['ratio_ann_snn_with_elementwise']:.3f} | "
            f"{fmt_ratio(t['ratio_ann_snn_with_memory'])} | "
            f"{t['ratio_qann_snn']:.3f} | {fmt_ratio(t['ratio_qann_snn_with_memory'])} |"
        )
    lines += [
        "",
        "Strict (headline): every executed multiply involving a real value is a MAC "
        f"({E_MAC_PJ} pJ), every other add or compare {E_AC_PJ} pJ, event-driven accumulates "
        f"{E_AC_PJ} pJ; counted from the spike-driven execution ('-': this part was not "
        "executed). Generous: synaptic layers only, E_SNN = 4.6 pJ x MACs(real input) + "
        "0.9 pJ x accumulates(spike input), E_ANN = 4.6 pJ x MACs. qANN: spike-fed layers at "
        "4.6 pJ x b/32 with b = ceil(log2(D+1)) bits. Memory: SRAM at "
        f"{rep.constants['SRAM_pJ_per_64bit']} pJ per 64 bits. Models: "
        "espnet_iml/energy/models.py.",
        "",
        "### Operation counts (strict)",
        "",
        "| part | executed | SNN event ACs | SNN real multiplies (MAC) | SNN other adds | "
        "ANN MACs | ANN other adds |",
        "|---|---|---|---|---|---|---|",
    ]
    for part, t in rep.totals.items():
        lines.append(
            f"| {part} | {'yes' if t['executed'] else 'no'} | {fmt_count(t['ac_ops'])} | "
            f"{fmt_count(t['strict_mac_ops'])} | "
            f"{fmt_count(None if t['strict_add_ops'] is None else t['strict_add_ops'] - t['ac_ops'])}"
            f" | {fmt_count(t['strict_ann_mac_ops'])} | {fmt_count(t['strict_ann_add_ops'])} |"
        )
    lines.append("")
    if rep.neurons:
        lines += ["### Firing (mean spike count per neuron over valid positions: an IMLS "
                  "neuron's count in 0..D, a T-step LIF neuron's spikes over its T steps)",
                  "", "| neuron | mean count | share at 0..D (0..T) |", "|---|---|---|"]
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
                f"| {r['name']} | {r['kind']} | {r['op_class']} | {fmt_count(r['macs_valid'])} | "
                f"{fmt_count(r['mean_count'])} | {fmt_count(r['nonzero_fraction'])} | "
                f"{fmt_pj(r['e_snn'])} | {fmt_pj(r['e_ann'])} |"
            )
        lines.append("")
    if rep.elementwise:
        kinds: "OrderedDict[Tuple[str, str], List[float]]" = OrderedDict()
        for e in rep.elementwise:
            acc = kinds.setdefault((e["part"], e["kind"]), [0.0] * 4)
            for i, key in enumerate(("mults", "adds", "ann_mults", "ann_adds")):
                acc[i] += e[key]
        lines += ["### Element-wise (non-synaptic) ops: in the strict totals, not in the "
                  "generous ones", "",
                  "| part | op | SNN mults | SNN adds | ANN mults | ANN adds |",
                  "|---|---|---|---|---|---|"]
        for (part, kind), vals in kinds.items():
            lines.append(f"| {part} | {kind} | " + " | ".join(fmt_count(v) for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def summary(rep: EnergyReport) -> dict:
    """Compact per-part headline numbers (for CLIs and docs)."""
    return {p: {k: t[k] for k in ("macs_valid", "mean_count_ac_layers", "mean_count_neurons",
                                  "ratio_ann_snn_strict", "ratio_ann_snn", "ratio_qann_snn",
                                  "ratio_ann_snn_with_elementwise", "ratio_ann_snn_with_memory")}
            for p, t in rep.totals.items()}


def comparison_markdown(reports: Dict[str, EnergyReport], primary: str, notes: List[str]) -> str:
    """The head of energy.md: notes, then the per-part ratios of every front-end setting
    (``primary`` is the model's own)."""
    lines = ["# Theoretical inference energy", ""]
    lines += [f"- {n}" for n in notes]
    lines += [
        "- ANN/SNN strict (headline) = every executed operation priced, every multiply "
        "involving a real value a MAC (4.6 pJ), only event-driven accumulates at 0.9 pJ, "
        "counted from the spike-driven execution of the encoder; generous = the field's "
        "convention (synaptic layers only: E_MAC 4.6 pJ, E_AC 0.9 pJ); see "
        "espnet_iml/energy/models.py for every model",
        "",
        "| setting | part | MACs/utt | mean count (AC layers) | mean count (neurons) | "
        "**ANN/SNN strict** | ANN/SNN generous | + element-wise | + memory | "
        "qANN/SNN (b = ceil(log2(D+1)) bits) | + memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in reports.items():
        n_utt = max(1, r.meta["utterances"])
        for part, t in r.totals.items():
            if part == "model" and len(r.totals) == 2:
                continue
            mc = t["mean_count_ac_layers"]
            mn = t["mean_count_neurons"]
            lines.append(
                f"| {name}{' (own)' if name == primary else ''} | {part} | "
                f"{t['macs_valid'] / n_utt / 1e6:.1f} M | {'-' if mc is None else f'{mc:.3f}'} | "
                f"{'-' if mn is None else f'{mn:.3f}'} | **{fmt_ratio(t['ratio_ann_snn_strict'])}** | "
                f"{t['ratio_ann_snn']:.3f} | "
                f"{t['ratio_ann_snn_with_elementwise']:.3f} | "
                f"{fmt_ratio(t['ratio_ann_snn_with_memory'])} | {t['ratio_qann_snn']:.3f} | "
                f"{fmt_ratio(t['ratio_qann_snn_with_memory'])} |"
            )
    r0 = next(iter(reports.values()))
    lines += ["", f"utterances: {r0.meta['utterances']}, audio: {r0.meta['audio_seconds']} s",
              ""]
    if not math.isfinite(reports[primary].totals.get("encoder", {}).get("ratio_ann_snn", 1.0)):
        lines.append("(no spiking layers)")
    return "\n".join(lines)
