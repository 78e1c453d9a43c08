"""Markdown tables of espnet_iml.bench.gpu results (measuring lives there)."""

from typing import List


def train_table(rows: List[dict]) -> str:
    """One line per (size, model, precision); ratios against IML-Spikeformer at the same
    size and precision."""
    lines = ["| size | model | precision | params | step s (median) | peak memory MB | "
             "audio s / s | time / IML | memory / IML |", "|---|---|---|---|---|---|---|---|---|"]
    ref = {(r["size"], r["precision"]): r for r in rows
           if r["row"] == "iml_spikeformer" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['row']} | {r['precision']} | - | failed: "
                         f"{r['error']} | - | - | - | - |")
            continue
        base = ref.get((r["size"], r["precision"]))
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        tr = f"{r['step_s_median'] / base['step_s_median']:.2f}x" if base else "-"
        mr = (f"{r['peak_mem_mb'] / base['peak_mem_mb']:.2f}x"
              if base and r["peak_mem_mb"] and base["peak_mem_mb"] else "-")
        lines.append(f"| {r['size']} | {r['row']} | {r['precision']} | {r['params'] / 1e6:.2f} M "
                     f"| {r['step_s_median']:.4f} | {mem} | {r['audio_s_per_s']:.0f} | {tr} | "
                     f"{mr} |")
    return "\n".join(lines)


def counts_table(result: dict) -> str:
    chk = result.get("neuron_check", {})
    lines = ["| check | positions | counts that differ (bf16 autocast vs fp32) |",
             "|---|---|---|",
             f"| one IMLS neuron, same fp32 input | {chk.get('positions', 0)} | "
             f"{chk.get('same_input_mismatch', float('nan')):.2e} (must be 0) |",
             f"| one IMLS neuron, bf16 input vs its fp32 value | {chk.get('positions', 0)} | "
             f"{chk.get('bf16_input_mismatch', float('nan')):.2e} (must be 0) |"]
    for c in result.get("counts", []):
        lines.append(f"| whole encoder {c['size']} (bf16 matmuls change U) | {c['positions']} | "
                     f"{c['mismatch']:.2e} (worst: {c['worst_neuron']}, "
                     f"{c['worst_mismatch']:.2e}) |")
    return "\n".join(lines)


def report(result: dict) -> str:
    head = (f"# GPU benchmark ({result.get('gpu', result['device'])}; batch {result['batch']} x "
            f"{result['seconds']:g} s; median of {result['steps']} steps after "
            f"{result['warmup']})")
    return "\n\n".join([head, "## Training step", train_table(result["train"]),
                        "## IMLS counts under bf16 autocast", counts_table(result)])
