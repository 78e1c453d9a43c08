#!/usr/bin/env bash
# The ablations of IML-Spikeformer through the comparison harness: one table, every row the
# mean and spread over seeds.
#
#   local/ablate.sh [--ablations "d1 d2 d8 no_hdm plain_ssa const_thr real_frontend lif4"]
#                   [--baselines "iml_spikeformer conformer"] [--seeds "0 1"]
#                   [--recipe librispeech|aishell] [--size small|tiny] [--workdir DIR]
#                   [--stage N] [--stop_stage N]
#                   [any other local/compare.sh / ./run.sh option, e.g. --asr_args "..."]
#
# Ablation names (python -m espnet_iml.bin.ablate list): d<N> (spike_levels N), no_hdm,
# plain_ssa (RepSSA without its temporal branch), const_thr, real_frontend, lif<T> (T-step
# binary LIF neurons), rate<t>w<w> / ratecap<t>w<w> (firing-rate-aware training).
# The first baseline is the full model, the second the reference of the error ratios.
#
# Stages:
#   1  configs: the full model's config (conf/train_asr_iml_spikeformer_<size>.yaml, or the
#      recipe's tiny one) with each ablation's switch, checked by building the model, in
#      <workdir>/exp/<recipe>_<size>/ablate/conf/train_asr_<ablation>_<size>.yaml
#   2  local/compare.sh stages 1-3 with --conf_dir that folder: the data (shared with
#      ./run.sh --compare in the same --workdir), parameter counts, then every seed of every
#      baseline and ablation trained, decoded and scored (runs compare_<model>_seed<N>,
#      shared with ./run.sh --compare: finished ones are skipped)
#   3  the table: .../ablate/ablate.md, ablate.json, ablate.png, and ablate_energy.png (error
#      against the encoder energy ratio) when a run has energy numbers
#      (python -m espnet_iml.bin.ablate report)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

ablations="d1 d2 d8 no_hdm plain_ssa const_thr real_frontend lif4"
baselines="iml_spikeformer conformer"
seeds="0 1"
recipe=librispeech
size=small
workdir=
stage=1
stop_stage=3
args=()

die() {
    echo "$0: error: $*" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --ablations | --baselines | --seeds | --recipe | --size | --workdir | --stage | --stop_stage)
            [ $# -ge 2 ] || die "$1 needs a value"
            printf -v "${1#--}" '%s' "$2"
            shift 2
            ;;
        --ablations=* | --baselines=* | --seeds=* | --recipe=* | --size=* | --workdir=* | --stage=* | --stop_stage=*)
            _name=${1%%=*}
            printf -v "${_name#--}" '%s' "${1#*=}"
            shift
            ;;
        --models | --models=* | --conf_dir | --conf_dir=* | --report_dir | --report_dir=*)
            die "${1%%=*} is set by $0 (use --ablations and --baselines)"
            ;;
        -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) die "unexpected argument $1 (see --help)" ;;
    esac
done

case "${recipe}" in librispeech | aishell) ;; *) die "--recipe must be librispeech or aishell (got '${recipe}')" ;; esac
case "${size}" in tiny | small) ;; *) die "--size must be small or tiny (got '${size}')" ;; esac
[[ "${stage}" =~ ^[1-3]$ && "${stop_stage}" =~ ^[1-3]$ ]] || die "--stage and --stop_stage take 1-3"
[ -n "${ablations// /}" ] || die "--ablations is empty (python -m espnet_iml.bin.ablate list)"
[ -n "${baselines// /}" ] || die "--baselines is empty: the first one is the full model"
full=$(echo "${baselines}" | awk '{ print $1 }')
reference=$(echo "${baselines}" | awk '{ print $2 }')
if [ "${size}" = tiny ]; then
    base=egs2/${recipe}/asr1/conf/tuning/train_asr_${full}_tiny.yaml
else
    base=conf/train_asr_${full}_${size}.yaml
fi
[ -f "${base}" ] || die "no config of the full model '${full}' (${base})"
for a in ${ablations}; do
    for b in ${baselines}; do
        [ "${a}" != "${b}" ] || die "'${a}' is both an ablation and a baseline"
    done
done

if [ ! -x .venv/bin/python ]; then
    echo "[ablate] no .venv yet: running ./setup.sh"
    ./setup.sh
fi
export PATH="${PWD}/.venv/bin:${PATH}"
work_root=${workdir:+${workdir%/}/}
expdir=${work_root}exp/${recipe}_${size}
out=${expdir}/ablate
conf_dir=${out}/conf
echo "[ablate] ${recipe} ${size}: ablations [${ablations}], baselines [${baselines}] x seeds [${seeds}] -> ${out}"

# 1. The configs (every name and option checked before any work).
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    # shellcheck disable=SC2086
    python -m espnet_iml.bin.ablate configs --base "${base}" --size "${size}" \
        --out_dir "${conf_dir}" ${ablations} || die "the ablation configs could not be made (above); nothing was trained"
fi

# 2. Data, sizes, and every run, through the comparison harness.
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    for a in ${ablations}; do
        [ -f "${conf_dir}/train_asr_${a}_${size}.yaml" ] || die "no config for '${a}' in ${conf_dir}: run stage 1"
    done
    local/compare.sh --recipe "${recipe}" --size "${size}" --workdir "${workdir}" \
        --models "${baselines} ${ablations}" --seeds "${seeds}" --conf_dir "${conf_dir}" \
        --report_dir "${out}" --stage 1 --stop_stage 3 "${args[@]}"
fi

# 3. The table.
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    _runs=()
    for m in ${baselines} ${ablations}; do
        for seed in ${seeds}; do
            _runs+=(--run "${m}" "${seed}" "${expdir}/asr_compare_${m}_seed${seed}")
        done
    done
    _opts=()
    [ "${size}" = tiny ] && _opts=(--tiny)
    python -m espnet_iml.bin.ablate report "${_runs[@]}" --out_dir "${out}" \
        --full "${full}" --reference "${reference:-${full}}" "${_opts[@]}" \
        --title "Ablations: ${recipe} (${size} corpus), seeds ${seeds}"
fi
