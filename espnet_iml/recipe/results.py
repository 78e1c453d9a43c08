"""Collect the scores of experiments into one compact markdown table (RESULTS.md).

    python -m espnet_iml.recipe.results --exp_dirs exp/asr_* --out RESULTS.md [--title ...]

Every ``<exp>/<decode dir>/<test set>/score_{cer,wer}/score.json`` (written by
espnet_iml.recipe.score) is one system (experiment + decoding) on one test set. The table has
one row per test set and metric and one column per system; the systems are named once, by a
short label, in a legend above the table (experiment directory, parameters from ESPnet's
"Total Number of model parameters" line in train.log, decoding directory, training config).
A cell is ``Err (Sub/Del/Ins)`` in percent. The environment (date, Python, ESPnet, torch,
torchaudio, git commit) follows. Statistics directories (asr_stats_*) and experiments without
scores are skipped.
"""

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_iml.recipe import kvfile
from espnet_iml.recipe.common import PRODUCERS, RecipeError, log, run_cli

TOOL = "results"
_PARAMS = re.compile(r"Total Number of model parameters:\s*([0-9.]+\s*[KMGT]?)")
# The parts of an experiment name that asr.sh adds around the config name.
_EXP_PREFIX = re.compile(r"^asr_(train_asr_)?")
_EXP_SUFFIX = re.compile(r"_fbank_(char|bpe_[a-z]+\d+)(_sp)?$")


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
    """One record per score.json of ``exp``: decode dir, test set, metric and numbers."""
    rows = []
    for path in sorted(exp.glob("*/*/score_*/score.json")):
        try:
            s = json.loads(path.read_text())
            metric = s.get("metric") or path.parent.name.replace("score_", "")
            rows.append({
                "decode": path.parents[2].name, "test set": path.parents[1].name,
                "metric": str(metric).upper(), "#Snt": s["n_snt"], "#Wrd": s["n_ref"],
                "Err": s["err"], "Sub": s["sub"], "Del": s["del"], "Ins": s["ins"],
            })
        except (ValueError, KeyError) as exc:
            log(TOOL, f"warning: {path} is not a score.json of espnet_iml.recipe.score ({exc}); skipped")
    return rows


def short_name(exp_name: str) -> str:
    """``asr_train_asr_conformer_small_fbank_char_sp`` -> ``conformer_small``."""
    return _EXP_SUFFIX.sub("", _EXP_PREFIX.sub("", exp_name)) or exp_name


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


def make_markdown(exp_dirs: List[Path], title: str) -> Tuple[str, int]:
    runs: List[Tuple[Path, str, int]] = []  # (exp, decode dir, number of decodings of exp)
    scores: Dict[Tuple[str, str, int], Dict[str, object]] = {}  # (test set, metric, system)
    for exp in exp_dirs:
        if exp.name.startswith("asr_stats"):
            continue
        found = collect(exp)
        if not found:
            log(TOOL, f"{exp}: no score.json under {exp}/*/*/score_*/; skipped")
            continue
        decodes = sorted({str(r["decode"]) for r in found})
        for decode in decodes:
            runs.append((exp, decode, len(decodes)))
            for r in found:
                if r["decode"] == decode:
                    scores[(str(r["test set"]), str(r["metric"]), len(runs) - 1)] = r
    if not runs:
        dirs = " ".join(str(d) for d in exp_dirs)
        raise RecipeError(f"no scores found in {dirs} (expected <exp>/<decode>/<test set>/score_{{cer,wer}}/"
                          f"score.json): run {PRODUCERS['score']} first")
    # A short label only where it names one experiment: the same config trained with other
    # tokens (bpe60 vs bpe800) shortens to one name, so those columns keep the full directory.
    shorts = Counter(short_name(exp.name) for exp in {exp for exp, _, _ in runs})
    systems = [((short_name(exp.name) if shorts[short_name(exp.name)] == 1 else exp.name)
                + (f" [{decode}]" if n > 1 else ""), exp, decode) for exp, decode, n in runs]
    legend = [f"- **{label}**: {exp}, {model_params(exp)} parameters, training config "
              f"{train_config(exp) or '(not recorded)'}, decoded in {decode}"
              for label, exp, decode in systems]
    rows = sorted({(t, m) for t, m, _ in scores}, key=lambda tm: (tm[1], tm[0]))
    out = [f"# {title}", "", "## Results", "", *legend, "",
           "| test set | metric | #Snt | #Wrd | " + " | ".join(label for label, _, _ in systems) + " |",
           "|---|---|---:|---:|" + "---:|" * len(systems)]
    for test_set, metric in rows:
        cells = [scores.get((test_set, metric, k)) for k in range(len(systems))]
        have = [c for c in cells if c is not None]
        sizes = [" / ".join(dict.fromkeys(str(c[key]) for c in have)) for key in ("#Snt", "#Wrd")]
        out.append(f"| {test_set} | {metric} | {sizes[0]} | {sizes[1]} | " + " | ".join(
            "-" if c is None else f"{c['Err']:.1f} ({c['Sub']:.1f}/{c['Del']:.1f}/{c['Ins']:.1f})"
            for c in cells) + " |")
    out += ["", "Cells: error rate in percent of the reference words (WER) or characters (CER), "
            "then its substitutions/deletions/insertions. Lower is better; insertions can take "
            "it above 100. #Wrd counts the reference words (WER) or characters (CER).",
            "", "## Environment", ""] + environment()
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
