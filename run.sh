#!/usr/bin/env bash
# The small end-to-end recipe: generated corpus -> features -> IML-Spikeformer -> scores.
#
#   ./run.sh                                   LibriSpeech-style, IML-Spikeformer, small corpus
#   ./run.sh --model conformer                 the Conformer baseline on the same data
#   ./run.sh --recipe aishell --size tiny      AiShell-style (characters), tiny corpus
#   ./run.sh --stage 7 --stop_stage 9 ...      any option of egs2/TEMPLATE/asr1/asr.sh
#   ./run.sh --workdir /big/disk ...           corpora/ data/ dump/ exp/ under that directory
#   ./run.sh --compare [--recipe R] [--seeds "0 1"] ...   K seeds of every model, one table
#                                              (local/compare.sh; see local/compare.sh --help)
#   ./run.sh --help                            recipes, models, sizes and common options
#
# Sets itself up (./setup.sh) when .venv is missing, generates the synthetic corpus into
# corpora/<recipe>_<size> when it is missing (or uses --corpus DIR), and runs the shared stage
# driver egs2/TEMPLATE/asr1/asr.sh with data/, dump/ and exp/ under <recipe>_<size>.
# The results table ends up in exp/<recipe>_<size>/RESULTS.md and is printed at the end
# when this run wrote it. Relative --corpus and --workdir paths are relative to the
# repository root.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

recipe=librispeech      # librispeech | aishell
model=iml_spikeformer   # any <model> with a config (see --help)
size=small              # tiny (seconds per stage; checks the plumbing) | small (learns)
corpus=                 # corpus directory (default: corpora/<recipe>_<size>, generated)
workdir=                # directory for corpora/ data/ dump/ exp/ (default: the repository root)
local_data_opts=        # extra options for local/data.sh (e.g. "--train_sets train-clean-100")
asr_config=             # a training config instead of the model's (default: config_of the model)
recipes="librispeech aishell"
sizes="small tiny"

# The training config of a model at a size, and the models that have one.
config_of() {  # MODEL SIZE RECIPE
    if [ "$2" = tiny ]; then
        echo "egs2/$3/asr1/conf/tuning/train_asr_$1_tiny.yaml"
    else
        echo "conf/train_asr_$1_small.yaml"
    fi
}
models_of() {  # SIZE RECIPE
    local f out=
    for f in $(config_of '*' "$1" "$2"); do
        [ -f "${f}" ] || continue
        f=${f##*/train_asr_}
        out+="${out:+ }${f%_*.yaml}"
    done
    echo "${out}"
}

usage() {
    cat <<EOF
Usage: ./run.sh [--recipe R] [--model M] [--size S] [--corpus DIR] [options of asr.sh]
       ./run.sh --compare [--recipe R] [--size S] [--models "..."] [--seeds "0 1"] [...]

The small end-to-end recipe: a generated corpus -> features -> model -> scores.

  --recipe R   ${recipes// / | } (default ${recipe}): LibriSpeech-style English, BPE,
               scored in WER and CER; or AiShell-style Mandarin, characters, CER
  --model M    default ${model}; models with a config at --size small:
                 $(models_of small "${recipe}")
               at --size tiny: $(models_of tiny "${recipe}")
  --size S     small (default: learns) | tiny (seconds per stage: checks the plumbing,
               the scores mean nothing)
  --corpus DIR a corpus in the released layout instead of the generated corpora/<recipe>_<size>
  --workdir DIR  corpora/ data/ dump/ exp/ under DIR (default: the repository root)
  --compare    the comparison: K seeds (default 2) of IML-Spikeformer, the size-matched
               Conformer and Transformer on the same data, one table and plot
               (local/compare.sh; its options: local/compare.sh --help)
  --asr_config FILE  train with this config instead of the model's (--model then only
               names the run; local/ablate.sh passes its generated ablation configs so)
  --local_data_opts "..."  passed on to the recipe's local/data.sh, e.g.
               "--train_sets 'train-clean-100 train-clean-360'" (LibriSpeech)

Stages (egs2/TEMPLATE/asr1/asr.sh): 1 data prep  2 speed perturbation  3 format audio
  4 fbank  5 token list  6 ESPnet statistics  7 training  8 decoding  9 scoring
  10 results table  11 energy report
LibriSpeech-style runs also train an LSTM LM on the corpus's LM text in stages 6-7 (once;
later runs reuse it) and fuse it in decoding (conf/decode_asr_small_lm.yaml);
--use_lm false decodes without it (conf/decode_asr_small.yaml).
Common options:
  --stage N --stop_stage M   run stages N..M only, e.g. --stage 8 to decode again
  --asr_args "..."           extra training options, e.g. "--max_epoch 5"
  --inference_args "..."     extra decoding options, e.g. "--beam_size 10"
  --train_threads N          torch threads for CPU training (default here: one per core)
  --nj N --inference_nj N    parallel data and decoding jobs (default here: all cores)
  --ngpu N                   GPUs for training (default here: 0)
  --energy false             skip the energy report (stage 11)
  --use_lm false             no LM (LibriSpeech-style; AiShell-style runs have none)
Every other option: egs2/TEMPLATE/asr1/asr.sh --help

Outputs go to data/<recipe>_<size>, dump/<recipe>_<size> and exp/<recipe>_<size> (under
--workdir if given). The results table exp/<recipe>_<size>/RESULTS.md is printed at the end
when this run wrote it.
EOF
}

# bad_value OPTION VALUE VALID...: exit, listing the valid values.
bad_value() {
    local opt=$1 value=$2
    shift 2
    echo "$0: unknown $opt '$value'; valid: $*" >&2
    exit 2
}

if [ "${1-}" = --compare ]; then
    shift
    exec local/compare.sh "$@"
fi

args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --recipe | --model | --size | --corpus | --workdir | --local_data_opts | --asr_config)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"
            shift 2
            ;;
        --recipe=* | --model=* | --size=* | --corpus=* | --workdir=* | --local_data_opts=* | --asr_config=*)
            _name=${1%%=*}
            printf -v "${_name#--}" '%s' "${1#*=}"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) echo "$0: unexpected argument $1 (options start with --; see ./run.sh --help)" >&2; exit 2 ;;
    esac
done
# shellcheck disable=SC2086
case " ${recipes} " in *" ${recipe} "*) ;; *) bad_value --recipe "${recipe}" ${recipes} ;; esac
# shellcheck disable=SC2086
case " ${sizes} " in *" ${size} "*) ;; *) bad_value --size "${size}" ${sizes} ;; esac

if [ "${size}" = tiny ]; then
    # The same tiny configs as the recipe tests.
    inference_config=egs2/${recipe}/asr1/conf/tuning/decode_asr_tiny.yaml
else
    inference_config=conf/decode_asr_small.yaml
fi
if [ -n "${asr_config}" ]; then
    [ -f "${asr_config}" ] || { echo "$0: --asr_config ${asr_config}: no such file" >&2; exit 2; }
else
    asr_config=$(config_of "${model}" "${size}" "${recipe}")
    if [ ! -f "${asr_config}" ]; then
        # shellcheck disable=SC2046
        bad_value --model "${model}" $(models_of "${size}" "${recipe}") "(at --size ${size}; ${asr_config} does not exist)"
    fi
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
    # A small BPE inventory (60 pieces, about 3.8 per word) for the closed vocabulary of 370
    # words. Larger ones trained worse in the same 2,000 updates (docs/benchmark.md): 300
    # pieces, test_clean WER 76.8 % against 65.3 % (earlier corpus); 800 pieces (every word
    # whole), 67.7 % against 58.0 %.
    nbpe=60
    tokens=(--token_type bpe --nbpe "${nbpe}" --bpemode unigram --score_units "word char")
else
    sets=(--train_set train --valid_set dev --test_sets "dev test")
    tokens=(--token_type char)
fi
work=${recipe}_${size}
lm=()
if [ "${recipe}" = librispeech ]; then
    # An LSTM LM on the corpus's LM text (librispeech-lm-norm.txt.gz, prepared by stage 1) and
    # the training transcripts, fused into the beam search, as ESPnet's LibriSpeech recipe
    # does with its own LM (--use_lm false: none).
    if [ "${size}" = tiny ]; then
        lm_config=egs2/librispeech/asr1/conf/tuning/train_lm_tiny.yaml
    else
        lm_config=conf/train_lm_small.yaml
    fi
    lm_text="${work_root}data/${work}/train_960/text ${work_root}data/${work}/local/other_text/text"
    lm=(--use_lm true --lm_config "${lm_config}" --lm_train_text "${lm_text}")
    # The decoding weights were tuned with the LM (CTC 0.7, LM 0.7, length bonus 2.0); --use_lm
    # false (the last one given wins, as in asr.sh) keeps the shared decoding config without an LM.
    use_lm=true
    for ((i = 0; i < ${#args[@]}; i++)); do
        case "${args[i]}" in
            --use_lm) use_lm=${args[i + 1]-} ;;
            --use_lm=*) use_lm=${args[i]#--use_lm=} ;;
        esac
    done
    if [ "${size}" != tiny ] && [ "${use_lm}" != false ]; then
        inference_config=conf/decode_asr_small_lm.yaml
    fi
fi
expdir=${work_root}exp/${work}
nj=$(nproc)

if [ "${size}" = tiny ]; then
    echo "[run.sh] NOTE: --size tiny only checks the plumbing (48 utterances, seconds of training);"
    echo "[run.sh]       its error rates mean nothing. The default --size small is the benchmark."
fi

results_md=${expdir}/RESULTS.md
results_before=$(stat -c %y "${results_md}" 2>/dev/null || echo none)

# One torch thread per core for CPU training: on an idle 2-core machine two threads made a
# step of the small IML-Spikeformer 1.74x faster than one (0.50 vs 0.87 s); on a machine
# shared with other jobs they can be slower than one (then pass --train_threads 1).
egs2/TEMPLATE/asr1/asr.sh \
    --ngpu 0 \
    --train_threads "$(nproc)" \
    --nj "${nj}" \
    --inference_nj "${nj}" \
    --datadir "${work_root}data/${work}" \
    --dumpdir "${work_root}dump/${work}" \
    --expdir "${expdir}" \
    --results_md "${results_md}" \
    --local_data_opts "--recipe ${recipe} --corpus $(printf '%q' "${corpus}") ${local_data_opts}" \
    --feats_type fbank \
    --speed_perturb_factors "0.9 1.0 1.1" \
    "${tokens[@]}" \
    "${sets[@]}" \
    "${lm[@]}" \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    "${args[@]}"

# The results table, when this run wrote it (stage 10 ran), never an older one.
if [ -f "${results_md}" ] && [ "$(stat -c %y "${results_md}")" != "${results_before}" ]; then
    echo
    echo "Results (${results_md}):"
    awk '/^## Results/ { on = 1; next } /^## / { on = 0 } on' "${results_md}"
    if [ "${size}" = tiny ]; then
        echo "(--size tiny: a plumbing check; these error rates mean nothing)"
    fi
fi
