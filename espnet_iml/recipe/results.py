"""Collect the scores of experiments into one markdown table (RESULTS.md).

    python -m espnet_iml.recipe.results --exp_dirs exp/asr_* --out RESULTS.md [--title ...]

For each experiment directory, every ``<decode dir>/<test set>/score_{cer,wer}/score.json``
(as written by espnet_iml.recipe.score) becomes a row: model, parameters (from ESPnet's
"Total Number of model parameters" line in train.log, when there), decoding directory, test
set, metric, #Snt, #Wrd, Corr, Sub, Del, Ins, Err, S.Err. The environment (date, Python,
ESPnet, torch, torchaudio, git commit) and the configurations used (the training config named
in config.yaml) are listed below the table. Statistics directories (asr_stats_*) and
experiment directories without scores are skipped.
"""

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, run_cli

TOOL = "results"
_PARAMS = re.compile(r"Total Number of model parameters:\s*([0-9.]+\s*[KMGT]?)")
COLUMNS = ["model", "params", "decode", "test set", "metric", "#Snt", "#Wrd",
           "Corr", "Sub", "Del", "Ins", "Err", "S.Err"]


def model_params(exp: Path) -> str:
    log_path = exp / "train.log"
    if log_path.is_file():
        found = _PARAMS.findall(log_path.read_text(encoding="utf-8", errors="replace"))
        if found:
            return found[-1].strip()
    return "-"


def train_config(exp: Path) -> Optional[str]:
    cfg = exp / "config.yaml"
    if not cfg.is_file():
        return None
    for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("config:"):
            value = line.split(":", 1)[1].strip()
            return None if value in ("", "null") else value
    return None


def collect(exp: Path) -> List[Dict[str, object]]:
    rows = []
    for path in sorted(exp.glob("*/*/score_*/score.json")):
        try:
            s = json.loads(path.read_text())
            metric = s.get("metric") or path.parent.name.replace("score_", "")
            rows.append({
                "model": exp.name, "params": None, "decode": path.parents[2].name,
                "test set": path.parents[1].name, "metric": str(metric).upper(),
                "#Snt": s["n_snt"], "#Wrd": s["n_ref"], "Corr": s["corr"], "Sub": s["sub"],
                "Del": s["del"], "Ins": s["ins"], "Err": s["err"], "S.Err": s["s_err"],
            })
        except (ValueError, KeyError) as exc:
            log(TOOL, f"warning: {path} is not a score.json of espnet_iml.recipe.score ({exc}); skipped")
    return rows


def environment() -> List[str]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    lines = [f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
             f"- python: {platform.python_version()} ({platform.system()} {platform.machine()})",
             "- " + ", ".join(f"{p}: {version(p)}" for p in ("espnet", "torch", "torchaudio", "espnet_iml"))]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, cwd=Path(__file__).parent)
        if commit.returncode == 0 and commit.stdout.strip():
            lines.append(f"- espnet_iml git commit: {commit.stdout.strip()}")
    except (OSError, subprocess.SubprocessError):
        pass
    return lines


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def make_markdown(exp_dirs: List[Path], title: str) -> Tuple[str, int]:
    rows: List[Dict[str, object]] = []
    configs: List[str] = []
    for exp in exp_dirs:
        if exp.name.startswith("asr_stats"):
            continue
        found = collect(exp)
        if not found:
            log(TOOL, f"{exp}: no score.json under {exp}/*/*/score_*/; skipped")
            continue
        params = model_params(exp)
        for r in found:
            r["params"] = params
        rows.extend(found)
        cfg = train_config(exp)
        decodes = sorted({str(r["decode"]) for r in found})
        configs.append(f"- {exp.name}: training config {cfg or '(not recorded)'}; decoding: {', '.join(decodes)}")
    if not rows:
        dirs = " ".join(str(d) for d in exp_dirs)
        raise RecipeError(f"no scores found in {dirs} (expected <exp>/<decode>/<test set>/score_{{cer,wer}}/"
                          f"score.json): run {PRODUCERS['score']} first")
    rows.sort(key=lambda r: (str(r["metric"]), str(r["test set"]), str(r["model"]), str(r["decode"])))
    out = [f"# {title}", "", "## Results", "",
           "| " + " | ".join(COLUMNS) + " |",
           "|" + "|".join("---" if c in ("model", "decode", "test set", "metric") else "---:" for c in COLUMNS) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    out += ["", "Corr/Sub/Del/Ins/Err: percent of reference tokens (characters for CER, words for WER); "
            "S.Err: percent of utterances with an error.", "", "## Configurations", ""] + configs
    out += ["", "## Environment", ""] + environment()
    return "\n".join(out) + "\n", len(rows)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m espnet_iml.recipe.{TOOL}",
        description="Markdown table of the scores of ASR experiments.",
    )
    p.add_argument("--exp_dirs", "--exp-dirs", type=Path, nargs="+", required=True,
                   help="experiment directories, e.g. exp/asr_*")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write (e.g. RESULTS.md)")
    p.add_argument("--title", default="ASR results", help="heading of the file")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        missing = [d for d in args.exp_dirs if not d.is_dir()]
        for d in missing:
            log(TOOL, f"warning: {d} is not a directory; skipped")
        existing = [d for d in args.exp_dirs if d.is_dir()]
        if not existing:
            raise RecipeError(f"none of --exp_dirs {' '.join(map(str, args.exp_dirs))} exists: "
                              f"train (asr.sh stage 7), decode (stage 8) and run {PRODUCERS['score']} first")
        text, n = make_markdown(existing, args.title)
        kvfile.atomic_write_text(args.out, text)
        log(TOOL, f"{args.out}: {n} result row(s)")
        return 0

    return run_cli(TOOL, body)


if __name__ == "__main__":
    sys.exit(main())
