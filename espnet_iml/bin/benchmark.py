"""Training cost and inference speed: IML-Spikeformer vs a T-step LIF SNN vs ESPnet encoders.

    python -m espnet_iml.bin.benchmark [--device auto] [--batch 8 --seconds 10]
        [--steps 5 --warmup 2] [--rtf] [--paper_scale] [--json_out results.json]

Training rows (same batch, same CTC head, Adam; one row per process so memory and
allocator state do not leak between rows):

  iml_spikeformer  IMLS neurons, D = --spike_levels, one timestep
  lif_T<T>         the same network, every IMLS neuron a binary multi-step LIF neuron,
                   input repeated over T = --timesteps along the batch, outputs averaged
  conformer        espnet2.asr.encoder.conformer_encoder (macaron, rel-pos, conv module)
  transformer      espnet2.asr.encoder.transformer_encoder

"Matched size" = same width, heads, FFN units and number of blocks (parameter counts are
printed: the Conformer has two FFNs and a conv module per block, so it is larger). A step
is forward + CTC loss + backward + optimizer step on the encoder + CTC head; the time is
the median over --steps after --warmup (and over --rounds interleaved runs); on CPU the
ratios use the process CPU time per step, which other processes on the same cores inflate
far less than the wall time. Memory: CPU = peak resident set size (VmHWM,
reset through /proc/self/clear_refs before the first step) minus the resident size before
it, so it covers gradients, optimizer state and activations; GPU =
torch.cuda.max_memory_allocated minus the allocation before the first step.

--rtf adds inference speed on CPU (--rtf_device): real-time factor of the encoder alone and
of full joint CTC/attention beam search (espnet2.bin.asr_inference.Speech2Text, beam
--beam, CTC weight --ctc_weight) for IML-Spikeformer and the Conformer. Fresh models decode
exactly --decode_tokens_per_second x seconds tokens (min = max length), so both do the same
search work; pass trained models with --iml_model / --conformer_model CONFIG,MODEL (and
real features with --rtf_feats_scp) for end-detected decoding.

Timings on a shared CPU are noisy: compare medians, rerun, prefer a quiet machine.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from espnet_iml.bench.models import DEFAULT_ROWS, ROWS, SMALL, device_of, row_label, sizes
from espnet_iml.bench.report import rtf_table, train_table
from espnet_iml.bench.rtf import rtf_utterances, run_rtf
from espnet_iml.bench.train_step import train_row


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=8, help="utterances per batch")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per utterance")
    ap.add_argument("--feats_scp", type=Path, help="take the batch from real features "
                    "(first --batch utterances of a Kaldi feats.scp) instead of random ones")
    ap.add_argument("--frontend_channels", type=int, default=0,
                    help="IML-Spikeformer's subsampling conv channels (0: model width)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run all rows this many times, interleaved (pools the steps; "
                         "evens out load drift on a shared machine)")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                    help=f"comma-separated subset of {','.join(ROWS)} (iml_real_frontend: "
                         "IML-Spikeformer with the real-valued Conv2d front end)")
    ap.add_argument("--spike_levels", type=int, default=4, help="D of IMLS")
    ap.add_argument("--timesteps", type=int, default=4, help="T of the LIF baseline")
    ap.add_argument("--paper_scale", action="store_true", help="12x256 and 18x512 sizes")
    for key in ("output_size", "heads", "linear_units", "num_blocks", "kernel",
                "conformer_kernel", "vocab", "decoder_blocks"):
        ap.add_argument(f"--{key}", type=int, default=None,
                        help=f"size override (default small: {SMALL[key]})")
    ap.add_argument("--no_train", action="store_true", help="skip the training benchmark")
    ap.add_argument("--rtf", action="store_true", help="also measure inference RTF")
    ap.add_argument("--rtf_device", default="cpu")
    ap.add_argument("--rtf_utts", type=int, default=3)
    ap.add_argument("--rtf_seconds", type=float, default=10.0)
    ap.add_argument("--rtf_repeats", type=int, default=3, help="median over repeats")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--ctc_weight", type=float, default=0.3)
    ap.add_argument("--decode_tokens_per_second", type=float, default=4.0)
    ap.add_argument("--iml_model", help="CONFIG,MODEL of a trained IML-Spikeformer (RTF)")
    ap.add_argument("--conformer_model", help="CONFIG,MODEL of a trained Conformer (RTF)")
    ap.add_argument("--rtf_feats_scp", type=Path, help="real utterances for the RTF")
    ap.add_argument("--no_isolate", action="store_true",
                    help="run training rows in this process (memory numbers then leak)")
    ap.add_argument("--json_out", type=Path, help="write all results as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_size", help=argparse.SUPPRESS)
    ap.add_argument("--_result", help=argparse.SUPPRESS)
    return ap


def run_rows(a, size: dict) -> List[dict]:
    """Every row, --rounds times interleaved (row order repeated), each run in a fresh
    process; a row's steps from all rounds are pooled."""
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    for row in rows:
        if row not in ROWS:
            raise SystemExit(f"--rows: unknown row {row!r}; choose from {', '.join(ROWS)}")
    runs: Dict[str, List[dict]] = {row: [] for row in rows}
    for rnd in range(a.rounds):
        for row in rows:
            print(f"[benchmark] {size['name']}: {row} (round {rnd + 1}/{a.rounds}) ...",
                  file=sys.stderr, flush=True)
            runs[row].append(_run_row(row, size, a))
    results = []
    for row in rows:
        ok = [r for r in runs[row] if "error" not in r]
        if not ok:
            results.append(runs[row][-1])
            continue
        res = dict(ok[-1])
        res["step_s"] = [t for r in ok for t in r["step_s"]]
        res["cpu_s"] = [t for r in ok for t in r["cpu_s"]]
        res["step_s_median"] = statistics.median(res["step_s"])
        res["peak_mem_mb"] = statistics.median(r["peak_mem_mb"] for r in ok)
        res["rounds"] = len(ok)
        results.append(res)
    return results


def _run_row(row: str, size: dict, a) -> dict:
    if a.no_isolate:
        try:
            return train_row(row, size, a)
        except Exception as e:  # noqa: BLE001  (report and go on with the other rows)
            return dict(row=row, label=row_label(row, a), size=size["name"],
                        error=f"{type(e).__name__}: {e}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "espnet_iml.bin.benchmark", *sys_argv_tail(a),
                "--_worker", row, "--_size", json.dumps(size), "--_result", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if proc.returncode < 0 or proc.returncode == 137:
            err = f"killed (signal {-proc.returncode}; out of memory?) {err}"
        return dict(row=row, label=row_label(row, a), size=size["name"], error=err)


def sys_argv_tail(a) -> List[str]:
    """The parent's arguments, minus the ones that only the parent acts on."""
    skip_flags = {"--rtf", "--no_isolate", "--paper_scale"}
    skip_vals = {"--json_out", "--_worker", "--_size", "--_result"}
    out, it = [], iter(a._argv)
    for tok in it:
        key = tok.split("=", 1)[0]
        if key in skip_flags:
            continue
        if key in skip_vals:
            if "=" not in tok:
                next(it, None)
            continue
        out.append(tok)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    run(argv)
    return 0


def run(argv: Optional[List[str]] = None) -> Dict[str, object]:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = get_parser().parse_args(argv)
    a._argv = argv
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    from espnet_iml.bin.launch import quiet_nltk

    quiet_nltk()
    if a._worker:
        import warnings

        warnings.filterwarnings("ignore")
        with contextlib.redirect_stdout(sys.stderr):
            res = train_row(a._worker, json.loads(a._size), a)
        Path(a._result).write_text(json.dumps(res))
        return res
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = device_of(a.device)
    out: Dict[str, object] = dict(device=str(dev), threads=a.threads or torch.get_num_threads(),
                                  batch=a.batch, seconds=a.seconds, sizes={})
    print(f"# Benchmark (device {dev}, {out['threads']} threads)")
    if not a.no_train:
        print(f"training batch: {a.batch} x "
              f"{a.seconds:g} s{' from ' + str(a.feats_scp) if a.feats_scp else ' random fbank'}; "
              f"median of {a.steps} steps after {a.warmup}, {a.rounds} round(s)")
    for size in sizes(a):
        entry = {}
        if not a.no_train:
            res = run_rows(a, size)
            entry["train"] = res
            print(f"\n## Training step, {size['name']} (FFN {size['linear_units']}, "
                  f"{size['heads']} heads, vocab {size['vocab']})\n")
            print(train_table(res))
            how = next((r["memory_measure"] for r in res if "memory_measure" in r), "")
            print(f"\nmemory: {how}")
        if a.rtf:
            with contextlib.redirect_stdout(sys.stderr):
                res = run_rtf(a, size)
            entry["rtf"] = res
            audio = next((r["audio_s"] for r in res if "audio_s" in r), 0.0)
            src = a.rtf_feats_scp or "random features"
            which = ("given trained models" if a.iml_model or a.conformer_model
                     else f"fresh {size['name']}")
            print(f"\n## Inference real-time factor, {which} ({a.rtf_device}; "
                  f"{len(rtf_utterances(a))} utterances, {audio:.1f} s of audio from {src})\n")
            print(rtf_table(res, a))
        out["sizes"][size["name"]] = entry
    if a.json_out:
        a.json_out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(main())
