"""The comparison table (markdown), its numbers (JSON) and a plot (PNG) of collected runs.

One row per model, aggregated over seeds:

* every error rate as ``mean ± std``, std the sample standard deviation over seeds (n - 1 in
  the denominator; one seed shows the value alone);
* the ratio to the reference model (the Conformer) as ``×r (lo–hi)``: r is this model's mean
  over the reference's mean, lo–hi the range of the per-seed ratios (seed s of this model
  against seed s of the reference, over the seeds both have; ∞ where the reference's seed
  made no error and this one did). Our choice of spread: with two seeds a standard
  deviation of ratios says little, the range shows both;
* parameters, with the relative difference to the spiking model and a warning when a model
  is outside ``tolerance`` (±10 %) of it, so that the comparison is not size-matched;
* training minutes, decoding RTF, and for the spiking model the encoder's ANN/SNN energy
  ratio and mean spike count, each as mean ± std over seeds.

Definitions of the measured numbers: espnet_iml.compare.collect.
"""

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from espnet_iml.compare.collect import Key, Run

TINY_WARNING = ("--size tiny only checks the plumbing (a few dozen utterances, a few updates): "
                "its error rates mean nothing about the models.")


@dataclass
class Spread:
    """Values of one quantity over seeds."""

    values: List[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation (n - 1); None below two values."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    @property
    def lo(self) -> Optional[float]:
        return min(self.values) if self.values else None

    @property
    def hi(self) -> Optional[float]:
        return max(self.values) if self.values else None

    def as_dict(self) -> dict:
        """For the JSON files."""
        return dict(values=self.values, mean=self.mean, std=self.std, min=self.lo, max=self.hi)

    def fmt(self, digits: int) -> str:
        """"m ± s", "m" for one value, "-" for none."""
        if not self.values:
            return "-"
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass
class Ratio:
    """A model's mean over the reference's mean, and the per-seed ratios."""

    of_means: float
    per_seed: Spread
    # Seeds where the reference made no error and this model did: no finite ratio, and
    # leaving them out would make the range look narrower than it is; shown as "∞".
    unbounded_seeds: List[int] = field(default_factory=list)

    def fmt(self) -> str:
        if not self.per_seed.values and not self.unbounded_seeds:
            return f"×{self.of_means:.2f}"
        lo = "∞" if not self.per_seed.values else f"{self.per_seed.lo:.2f}"
        hi = "∞" if self.unbounded_seeds else f"{self.per_seed.hi:.2f}"
        return f"×{self.of_means:.2f} ({lo}–{hi})"

    def as_dict(self) -> dict:
        """For the JSON files."""
        return dict(of_means=self.of_means, per_seed=self.per_seed.as_dict(),
                    unbounded_seeds=self.unbounded_seeds)


def seed_ratio(mine: float, ref: float) -> float:
    """This seed's error over the reference's seed's: two error-free runs are level (1.0);
    errors against none are infinitely many times as many."""
    if ref:
        return mine / ref
    return 1.0 if not mine else math.inf


@dataclass
class ModelRow:
    model: str
    seeds: List[int]
    params: Optional[float]
    params_rel: Optional[float] = None  # (params - spiking model's) / spiking model's
    errors: Dict[Key, Spread] = field(default_factory=dict)
    ratios: Dict[Key, Ratio] = field(default_factory=dict)
    train_minutes: Spread = field(default_factory=Spread)
    rtf: Spread = field(default_factory=Spread)
    energy_ratio: Spread = field(default_factory=Spread)
    spike_count: Spread = field(default_factory=Spread)


@dataclass
class Summary:
    rows: List[ModelRow]
    keys: List[Key]
    runs: List[Run]
    missing: List[Run]
    reference: str
    spiking: str
    tolerance: float
    warnings: List[str] = field(default_factory=list)


def _spread(values: Sequence[Optional[float]]) -> Spread:
    return Spread([float(v) for v in values if v is not None and math.isfinite(v)])


def summarize(runs: Sequence[Run], models: Sequence[str], reference: str = "conformer",
              spiking: str = "iml_spikeformer", tolerance: float = 0.10) -> Summary:
    """Aggregate runs (with scores) per model, in the order of ``models``."""
    done = [r for r in runs if r.errors]
    keys: List[Key] = []
    for r in done:
        for k in r.errors:
            if k not in keys:
                keys.append(k)
    # Display order (ours): WER before CER, test sets before dev sets, then by name.
    keys.sort(key=lambda k: (k[1] != "WER", k[1], not k[0].startswith("test"), k[0]))
    rows: Dict[str, ModelRow] = {}
    for m in models:
        mine = sorted((r for r in done if r.model == m), key=lambda r: r.seed)
        params = [r.params for r in mine if r.params is not None]
        row = ModelRow(model=m, seeds=[r.seed for r in mine], params=params[-1] if params else None)
        for k in keys:
            row.errors[k] = _spread([r.errors.get(k) for r in mine])
        row.train_minutes = _spread([None if r.train_seconds is None else r.train_seconds / 60
                                     for r in mine])
        row.rtf = _spread([r.rtf for r in mine])
        row.energy_ratio = _spread([r.energy_ratio for r in mine])
        row.spike_count = _spread([r.spike_count for r in mine])
        rows[m] = row
    summary = Summary(rows=list(rows.values()), keys=keys, runs=done,
                      missing=[r for r in runs if not r.errors], reference=reference,
                      spiking=spiking, tolerance=tolerance)
    ref = rows.get(reference)
    if ref is not None and ref.seeds:
        ref_err = {(r.seed, k): v for r in done if r.model == reference for k, v in r.errors.items()}
        for row in rows.values():
            for k in keys:
                mean, ref_mean = row.errors[k].mean, ref.errors[k].mean
                if mean is None or not ref_mean:
                    continue
                paired = [(r.seed, seed_ratio(r.errors[k], ref_err[(r.seed, k)])) for r in done
                          if r.model == row.model and k in r.errors and (r.seed, k) in ref_err]
                row.ratios[k] = Ratio(mean / ref_mean, _spread([v for _, v in paired]),
                                      [seed for seed, v in paired if math.isinf(v)])
    else:
        summary.warnings.append(f"no finished run of the reference model {reference}: no ratios")
    rel, warnings = size_check({m: r.params for m, r in rows.items()}, spiking, tolerance)
    for m, v in rel.items():
        rows[m].params_rel = v
    summary.warnings += warnings
    for row in rows.values():
        if not row.seeds:
            summary.warnings.append(f"{row.model}: no finished run (no scores)")
    return summary


def size_check(params: Dict[str, Optional[float]], spiking: str = "iml_spikeformer",
               tolerance: float = 0.10) -> Tuple[Dict[str, float], List[str]]:
    """Relative parameter difference of every other model to ``spiking`` and a warning for
    each one outside ±``tolerance`` (nothing without the spiking model's count)."""
    rel: Dict[str, float] = {}
    warnings: List[str] = []
    ref = params.get(spiking)
    if not ref:
        return rel, warnings
    for m, n in params.items():
        if m == spiking or n is None:
            continue
        rel[m] = n / ref - 1.0
        if abs(rel[m]) > tolerance:
            warnings.append(
                f"{m} has {_fmt_params(n)} parameters, {rel[m] * 100:+.1f} % against {spiking} "
                f"({_fmt_params(ref)}): outside ±{tolerance * 100:.0f} %, so this comparison "
                "is not size-matched")
    return rel, warnings


def _fmt_params(n: Optional[float]) -> str:
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.1f} K"


def _params_cell(row: ModelRow, tolerance: float) -> str:
    cell = _fmt_params(row.params)
    if row.params_rel is not None:
        cell += f" ({row.params_rel * 100:+.1f} %)"
        if abs(row.params_rel) > tolerance:
            cell += " **not matched**"
    return cell


def _error_cell(row: ModelRow, key: Key, reference: str) -> str:
    cell = row.errors[key].fmt(2)
    if row.model == reference and row.errors[key].n:
        return cell + " (ref.)"
    if key in row.ratios:
        cell += " " + row.ratios[key].fmt()
    return cell


def markdown(s: Summary, title: str, tiny: bool = False) -> str:
    """The comparison table with its legend, warnings and a per-seed table."""
    out = [f"# {title}", ""]
    if tiny:
        out += [f"**{TINY_WARNING}**", ""]
    head = (["model", "seeds", "params"] + [f"{t} {m} %" for t, m in s.keys]
            + ["training min", "decoding RTF", "encoder energy ANN/SNN", "mean spike count"])
    out += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in s.rows:
        cells = [row.model, str(len(row.seeds)), _params_cell(row, s.tolerance)]
        cells += [_error_cell(row, k, s.reference) for k in s.keys]
        cells += [row.train_minutes.fmt(1), row.rtf.fmt(3), row.energy_ratio.fmt(2),
                  row.spike_count.fmt(3)]
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- WARNING: {w}" for w in s.warnings] + ([""] if s.warnings else [])
    if s.missing:
        out += ["- not finished (left out): " + ", ".join(f"{r.model} seed {r.seed}" for r in s.missing), ""]
    out += [
        "How to read it:",
        "",
        "- Error rates in percent: lower is better. WER (words) and CER (characters) can exceed "
        "100, since insertions count as errors.",
        "- `mean ± std` over the seeds (std: sample standard deviation, n - 1); one seed shows "
        "its value alone.",
        f"- `×r (lo–hi)`: r = this model's mean / the mean of {s.reference} (ref.); lo–hi = "
        f"the range of the per-seed ratios (seed s against {s.reference}'s seed s; ∞ where "
        f"{s.reference}'s seed made no error and this one did, 1 where neither did). Below 1: "
        f"fewer errors than {s.reference}.",
        "- params: the exact count of the model built from its config where given (stage 2 of "
        "local/compare.sh), else ESPnet's three-digit count from train.log; in brackets the "
        f"difference to {s.spiking}; "
        f"**not matched** outside ±{s.tolerance * 100:.0f} %.",
        "- training min: train + validation time of all epochs (train.log), without start-up.",
        "- decoding RTF: decoding seconds per second of speech, one CPU thread per decoding "
        "job, batch 1, the decoding config's beam search, model loading left out (from the "
        "timestamps of ESPnet's decoding logs).",
        "- encoder energy ANN/SNN and mean spike count: the spiking model's theoretical "
        "encoder energy ratio under the strict convention (4.6 pJ for every multiply with a "
        "real operand, 0.9 pJ per spike-driven accumulate, counted from the spike-driven "
        "execution; docs/efficiency.md) and the mean spike count of its encoder neurons, "
        "from the energy stage "
        "(espnet_iml.bin.energy) on the first utterances of the first test set.",
        "",
        "## Per seed",
        "",
    ]
    head = (["model", "seed", "params"] + [f"{t} {m} %" for t, m in s.keys]
            + ["epochs", "training min", "decoding RTF", "energy ANN/SNN", "spike count",
               "experiment"])
    out += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    order = {row.model: i for i, row in enumerate(s.rows)}

    def num(v: Optional[float], digits: int) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    for r in sorted(s.runs, key=lambda r: (order.get(r.model, len(order)), r.seed)):
        cells = [r.model, str(r.seed), _fmt_params(r.params)]
        cells += [num(r.errors.get(k), 2) for k in s.keys]
        cells += ["-" if r.epochs is None else str(r.epochs),
                  num(None if r.train_seconds is None else r.train_seconds / 60, 1),
                  num(r.rtf, 3), num(r.energy_ratio, 2), num(r.spike_count, 3),
                  f"{r.exp.name}/{r.decode}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def to_json(s: Summary) -> str:
    """Every aggregated and per-seed number, for scripts."""
    rows = []
    for row in s.rows:
        rows.append(dict(
            model=row.model, seeds=row.seeds, params=row.params, params_rel=row.params_rel,
            errors={f"{t} {m}": v.as_dict() for (t, m), v in row.errors.items()},
            ratios={f"{t} {m}": v.as_dict() for (t, m), v in row.ratios.items()},
            train_minutes=row.train_minutes.as_dict(), rtf=row.rtf.as_dict(),
            energy_ratio=row.energy_ratio.as_dict(), spike_count=row.spike_count.as_dict()))
    runs = [dict(model=r.model, seed=r.seed, exp=str(r.exp), decode=r.decode,
                 errors={f"{t} {m}": v for (t, m), v in r.errors.items()}, params=r.params,
                 train_seconds=r.train_seconds, epochs=r.epochs, rtf=r.rtf,
                 energy_ratio=r.energy_ratio, spike_count=r.spike_count) for r in s.runs]
    return json.dumps(dict(reference=s.reference, spiking=s.spiking, tolerance=s.tolerance,
                           warnings=s.warnings, rows=rows, runs=runs), indent=1)


def model_colors(models: Iterable[str]) -> Dict[str, str]:
    """A colour per model, in order of first appearance (matplotlib's C0, C1, ...), so that a
    model has the same colour in the bars, the energy plot and the learning curves."""
    out: Dict[str, str] = {}
    for m in models:
        out.setdefault(m, f"C{len(out)}")
    return out


def plot(s: Summary, path: Path, title: str) -> Path:
    """Bars of the mean error per test set and model (one panel per metric), error bars of
    ± std, and each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(m for _, m in s.keys))
    rows = [r for r in s.rows if r.seeds]
    colors = model_colors(r.model for r in s.rows)
    fig, axes = plt.subplots(1, max(1, len(metrics)), squeeze=False,
                             figsize=(max(5.0, 2.2 * len(s.keys)), 4.0))
    width = 0.8 / max(1, len(rows))
    for ax, metric in zip(axes[0], metrics):
        sets = [t for t, m in s.keys if m == metric]
        for i, row in enumerate(rows):
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(sets))]
            means = [row.errors[(t, metric)].mean or 0.0 for t in sets]
            stds = [row.errors[(t, metric)].std or 0.0 for t in sets]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=row.model,
                   color=colors[row.model])
            for x, t in zip(xs, sets):
                vals = row.errors[(t, metric)].values
                ax.plot([x] * len(vals), vals, "k.", markersize=4)
        ax.set_xticks(range(len(sets)))
        ax.set_xticklabels(sets)
        ax.set_ylabel(f"{metric} % (lower is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    return save_figure(fig, path, f"{title}\nbars: mean over seeds, whiskers: ± std, dots: seeds")


def energy_points(s: Summary, key: Key) -> List[Tuple[str, float, float, float, float]]:
    """(model, mean energy ratio, its std, mean error on ``key``, its std) of every row that
    has both: the spiking model and its ablations; baselines and LIF rows have no energy."""
    points = []
    for row in s.rows:
        err = row.errors.get(key)
        if row.energy_ratio.values and err is not None and err.values:
            points.append((row.model, row.energy_ratio.mean, row.energy_ratio.std or 0.0,
                           err.mean, err.std or 0.0))
    return points


def plot_energy(s: Summary, key: Key, path: Path, title: str) -> Optional[Path]:
    """The accuracy/energy trade-off: each row's mean error on ``key`` against its mean
    encoder energy ratio, whiskers of ± std over seeds. None (nothing written) without a
    row that has both."""
    points = energy_points(s, key)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = model_colors(r.model for r in s.rows)
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for model, x, xs, y, ys in points:
        ax.errorbar([x], [y], xerr=[xs], yerr=[ys], fmt="o", capsize=3, label=model,
                    color=colors[model])
    ax.set_xlabel("encoder energy ANN/SNN (higher: cheaper)")
    ax.set_ylabel(f"{key[0]} {key[1]} % (lower is better)")
    ax.grid(alpha=0.3)
    # Outside the axes: with a handful of points, any corner inside can hide one of them.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return save_figure(fig, path, f"{title}\nerror against energy: mean over seeds, whiskers: ± std")


def save_figure(fig, path: Path, title: str) -> Path:
    """Title, lay out, write ``path`` (its folder made if needed) and free the figure."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
