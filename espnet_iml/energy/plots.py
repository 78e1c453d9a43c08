"""Energy report figures (matplotlib, imported only when plotting)."""

from pathlib import Path
from typing import List

from espnet_iml.energy.models import E_AC_PJ, E_MAC_PJ


def plot_report(rep, out_dir, prefix: str = "energy") -> List[Path]:
    """Two PNGs: per-neuron mean spike counts, and the energy breakdown per part (strict,
    generous + element-wise, + memory)."""
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
    fig, axes = plt.subplots(1, 3, figsize=(max(13.0, 6.0 * len(parts) + 2), 4.5))
    _strict_panel(axes[0], rep, parts)
    width = 0.25
    colors = ("tab:red", "tab:green", "tab:orange", "tab:grey")
    labels = ("MAC (synaptic)", "AC (synaptic)", "element-wise", "memory")
    for ax, with_memory in zip(axes[1:], (False, True)):
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
            if with_memory and t["mem_snn_pj"] is None:  # a T-step SNN: no memory model
                ax.text(i, 0.0, "memory not modelled\n(T-step SNN)", ha="center",
                        va="bottom", fontsize=7)
                continue
            for j, (label, vals) in enumerate(stacks.items()):
                _stack(ax, i + (j - 1) * width, width, vals if with_memory else vals[:3],
                       colors, labels if (i == 0 and j == 0) else None, label)
        ax.set_xticks(range(len(parts)))
        ax.set_xticklabels(parts)
        ax.set_ylabel("energy (uJ, summed over the input)")
        ax.set_title("generous + element-wise" if not with_memory else "+ memory (SRAM model)",
                     fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(rep.meta.get("title", "energy breakdown"), fontsize=9)
    fig.tight_layout()
    p = out_dir / f"{prefix}_breakdown.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths


def _stack(ax, x, width, values_pj, colors, legend, name) -> None:
    """One stacked bar at ``x`` (pJ shown in uJ), named on top; ``legend``: the segment
    labels for the legend (only the first bar of a panel passes them)."""
    bottom = 0.0
    for k, v in enumerate(values_pj):
        ax.bar(x, v / 1e6, width * 0.9, bottom=bottom / 1e6, color=colors[k],
               label=legend[k] if legend else None)
        bottom += v
    ax.text(x, bottom / 1e6, name, ha="center", va="bottom", fontsize=7)


def _strict_panel(ax, rep, parts) -> None:
    """SNN and ANN energy of each part under the strict convention (executed ops)."""
    width = 0.3
    colors = ("tab:green", "tab:red", "tab:olive")
    labels = ("event ACs", "real multiplies (MAC)", "other adds")
    for i, part in enumerate(parts):
        t = rep.totals[part]
        if t["ratio_ann_snn_strict"] is None:
            ax.text(i, 0.0, "not executed", ha="center", va="bottom", fontsize=7)
            continue
        stacks = {
            "SNN": [E_AC_PJ * t["ac_ops"], E_MAC_PJ * t["strict_mac_ops"],
                    E_AC_PJ * (t["strict_add_ops"] - t["ac_ops"])],
            "ANN": [0.0, E_MAC_PJ * t["strict_ann_mac_ops"], E_AC_PJ * t["strict_ann_add_ops"]],
        }
        for j, (label, vals) in enumerate(stacks.items()):
            _stack(ax, i + (j - 0.5) * width, width, vals, colors,
                   labels if (i == 0 and j == 0) else None, label)
    ax.set_xticks(range(len(parts)))
    ax.set_xticklabels(parts)
    ax.set_ylabel("energy (uJ, summed over the input)")
    ax.set_title("strict (every real multiply a MAC)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
