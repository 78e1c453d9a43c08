#!/usr/bin/env bash
# The small end-to-end recipe: generated corpus -> features -> IML-Spikeformer -> scores.
#
#   ./run.sh                                   LibriSpeech-style, IML-Spikeformer, small corpus
#   ./run.sh --model conformer                 the Conformer baseline on the same data
#   ./run.sh --recipe aishell --size tiny      AiShell-style (characters), tiny corpus
#   ./run.sh --stage 7 --stop_stage 9 ...      any option of egs2/TEMPLATE/asr1/asr.sh
#   ./run.sh --workdir /big/disk ...           corpora/ data/ dump/ exp/ under that directory
#
# Sets itself up (./setup.sh) when .venv is missing, generates the synthetic corpus into
# corpora/<recipe>_<size> when it is missing (or uses --corpus DIR), and runs the shared stage
# driver egs2/TEMPLATE/asr1/asr.sh with data/, dump/ and exp/ under <recipe>_<size>.
# The results table ends up in exp/<recipe>_<size>/RESULTS.md and is printed at the end.
# Relative --corpus and --workdir paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

recipe=librispeech      # librispeech | aishell
model=iml_spikeformer   # iml_spikeformer | conformer | transformer
size=small              # tiny (seconds per stage; checks the plumbing) | small (learns)
corpus=                 # corpus directory (default: corpora/<recipe>_<size>, generated)
workdir=                # directory for corpora/ data/ dump/ exp/ (default: the repository root)
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --recipe | --model | --size | --corpus | --workdir)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"
            shift 2
            ;;
        --recipe=* | --model=* | --size=* | --corpus=* | --workdir=*)
            _name=${1%%=*}
            printf -v "${_name#--}" '%s' "${1#*=}"
            shift
            ;;
        -h | --help)
            sed -n '2,14p' "$0"
            exit 0
            ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) echo "$0: unexpected argument $1" >&2; exit 2 ;;
    esac
done
case "${recipe}" in librispeech | aishell) ;; *) echo "$0: --recipe must be librispeech or aishell" >&2; exit 2 ;; esac
case "${size}" in tiny | small) ;; *) echo "$0: --size must be tiny or small" >&2; exit 2 ;; esac

if [ "${size}" = tiny ]; then
    # The same tiny configs as the recipe tests.
    asr_config=egs2/${recipe}/asr1/conf/tuning/train_asr_${model}_tiny.yaml
    inference_config=egs2/${recipe}/asr1/conf/tuning/decode_asr_tiny.yaml
else
    asr_config=conf/train_asr_${model}_small.yaml
    inference_config=conf/decode_asr_small.yaml
fi
if [ ! -f "${asr_config}" ]; then
    echo "$0: no config for --model ${model} --size ${size} (${asr_config})" >&2
    exit 2
fi

if [ ! -x .venv/bin/python ]; then
    echo "[run.sh] no .venv yet: running ./setup.sh"
    ./setup.sh
fi
export PATH="${PWD}/.venv/bin:${PATH}"
export PYTHONIOENCODING=UTF-8
export LC_ALL=C
work_root=${workdir:+${workdir%/}/}

if [ -z "${corpus}" ]; then
    corpus=${work_root}corpora/${recipe}_${size}
    # make_corpus is a no-op on a complete corpus and finishes an interrupted one.
    if [ ! -f "${corpus}/.done-${recipe}" ]; then
        echo "[run.sh] generating the ${size} ${recipe} corpus in ${corpus}"
        python -m espnet_iml.bin.make_corpus --corpus "${recipe}" --out "${corpus}" --size "${size}" --nj "$(nproc)"
    fi
fi

if [ "${recipe}" = librispeech ]; then
    sets=(--train_set train_960 --valid_set dev --test_sets "test_clean test_other")
    # A small BPE inventory: the corpus has a closed vocabulary of a few hundred words.
    # Scored in words (WER, as LibriSpeech) and characters (CER).
    tokens=(--token_type bpe --nbpe 60 --bpemode unigram --score_units "word char")
else
    sets=(--train_set train --valid_set dev --test_sets "dev test")
    tokens=(--token_type char)
fi
work=${recipe}_${size}
expdir=${work_root}exp/${work}
nj=$(nproc)

if [ "${size}" = tiny ]; then
    echo "[run.sh] NOTE: --size tiny only checks the plumbing (48 utterances, seconds of training);"
    echo "[run.sh]       its error rates mean nothing. The default --size small is the benchmark."
fi

# One torch thread for CPU training by default: on a shared 2-core machine, two threads were
# 2-4x slower per step than one (override with --train_threads 2 on an idle machine).
egs2/TEMPLATE/asr1/asr.sh \
    --ngpu 0 \
    --train_threads 1 \
    --nj "${nj}" \
    --inference_nj "${nj}" \
    --datadir "${work_root}data/${work}" \
    --dumpdir "${work_root}dump/${work}" \
    --expdir "${expdir}" \
    --results_md "${expdir}/RESULTS.md" \
    --local_data_opts "--recipe ${recipe} --corpus ${corpus}" \
    --feats_type fbank \
    --speed_perturb_factors "0.9 1.0 1.1" \
    "${tokens[@]}" \
    "${sets[@]}" \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    "${args[@]}"

# The scored results table (every model trained on this corpus so far).
if [ -f "${expdir}/RESULTS.md" ]; then
    echo
    echo "Results (${expdir}/RESULTS.md):"
    awk '/^## Results/ { on = 1; next } /^## / { on = 0 } on && NF' "${expdir}/RESULTS.md"
    if [ "${size}" = tiny ]; then
        echo "(--size tiny: a plumbing check; these error rates mean nothing)"
    fi
fi
