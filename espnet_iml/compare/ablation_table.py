"""The ablation table (markdown) and its numbers (JSON) from collected runs.

One row per model, in this order: the full model (IML-Spikeformer), each ablation, the
baselines (the Conformer, the reference of the ratios). Columns:

* switch: the ablation's override of the full model's config (espnet_iml.compare.ablations);
* seeds, and parameters with the difference to the full model (ablations change the size
  by design, e.g. plain_ssa drops the temporal conv branch: not flagged);
* per test set, the primary metric (WER where the recipe scores words, else CER) as
  ``mean ± std`` over seeds (espnet_iml.compare.report: sample standard deviation);
* per test set, the ratio to the full model and to the reference: ``×r (lo–hi)``, r the
  ratio of means, lo–hi the range of per-seed ratios (seed s against seed s);
* the encoder's ANN/SNN energy ratio and mean spike count (mean ± std), from the energy
  stage. The T-step LIF ablation has none: the energy counter (espnet_iml.energy) models
  IMLS neurons only, and local/compare.sh skips the energy stage for ``neuron: lif``.

Below it, the comparison report of espnet_iml.compare.report against the reference (every
metric, every seed), so no number of the runs is left out.
"""

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from espnet_iml.compare.ablations import Ablation
from espnet_iml.compare.collect import Key, Run
from espnet_iml.compare.report import (TINY_WARNING, ModelRow, Spread, Summary, _fmt_params,
                                       markdown, summarize, to_json)


@dataclass
class AblationTable:
    """The runs summarized twice: ratios against the full model and against the reference."""

    vs_full: Summary
    vs_reference: Summary
    ablations: Dict[str, Ablation]
    full: str
    reference: str
    metric: Optional[str]
    keys: List[Key] = field(default_factory=list)  # the primary metric's (test set, metric)
    notes: List[str] = field(default_factory=list)


def primary_metric(keys: Sequence[Key]) -> Optional[str]:
    """WER when the runs are scored in words, else CER (None without scores)."""
    metrics = {m for _, m in keys}
    if "WER" in metrics:
        return "WER"
    return "CER" if "CER" in metrics else (sorted(metrics)[0] if metrics else None)


def ablation_table(runs: Sequence[Run], models: Sequence[str], ablations: Sequence[Ablation],
                   full: str = "iml_spikeformer", reference: str = "conformer") -> AblationTable:
    """Summaries of ``runs`` for ``models`` (the full model, ablations and baselines, in
    table order); ``ablations`` are those among ``models``."""
    vs_full = summarize(runs, models, reference=full, spiking=full)
    vs_ref = summarize(runs, models, reference=reference, spiking=full)
    metric = primary_metric(vs_full.keys)
    keys = [k for k in vs_full.keys if k[1] == metric]
    table = AblationTable(vs_full, vs_ref, {a.name: a for a in ablations}, full, reference,
                          metric, keys)
    for row in vs_full.rows:
        if not row.seeds:
            table.notes.append(f"{row.model}: no finished run (no scores)")
    for w in vs_full.warnings + vs_ref.warnings:
        if w.startswith("no finished run of the reference model") and w not in table.notes:
            table.notes.append(w)
    return table


def _switch(t: AblationTable, model: str) -> str:
    if model in t.ablations:
        return "`" + t.ablations[model].switch() + "`"
    if model == t.full:
        return "(full model)"
    return "(baseline)"


def _params(row: ModelRow) -> str:
    cell = _fmt_params(row.params)
    if row.params_rel is not None:
        cell += f" ({row.params_rel * 100:+.1f} %)"
    return cell


def _ratio(rows: Dict[str, ModelRow], model: str, key: Key, ref: str) -> str:
    row = rows[model]
    if model == ref:
        return "(ref.)" if row.errors[key].n else "-"
    return row.ratios[key].fmt() if key in row.ratios else "-"


def markdown_table(t: AblationTable, title: str, tiny: bool = False) -> str:
    """The ablation table, its legend, then the full comparison report."""
    out = [f"# {title}", ""]
    if tiny:
        out += [f"**{TINY_WARNING}**", ""]
    full_rows = {r.model: r for r in t.vs_full.rows}
    ref_rows = {r.model: r for r in t.vs_reference.rows}
    head = ["model", "switch", "seeds", "params"]
    head += [f"{s} {m} %" for s, m in t.keys]
    head += [f"{s} ×{t.full}" for s, _ in t.keys] + [f"{s} ×{t.reference}" for s, _ in t.keys]
    head += ["encoder energy ANN/SNN", "mean spike count"]
    out += ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in t.vs_full.rows:
        cells = [row.model, _switch(t, row.model), str(len(row.seeds)), _params(row)]
        cells += [row.errors[k].fmt(2) for k in t.keys]
        cells += [_ratio(full_rows, row.model, k, t.full) for k in t.keys]
        cells += [_ratio(ref_rows, row.model, k, t.reference) for k in t.keys]
        cells += [row.energy_ratio.fmt(2), row.spike_count.fmt(3)]
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- NOTE: {n}" for n in t.notes] + ([""] if t.notes else [])
    out += [
        "How to read it:",
        "",
        f"- {t.metric or 'error'} in percent, lower is better, `mean ± std` over the seeds "
        "(sample standard deviation, n - 1; one seed shows its value alone).",
        f"- `×r (lo–hi)`: r = this row's mean / the mean of {t.full} (or {t.reference}); "
        "lo–hi = the range of the per-seed ratios (seed s against seed s). Above 1: more "
        "errors.",
        f"- params: ESPnet's count, in brackets the difference to {t.full}.",
        "- encoder energy ANN/SNN and mean spike count: the energy stage's theoretical "
        "encoder energy ratio under the strict convention (every multiply with a real operand "
        "a MAC, counted from the spike-driven execution; docs/efficiency.md) and mean spike "
        "count of the encoder's neurons. `-` energy for baselines, and for a LIF ablation, "
        "which has no spike-driven form: its energy report (hooks only) gives the generous "
        "ratio. A LIF row's spike count is per neuron and position over its T steps.",
        "- Each ablation changes one option of the full model's config (column switch); "
        "everything else, the data and the training recipe are the same.",
        "",
    ]
    report = markdown(t.vs_reference, f"Every metric, against {t.reference}", tiny=False)
    out.append("#" + report)  # its title one level down
    return "\n".join(out).rstrip("\n") + "\n"


def table_json(t: AblationTable) -> str:
    """The table's numbers, and the comparison report's JSON against the reference."""
    ref_rows = {r.model: r for r in t.vs_reference.rows}
    rows = []
    for row in t.vs_full.rows:
        ab = t.ablations.get(row.model)
        rref = ref_rows[row.model]
        rows.append(dict(
            model=row.model, switch=ab.switch() if ab else None,
            override=ab.override if ab else None, description=ab.description if ab else None,
            seeds=row.seeds, params=row.params, params_rel_full=row.params_rel,
            errors={f"{s} {m}": v.as_dict() for (s, m), v in row.errors.items()},
            ratio_full={f"{s} {m}": v.as_dict() for (s, m), v in row.ratios.items()},
            ratio_reference={f"{s} {m}": v.as_dict() for (s, m), v in rref.ratios.items()},
            energy_ratio=row.energy_ratio.as_dict(), spike_count=row.spike_count.as_dict()))
    return json.dumps(dict(full=t.full, reference=t.reference, metric=t.metric, notes=t.notes,
                           rows=rows, comparison=json.loads(to_json(t.vs_reference))), indent=1)
