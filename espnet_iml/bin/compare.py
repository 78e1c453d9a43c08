"""The model comparison of local/compare.sh: size check before training, report after.

Before training, build each model from its config and check that the baselines are within
±10 % of the spiking model's parameters (a warning, not an error)::

    python -m espnet_iml.bin.compare sizes --config iml_spikeformer conf/train_asr_iml_spikeformer_small.yaml \\
        --config conformer conf/train_asr_conformer_small.yaml --token_list data/.../tokens.txt

After training and decoding, one table (markdown), its numbers (JSON) and a plot (PNG)::

    python -m espnet_iml.bin.compare report --run iml_spikeformer 0 exp/.../asr_compare_iml_spikeformer_seed0 \\
        --run conformer 0 exp/.../asr_compare_conformer_seed0 ... --out_dir exp/.../compare

writes compare.md, compare.json, compare.png and curves.png (validation metrics against
updates, per seed) to --out_dir and prints the markdown. The learning curves of any
experiments alone::

    python -m espnet_iml.bin.compare curve --run iml_spikeformer 0 exp/... --out curves.png

The checksum local/compare.sh records for each run's config (its parsed content, so comments
do not count)::

    python -m espnet_iml.bin.compare digest conf/train_asr_iml_spikeformer_small.yaml

Definitions of every number: espnet_iml.compare.collect and espnet_iml.compare.report.
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from espnet_iml.recipe.common import RecipeError, log, run_cli

TOOL = "compare"


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m espnet_iml.bin.{TOOL}",
                                 description="Multi-seed model comparison: size check and report.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--spiking", default="iml_spikeformer",
                        help="the model whose parameter count the others must match")
    common.add_argument("--tolerance", type=float, default=0.10,
                        help="allowed relative parameter difference to --spiking")
    s = sub.add_parser("sizes", parents=[common], help="parameter counts of configs")
    s.add_argument("--config", nargs=2, action="append", required=True,
                   metavar=("MODEL", "YAML"), help="a model name and its training config")
    s.add_argument("--token_list", type=Path, required=True, help="tokens.txt of the recipe")
    s.add_argument("--out_json", type=Path, default=None,
                   help="also write the exact counts, {model: parameters}, for report --sizes")
    r = sub.add_parser("report", parents=[common], help="table and plot of finished runs")
    r.add_argument("--run", nargs=3, action="append", required=True,
                   metavar=("MODEL", "SEED", "EXP_DIR"), help="one trained and decoded run")
    r.add_argument("--out_dir", type=Path, required=True)
    r.add_argument("--reference", default="conformer", help="model the error ratios refer to")
    r.add_argument("--title", default="Model comparison")
    r.add_argument("--decode", default=None,
                   help="decoding directory to report in every run (default: each run's newest "
                        "scored one), e.g. decode_asr_small_asr_model_valid.acc.ave")
    r.add_argument("--sizes", type=Path, default=None,
                   help="exact parameter counts from sizes --out_json, in place of train.log's "
                        "three-digit ones (a run whose train.log disagrees keeps its own)")
    r.add_argument("--tiny", action="store_true",
                   help="say in the report that tiny runs only check the plumbing")
    d = sub.add_parser("digest", help="checksum of a config's parsed content (compare.recipe)")
    d.add_argument("config", type=Path, help="a training config (YAML)")
    c = sub.add_parser("curve", help="learning curves (validation metrics against updates)")
    c.add_argument("--run", nargs=3, action="append", required=True,
                   metavar=("MODEL", "SEED", "EXP_DIR"), help="one training run")
    c.add_argument("--out", type=Path, required=True, help="PNG to write")
    c.add_argument("--title", default="Training")
    return ap


def digest(a: argparse.Namespace) -> int:
    from espnet_iml.compare.provenance import config_digest

    if not a.config.is_file():
        raise RecipeError(f"{a.config}: no such file")
    try:
        print(config_digest(a.config))
    except Exception as e:  # yaml.YAMLError and its relatives
        raise RecipeError(f"{a.config}: not readable as YAML: {e}") from e
    return 0


def curve(a: argparse.Namespace) -> int:
    from espnet_iml.compare.curves import curves_of, plot_curves

    runs = [(m, int(s), Path(e)) for m, s, e in a.run]
    curves = curves_of(runs)
    for (model, seed), points in sorted(curves.items()):
        for p in points:
            vals = ", ".join(f"{k}={v:.3f}" for k, v in p.valid.items() if k in ("acc", "cer_ctc"))
            log(TOOL, f"{model} seed {seed}: epoch {p.epoch}, {p.updates} updates: {vals}")
    if plot_curves(curves, a.out, a.title) is None:
        raise RecipeError("no epoch results in any <exp>/train.log: nothing to plot")
    log(TOOL, f"wrote {a.out}")
    return 0


def sizes(a: argparse.Namespace) -> int:
    from espnet_iml.bin.model_info import build_model, count_parameters
    from espnet_iml.compare.report import size_check

    for model, cfg in a.config:
        if not Path(cfg).is_file():
            raise RecipeError(f"--config {model} {cfg}: no such file")
    if not a.token_list.is_file():
        raise RecipeError(f"--token_list {a.token_list}: no such file (asr.sh stage 5 writes it)")
    params = {}
    for model, cfg in a.config:
        # ESPnet prints import notices on stdout; stdout is this tool's report.
        with contextlib.redirect_stdout(sys.stderr):
            params[model] = float(count_parameters(build_model(Path(cfg), a.token_list))["total"])
    rel, warnings = size_check(params, a.spiking, a.tolerance)
    for model, n in params.items():
        diff = f" ({rel[model] * 100:+.1f} % against {a.spiking})" if model in rel else ""
        log(TOOL, f"{model}: {n / 1e6:.3f} M parameters{diff}")
    for w in warnings:
        log(TOOL, f"WARNING: {w}")
    if a.out_json is not None:
        a.out_json.write_text(json.dumps({m: int(n) for m, n in params.items()}, indent=1) + "\n",
                              encoding="utf-8")
    return 0


def _read_sizes(path: Path) -> Dict[str, float]:
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RecipeError(f"--sizes {path}: not readable as JSON ({e}); write it with "
                          "`compare sizes ... --out_json` or leave --sizes out") from e
    if not isinstance(counts, dict) or not all(isinstance(v, (int, float)) for v in counts.values()):
        raise RecipeError(f"--sizes {path}: expected {{model: parameter count}}")
    return {str(m): float(n) for m, n in counts.items()}


def report(a: argparse.Namespace) -> int:
    from espnet_iml.compare.collect import collect_runs, exact_parameters
    from espnet_iml.compare.report import markdown, plot, summarize, to_json

    runs, models = collect_runs(a.run, a.decode, TOOL)
    if not any(r.errors for r in runs):
        raise RecipeError("no run has scores (<exp>/<decode>/<test set>/score_*/score.json): "
                          "train, decode and score first (asr.sh stages 7-9)")
    size_warnings = exact_parameters(runs, _read_sizes(a.sizes)) if a.sizes else []
    summary = summarize(runs, models, a.reference, a.spiking, a.tolerance)
    summary.warnings += size_warnings
    text = markdown(summary, a.title, tiny=a.tiny)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / "compare.md").write_text(text, encoding="utf-8")
    (a.out_dir / "compare.json").write_text(to_json(summary), encoding="utf-8")
    plot(summary, a.out_dir / "compare.png", a.title)
    from espnet_iml.compare.curves import curves_of, plot_curves

    plot_curves(curves_of([(m, int(s), Path(e)) for m, s, e in a.run]),
                a.out_dir / "curves.png", a.title)
    print(text)
    log(TOOL, f"wrote {a.out_dir}/compare.md, compare.json, compare.png, curves.png")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    a = get_parser().parse_args(argv)
    return run_cli(TOOL, lambda: {"sizes": sizes, "report": report, "curve": curve,
                                "digest": digest}[a.command](a))


if __name__ == "__main__":
    sys.exit(main())
