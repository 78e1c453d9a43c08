#!/usr/bin/env bash
# AiShell-1, characters. IML-Spikeformer by default; the baselines with
#   ./run.sh --model conformer      (or transformer; or --asr_config conf/<any>.yaml)
# Every other option goes to the stage driver ../../TEMPLATE/asr1/asr.sh, e.g.
#   ./run.sh --stage 7 --stop_stage 9 --ngpu 2
# The corpus location is in db.sh (AISHELL=/path ./run.sh also works).
set -euo pipefail
cd "$(dirname "$0")"

model=iml_spikeformer   # iml_spikeformer | conformer | transformer -> conf/train_asr_<model>.yaml
asr_config=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=${2:?--model needs a value}; shift 2 ;;
        --model=*) model=${1#*=}; shift ;;
        --asr_config) asr_config=${2:?--asr_config needs a value}; shift 2 ;;
        --asr_config=*) asr_config=${1#*=}; shift ;;
        -h | --help)
            sed -n '2,6p' run.sh
            echo "  --model iml_spikeformer|conformer|transformer   selects conf/train_asr_<model>.yaml"
            echo
            exec ../../TEMPLATE/asr1/asr.sh --help
            ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "${asr_config}" ]; then
    asr_config=conf/train_asr_${model}.yaml
    if [ ! -f "${asr_config}" ]; then
        echo "$0: unknown --model ${model}; available: $(cd conf && ls train_asr_*.yaml | sed 's/^train_asr_//; s/\.yaml$//' | tr '\n' ' ')" >&2
        exit 2
    fi
fi

../../TEMPLATE/asr1/asr.sh \
    --ngpu 1 \
    --nj 16 \
    --inference_nj 16 \
    --feats_type fbank \
    --token_type char \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --train_set train \
    --valid_set dev \
    --test_sets "dev test" \
    --asr_config "${asr_config}" \
    --inference_config conf/decode_asr.yaml \
    "${args[@]}"
