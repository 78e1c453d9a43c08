"""Markdown tables of the speed benchmarks (measuring lives in train_step.py and rtf.py)."""

import statistics
from typing import List


def train_table(results: List[dict]) -> str:
    """Ratios use the median CPU time per step on CPU (robust to other processes sharing
    the cores) and the median wall time on GPU."""
    ref = next((r for r in results if r["row"] == "iml_spikeformer" and "error" not in r), None)
    on_cpu = bool(ref) and ref["device"] == "cpu"
    key = (lambda r: statistics.median(r["cpu_s"])) if on_cpu else (
        lambda r: r["step_s_median"])
    lines = ["| model | params | wall s/step (median / min) | CPU s/step (median) | "
             f"time / IML ({'CPU' if on_cpu else 'wall'}) | peak memory (MB) | memory / IML |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | - | failed: {r['error']} | - | - | - | - |")
            continue
        tr = f"{key(r) / key(ref):.2f}x" if ref else "-"
        mr = (f"{r['peak_mem_mb'] / ref['peak_mem_mb']:.2f}x"
              if ref and ref["peak_mem_mb"] > 0 else "-")
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} M | {r['step_s_median']:.3f} / "
            f"{min(r['step_s']):.3f} | {statistics.median(r['cpu_s']):.3f} | {tr} | "
            f"{r['peak_mem_mb']:.0f} | {mr} |")
    return "\n".join(lines)



def rtf_table(results: List[dict], a) -> str:
    lines = [f"| model | encoder RTF | joint CTC/attention RTF (beam {a.beam}, ctc "
             f"{a.ctc_weight}) | tokens decoded | weights |", "|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | failed: {r['error']} | - | - | - |")
            continue
        lines.append(f"| {r['label']} | {r['encoder_rtf']:.4f} | {r['decode_rtf']:.4f} | "
                     f"{r['tokens']} | {'trained' if r['trained'] else 'untrained'} |")
    ok = [r for r in results if "error" not in r]
    if len(ok) == 2:
        lines.append("")
        lines.append(f"IML / Conformer: encoder {ok[0]['encoder_rtf'] / ok[1]['encoder_rtf']:.2f}x,"
                     f" full decoding {ok[0]['decode_rtf'] / ok[1]['decode_rtf']:.2f}x")
    inter = next((r["encoder_interleaved"] for r in ok if "encoder_interleaved" in r), None)
    if inter:
        lines += ["", f"Encoders again, interleaved ({a.rtf_repeats} rounds; ratios of process "
                  "CPU time):", "", "| encoder | RTF (wall) | RTF (CPU) | CPU / IML folded |",
                  "|---|---|---|---|"]
        ref = inter["iml_folded"]["rtf_cpu"]
        names = {"iml_folded": "iml_spikeformer, folded eval form",
                 "iml_training_form": "iml_spikeformer, training form in eval (fold_in_eval "
                 "off)", "conformer": "conformer (ESPnet)"}
        for k, v in inter.items():
            lines.append(f"| {names[k]} | {v['rtf_wall']:.4f} | {v['rtf_cpu']:.4f} | "
                         f"{v['rtf_cpu'] / ref:.2f}x |")
    return "\n".join(lines)

