"""Paper-scale training benchmark on a GPU: IML-Spikeformer vs ESPnet Conformer, fp32 and
bf16 autocast (step time, peak memory, throughput), and the IMLS count check.

    local/gpu_benchmark.sh [--sizes 12x256,18x512] [--batch 8 --seconds 10] [--json_out F]
    local/gpu_benchmark.sh --dry-run        # tiny sizes on the CPU: checks the code paths

Without a CUDA device and without --dry-run it prints why it skips and exits 0. It exits 1
if the IMLS neuron's counts under bf16 autocast differ from fp32 for the same input.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    from espnet_iml.bench.gpu import PRECISIONS, ROWS, SIZES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                    help="tiny sizes, batch 2 x 1 s, one step, on the CPU (no GPU needed)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"subset of {','.join(SIZES)}")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--batch", type=int, default=8, help="utterances per batch")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per utterance")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--spike_levels", type=int, default=4)
    ap.add_argument("--frontend_channels", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json_out", type=Path)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    a = get_parser().parse_args(argv)
    import torch

    from espnet_iml.bench.gpu import SIZES, TINY, failed_checks, run
    from espnet_iml.bench.gpu_report import report

    if a.dry_run:
        a.device = "cpu" if a.device == "cuda" else a.device
        a.batch, a.seconds, a.steps, a.warmup = 2, 1.0, 1, 1
        sizes = [dict(TINY)]
    else:
        if a.device.startswith("cuda") and not torch.cuda.is_available():
            print("gpu_benchmark: skipped: no CUDA device (torch.cuda.is_available() is "
                  "False); nothing was measured. Run it on a GPU machine, or pass --dry-run "
                  "for a tiny CPU run of the same code paths.")
            return 0
        unknown = [s for s in a.sizes.split(",") if s not in SIZES]
        if unknown:
            raise SystemExit(f"--sizes: unknown {unknown}; choose from {', '.join(SIZES)}")
        sizes = [dict(SIZES[s]) for s in a.sizes.split(",")]
    a.rows = [r for r in a.rows.split(",") if r]
    a.precisions = [p for p in a.precisions.split(",") if p]
    result = run(a, sizes, log=lambda m: print(m, file=sys.stderr, flush=True))
    result["dry_run"] = a.dry_run
    print(report(result))
    if a.json_out:
        a.json_out.write_text(json.dumps(result, indent=1))
    problem = failed_checks(result)
    if problem:
        print(f"gpu_benchmark: FAILED: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
