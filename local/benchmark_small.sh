#!/usr/bin/env bash
# IML-Spikeformer against the Conformer baseline on the generated small corpora, each trained
# for the full schedule of conf/train_asr_<model>_small.yaml on this machine's CPU (or GPU
# with --ngpu 1), then both error rates side by side. Not part of the test suite: about
# 15-30 minutes per model and corpus on 2 CPU cores.
#
#   local/benchmark_small.sh [--recipes "librispeech aishell"]
#                            [--models "iml_spikeformer conformer"] [run.sh / asr.sh options]
#
# Runs ./run.sh --recipe R --model M --size small for every pair (finished stages are
# skipped through the driver's own resume: training resumes, data stages are no-ops), then
# prints, per corpus and test set, the error rate of each model, its parameter count and
# its training time (train + validation time of every epoch, from train.log). The full tables stay in exp/<recipe>_small/RESULTS.md.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

recipes="librispeech aishell"
models="iml_spikeformer conformer"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --recipes) recipes=${2:?}; shift 2 ;;
        --models) models=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) echo "$0: unexpected argument $1" >&2; exit 2 ;;
    esac
done

for recipe in ${recipes}; do
    for model in ${models}; do
        echo "==================== benchmark: ${recipe} small, ${model} ===================="
        ./run.sh --recipe "${recipe}" --model "${model}" --size small "${args[@]}"
    done
done

export PATH="${PWD}/.venv/bin:${PATH}"
python - "${recipes}" "${models}" <<'EOF'
import json, re, sys
from pathlib import Path


def seconds(text):
    """ESPnet's humanized durations: "1 minute and 25.4 seconds", "27.5 seconds", ..."""
    unit = {"hour": 3600, "minute": 60, "second": 1}
    return sum(float(n) * unit[u] for n, u in re.findall(r"([0-9.]+) (hour|minute|second)", text))


def training_seconds(log):
    """Train + validation time of every epoch (the last report of each, after resumes)."""
    per_epoch = {}
    for m in re.finditer(r"(\d+)epoch results: (.*)", log):
        times = re.findall(r"(?<![a-z_])time=([^,]+),", m.group(2))
        per_epoch[int(m.group(1))] = sum(seconds(t) for t in times)
    return sum(per_epoch.values())

recipes, models = sys.argv[1].split(), sys.argv[2].split()
print()
print("IML-Spikeformer vs baselines on the generated small corpora (error rate %, lower is better)")
for recipe in recipes:
    base = Path("exp") / f"{recipe}_small"
    rows, info = {}, {}
    for model in models:
        exps = sorted(base.glob(f"asr_train_asr_{model}_small_*"))
        if not exps:
            continue
        exp = exps[-1]
        for f in sorted(exp.glob("decode_asr_small_*/*/score_*/score.json")):
            s = json.loads(f.read_text())
            key = (f.parent.parent.name, f.parent.name.replace("score_", "").upper())
            rows.setdefault(key, {})[model] = s["err"]
        log = (exp / "train.log").read_text(errors="replace") if (exp / "train.log").exists() else ""
        params = re.findall(r"Total Number of model parameters:\s*([0-9.]+\s*[KMG]?)", log)
        epochs = re.findall(r"(\d+)epoch results", log)
        info[model] = (params[-1] if params else "-", epochs[-1] if epochs else "-",
                       training_seconds(log))
    if not rows:
        print(f"\n{recipe}: no scores under {base}")
        continue
    print(f"\n## {recipe} (small)")
    header = f"| {'test set':<12} | metric | " + " | ".join(f"{m:>15}" for m in models) + " |"
    print(header)
    print("|" + "---|" * (2 + len(models)))
    for (dset, metric), errs in sorted(rows.items()):
        cells = " | ".join(f"{errs[m]:15.2f}" if m in errs else f"{'-':>15}" for m in models)
        print(f"| {dset:<12} | {metric:<6} | {cells} |")
    for m, (params, epochs, train_s) in info.items():
        print(f"- {m}: {params} parameters, {epochs} epochs, training {train_s / 60:.1f} min")
EOF
