"""Learning curves: validation metrics after every epoch against the updates made so far.

Read from ESPnet's ``train.log`` (``<N>epoch results: [train] ... total_count=<updates so far>
... [valid] acc=..., cer_ctc=..., ...``); an epoch reported twice, after a resume, keeps its
last report. The plot shows what a fixed update budget buys each model, which is the quantity
the small recipe is designed around.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

_EPOCH = re.compile(r"(\d+)epoch results: \[train\](.*?)\[valid\](.*)")
_FIELD = re.compile(r"(?<![a-z_])([a-z_]+)=([0-9.eE+-]+)")

# Validation fields worth plotting, with their axis labels (CER: lower is better; accuracy:
# higher is better).
METRICS = {"cer_ctc": "validation CER (CTC)",
           "cer": "validation CER (attention)",
           "acc": "validation accuracy (attention)"}


@dataclass
class Point:
    epoch: int
    updates: int
    valid: Dict[str, float]


def _fields(text: str) -> Dict[str, float]:
    return {k: float(v) for k, v in _FIELD.findall(text)}


def learning_curve(train_log: str) -> List[Point]:
    """One point per epoch, in epoch order, with the cumulative number of updates."""
    by_epoch: Dict[int, Tuple[float, Dict[str, float]]] = {}
    for m in _EPOCH.finditer(train_log):
        train, valid = _fields(m.group(2)), _fields(m.group(3))
        if "total_count" in train:
            by_epoch[int(m.group(1))] = (train["total_count"], valid)
    return [Point(e, int(n), v) for e, (n, v) in sorted(by_epoch.items())]


def curves_of(runs: Sequence[Tuple[str, int, Path]]) -> Dict[Tuple[str, int], List[Point]]:
    """{(model, seed): curve} for experiment directories that have a train.log."""
    out = {}
    for model, seed, exp in runs:
        log = Path(exp) / "train.log"
        if log.is_file():
            out[(model, seed)] = learning_curve(log.read_text(encoding="utf-8", errors="replace"))
    return out


def plot_curves(curves: Dict[Tuple[str, int], List[Point]], path: Path, title: str,
                metrics: Sequence[str] = ("cer_ctc", "acc")) -> Optional[Path]:
    """One panel per metric, one line per (model, seed), x = updates. None if nothing to plot."""
    if not any(curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from espnet_iml.compare.report import model_colors, save_figure

    fig, axes = plt.subplots(1, len(metrics), squeeze=False, figsize=(5.0 * len(metrics), 3.8))
    # Models in the order of the runs, as in the report's rows: the same colour in every plot.
    colors = model_colors(m for m, _ in curves)
    runs = sorted(curves, key=lambda k: (list(colors).index(k[0]), k[1]))
    for ax, metric in zip(axes[0], metrics):
        for model, seed in runs:
            pts = [p for p in curves[(model, seed)] if metric in p.valid]
            if not pts:
                continue
            color = colors[model]
            label = model if ax is axes[0][0] and seed == min(s for m, s in curves if m == model) \
                else None
            ax.plot([p.updates for p in pts], [p.valid[metric] for p in pts], "o-",
                    color=color, alpha=0.85, markersize=3, label=label)
        ax.set_xlabel("updates")
        ax.set_ylabel(METRICS.get(metric, metric))
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize="small")
    return save_figure(fig, path, f"{title}: learning curves (one line per seed)")
