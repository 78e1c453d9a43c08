#!/usr/bin/env bash
# The model comparison: K seeds of each model trained on the same prepared data, all decoded,
# one markdown table and one plot.
#
#   local/compare.sh [--recipe librispeech|aishell] [--size small|tiny]
#                    [--models "iml_spikeformer conformer transformer"] [--seeds "0 1"]
#                    [--workdir DIR] [--min_free_mb N] [--stage N] [--stop_stage N]
#                    [--conf_dir DIR] [--report_dir DIR]
#                    [any other ./run.sh / asr.sh option, e.g. --ngpu 1 --asr_args "..."]
#
# Stages:
#   1  data: the corpus and asr.sh stages 1-6, once (./run.sh --stop_stage 6)
#   2  size check: each model's parameters against IML-Spikeformer's (a warning outside ±10 %)
#   3  training, decoding and scoring of every seed of every model (./run.sh --stage 7 with
#      --asr_tag compare_<model>_seed<N> and --asr_args "--seed N"; the energy stage for the
#      spiking model only). Finished runs (compare.done in the
#      experiment) are skipped, an interrupted training resumes from its checkpoint.pth:
#      re-run the same command. Each run records what it was trained with (compare.recipe:
#      the checksum of the config's parsed content, so comments do not count, and the
#      options); a run recorded with another config or other
#      options stops the comparison before any training, so that one table never mixes
#      recipes silently.
#   4  report: <workdir>/exp/<recipe>_<size>/compare/compare.md (the table), compare.json,
#      compare.png (python -m espnet_iml.bin.compare); with --report_dir DIR in DIR, where
#      the parameter counts of stage 2 (sizes.txt; exact: sizes.json) go too
#
# Models are those with a config: conf/train_asr_<model>_small.yaml, or for --size tiny
# egs2/<recipe>/asr1/conf/tuning/train_asr_<model>_tiny.yaml, and with --conf_dir DIR also
# DIR/train_asr_<model>_<size>.yaml (first; local/ablate.sh puts its ablation configs there).
# Model names, seeds and the free disk space are checked before any work starts. Logs of
# every run: .../compare/logs/.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

recipe=librispeech
size=small
models="iml_spikeformer conformer transformer"
seeds="0 1"
workdir=            # corpora/ data/ dump/ exp/ under this directory (default: repository root)
min_free_mb=        # free disk space needed (default: 2000 for small, 200 for tiny; 0: no check)
stage=1
stop_stage=4
conf_dir=           # more model configs: DIR/train_asr_<model>_<size>.yaml
report_dir=         # stage 2's sizes.txt/.json and stage 4's report (default: .../compare)
spiking=iml_spikeformer   # the model the others are size-matched against
reference=conformer       # the model the error ratios refer to
asr_args=
args=()

die() {  # a bad option or a check before any work: exit status 2
    echo "$0: error: $*" >&2
    exit 2
}
fail() {  # a step that failed: exit status 1
    echo "$0: error: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case "$1" in
        --recipe | --size | --models | --seeds | --workdir | --min_free_mb | --stage | --stop_stage | --asr_args | --conf_dir | --report_dir)
            [ $# -ge 2 ] || die "$1 needs a value"
            printf -v "${1#--}" '%s' "$2"
            shift 2
            ;;
        --recipe=* | --size=* | --models=* | --seeds=* | --workdir=* | --min_free_mb=* | --stage=* | --stop_stage=* | --asr_args=* | --conf_dir=* | --report_dir=*)
            _name=${1%%=*}
            printf -v "${_name#--}" '%s' "${1#*=}"
            shift
            ;;
        --model | --model=*) die "use --models \"m1 m2 ...\" (the comparison trains each of them)" ;;
        --asr_tag | --asr_tag=* | --asr_exp | --asr_exp=*) die "$1 is set by $0 (compare_<model>_seed<N>)" ;;
        -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) die "unexpected argument $1 (see --help)" ;;
    esac
done

# ------------------------------------------------------------------------------------------
# Checks before any work.
case "${recipe}" in librispeech | aishell) ;; *) die "--recipe must be librispeech or aishell (got '${recipe}')" ;; esac
case "${size}" in tiny | small) ;; *) die "--size must be small or tiny (got '${size}')" ;; esac
[[ "${stage}" =~ ^[1-4]$ && "${stop_stage}" =~ ^[1-4]$ ]] || die "--stage and --stop_stage take 1-4"

# The training config of a model: from --conf_dir, else as ./run.sh picks it.
config_of() {
    if [ -n "${conf_dir}" ] && [ -f "${conf_dir%/}/train_asr_$1_${size}.yaml" ]; then
        echo "${conf_dir%/}/train_asr_$1_${size}.yaml"
    elif [ "${size}" = tiny ]; then
        echo "egs2/${recipe}/asr1/conf/tuning/train_asr_$1_tiny.yaml"
    else
        echo "conf/train_asr_$1_${size}.yaml"
    fi
}
[ -z "${conf_dir}" ] || [ -d "${conf_dir}" ] || die "--conf_dir ${conf_dir}: no such directory"
pattern=$(config_of '*')
[ -z "${conf_dir}" ] || pattern="${pattern} ${conf_dir%/}/train_asr_*_${size}.yaml"
valid=$(for f in ${pattern}; do [ -f "${f}" ] && basename "${f}" | sed "s/^train_asr_//; s/_${size}\.yaml\$//"; done | tr '\n' ' ')
[ -n "${models// /}" ] || die "--models is empty; valid models for --size ${size}: ${valid}"
for m in ${models}; do
    if [ ! -f "$(config_of "${m}")" ]; then
        die "unknown model '${m}' in --models: valid models for --size ${size} are: ${valid}(from ${pattern})"
    fi
done
[ -n "${seeds// /}" ] || die "--seeds is empty (e.g. --seeds \"0 1\")"
for s in ${seeds}; do
    [[ "${s}" =~ ^[0-9]+$ ]] || die "--seeds takes non-negative integers (got '${s}')"
done
[ "$(echo "${seeds}" | tr ' ' '\n' | awk 'NF' | sort | uniq -d)" = "" ] || die "--seeds has a seed twice: ${seeds}"

if [ -z "${min_free_mb}" ]; then
    if [ "${size}" = tiny ]; then min_free_mb=200; else min_free_mb=2000; fi
fi
[[ "${min_free_mb}" =~ ^[0-9]+$ ]] || die "--min_free_mb takes a number of megabytes (got '${min_free_mb}')"
_dir=${workdir:-.}
while [ ! -d "${_dir}" ]; do _dir=$(dirname "${_dir}"); done
free_mb=$(df -Pm "${_dir}" | awk 'NR == 2 { print $4 }')
if [ "${free_mb}" -lt "${min_free_mb}" ]; then
    die "only ${free_mb} MB free on the disk of ${workdir:-the repository} ($(readlink -f "${_dir}")); the ${size} comparison needs about ${min_free_mb} MB (corpus, features, checkpoints of every run). Free some space, put the work elsewhere with --workdir DIR, or change the threshold with --min_free_mb N."
fi

tiny_banner() {
    if [ "${size}" = tiny ]; then
        echo "##########################################################################################"
        echo "# --size tiny ONLY CHECKS THE PLUMBING: a few dozen utterances and a few updates.        #"
        echo "# Its error rates (often above 100 %) say NOTHING about the models. Use --size small.     #"
        echo "##########################################################################################"
    fi
}
tiny_banner

work_root=${workdir:+${workdir%/}/}
expdir=${work_root}exp/${recipe}_${size}
cmp_dir=${expdir}/compare
report_dir=${report_dir:-${cmp_dir}}
mkdir -p "${cmp_dir}/logs" "${report_dir}"
if [ ! -x .venv/bin/python ]; then
    echo "[compare] no .venv yet: running ./setup.sh"
    ./setup.sh
fi
export PATH="${PWD}/.venv/bin:${PATH}"
first_model=$(echo "${models}" | awk '{ print $1 }')
echo "[compare] ${recipe} ${size}: models [${models}] x seeds [${seeds}] -> ${cmp_dir}"

# ------------------------------------------------------------------------------------------
# 1. Data: the corpus and stages 1-6, once (the statistics of stage 6 serve every model).
# The marker holds the options the data was prepared with: other options prepare it again.
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    marker=${cmp_dir}/data.done
    want="${args[*]}"
    if [ -f "${marker}" ] && [ "$(cat "${marker}")" = "${want}" ]; then
        echo "[compare] stage 1: data already prepared (${marker}); skipped"
    else
        if [ -f "${marker}" ]; then
            echo "[compare] stage 1: the data was prepared with other options ('$(cat "${marker}")', now '${want}'): preparing it again"
        fi
        echo "[compare] stage 1: corpus and data preparation (./run.sh --stop_stage 6; log: ${cmp_dir}/logs/data.log)"
        rm -f "${marker}"
        if ! ./run.sh --recipe "${recipe}" --size "${size}" --model "${first_model}" \
            --workdir "${workdir}" --stop_stage 6 "${args[@]}" 2>&1 | tee "${cmp_dir}/logs/data.log"; then
            fail "data preparation failed, nothing was trained: see the message above (log: ${cmp_dir}/logs/data.log)"
        fi
        echo "${want}" >"${marker}"
    fi
fi
need_data() {
    [ -f "${cmp_dir}/data.done" ] || die "the data is not prepared (no ${cmp_dir}/data.done): run stage 1 first (--stage 1)"
}

# 2. Size check (a warning): the parameters of every config with the recipe's token list.
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    need_data
    token_list=$(ls -t "${work_root}data/${recipe}_${size}"/token_list/*/tokens.txt 2>/dev/null | head -n 1 || true)
    [ -n "${token_list}" ] || die "no token list under ${work_root}data/${recipe}_${size}/token_list: run stage 1 first"
    # Counted before when sizes.txt is newer than the token list and every config, and names
    # every model.
    sizes_known() {
        local f=${report_dir}/sizes.txt m
        [ -f "${f}" ] && [ -f "${report_dir}/sizes.json" ] && [ "${f}" -nt "${token_list}" ] || return 1
        for m in ${models}; do
            { [ "${f}" -nt "$(config_of "${m}")" ] && grep -q "\] ${m}: " "${f}"; } || return 1
        done
    }
    _cfgs=()
    for m in ${models}; do _cfgs+=(--config "${m}" "$(config_of "${m}")"); done
    if sizes_known; then
        echo "[compare] stage 2: parameter counts (unchanged configs, from ${report_dir}/sizes.txt):"
        cat "${report_dir}/sizes.txt"
    else
        echo "[compare] stage 2: parameter counts (${token_list})"
        python -m espnet_iml.bin.compare sizes "${_cfgs[@]}" --token_list "${token_list}" \
            --spiking "${spiking}" --out_json "${report_dir}/sizes.json" | tee "${report_dir}/sizes.txt.tmp"
        mv "${report_dir}/sizes.txt.tmp" "${report_dir}/sizes.txt"
    fi
fi

# What a run's result depends on besides its seed: the config's content (its parsed YAML,
# so that editing a comment changes nothing) and the options. Lines starting with # are for
# people and are not compared. Runs recorded before 2026-12-05 carry the checksum of the
# file's text ("config sha256"); they are checked that way (recipe_of MODEL text).
recipe_of() {  # MODEL [text]
    local cfg
    cfg=$(config_of "$1")
    echo "# config: ${cfg}"
    if [ "${2-}" = text ]; then
        echo "config sha256: $(sha256sum <"${cfg}" | cut -d' ' -f1)"
    else
        echo "config content sha256: $(python -m espnet_iml.bin.compare digest "${cfg}")"
    fi
    echo "asr_args: ${asr_args}"
    echo "options: ${args[*]}"
}

# 3. Every seed of every model (seeds outside, so that an interrupted comparison already has
# one seed of each model).
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    need_data
    # Before any training: every existing run must have been made with today's recipe.
    _stale=
    for seed in ${seeds}; do
        for m in ${models}; do
            exp=${expdir}/asr_compare_${m}_seed${seed}
            if [ -f "${exp}/compare.recipe" ]; then
                _how=
                grep -q '^config sha256:' "${exp}/compare.recipe" && _how=text
                if ! _diff=$(diff <(grep -v '^#' "${exp}/compare.recipe") <(recipe_of "${m}" ${_how} | grep -v '^#')); then
                    _stale+=$'\n'"  ${exp} (recorded < > now):"$'\n'"$(echo "${_diff}" | grep '^[<>]' | sed 's/^/    /')"
                fi
            elif [ -f "${exp}/compare.done" ]; then
                echo "[compare] stage 3: ${m} seed ${seed}: made before runs recorded their recipe; not checked (${exp})"
            fi
        done
    done
    if [ -n "${_stale}" ]; then
        die "these runs were made with another config or other options than this command's:${_stale}
Nothing was trained. To redo them with the current recipe, move or remove them (e.g. rm -r DIR); to keep them, run with the options they were made with, or put the new runs under another --workdir."
    fi
    for seed in ${seeds}; do
        for m in ${models}; do
            tag=compare_${m}_seed${seed}
            exp=${expdir}/asr_${tag}
            if [ -f "${exp}/compare.done" ]; then
                echo "[compare] stage 3: ${m} seed ${seed}: finished earlier, skipped (${exp})"
                continue
            fi
            _cfg=$(config_of "${m}")
            _opts=()
            # The energy report (asr.sh stage 11) is for the spiking encoder (IMLS or LIF
            # neurons); a baseline's would say ratio 1.
            if ! grep -Eq '^encoder:[[:space:]]*iml_spikeformer' "${_cfg}"; then
                _opts=(--energy false)
            fi
            echo "[compare] stage 3: ${m} seed ${seed}: training and decoding -> ${exp} (log: ${cmp_dir}/logs/${tag}.log)"
            mkdir -p "${exp}"
            recipe_of "${m}" >"${exp}/compare.recipe"
            if ! ./run.sh --recipe "${recipe}" --size "${size}" --model "${m}" --workdir "${workdir}" \
                --asr_config "${_cfg}" --stage 7 --asr_tag "${tag}" --asr_args "--seed ${seed} ${asr_args}" \
                "${args[@]}" "${_opts[@]}" 2>&1 | tee -a "${cmp_dir}/logs/${tag}.log"; then
                fail "${m} seed ${seed} failed (log: ${cmp_dir}/logs/${tag}.log); re-run the same command to continue where it stopped"
            fi
            date '+%Y-%m-%dT%H:%M:%S' >"${exp}/compare.done"
        done
    done
fi

# 4. The table and the plot.
if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    _runs=()
    for m in ${models}; do
        for seed in ${seeds}; do
            _runs+=(--run "${m}" "${seed}" "${expdir}/asr_compare_${m}_seed${seed}")
        done
    done
    _opts=()
    [ "${size}" = tiny ] && _opts=(--tiny)
    # The exact parameter counts of stage 2 (train.log rounds to three digits), unless a
    # config changed since.
    _sizes=${report_dir}/sizes.json
    for m in ${models}; do [ "${_sizes}" -nt "$(config_of "${m}")" ] || _sizes=; done
    [ -n "${_sizes}" ] && _opts+=(--sizes "${_sizes}")
    python -m espnet_iml.bin.compare report "${_runs[@]}" --out_dir "${report_dir}" \
        --reference "${reference}" --spiking "${spiking}" "${_opts[@]}" \
        --title "Model comparison: ${recipe} (${size} corpus), seeds ${seeds}"
    tiny_banner
fi
