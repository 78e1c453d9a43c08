#!/usr/bin/env bash
# AiShell-1, characters. IML-Spikeformer by default; the baselines with
#   ./run.sh --model conformer      (or transformer; or --asr_config conf/<any>.yaml)
# Every other option goes to the stage driver ../../TEMPLATE/asr1/asr.sh, e.g.
#   ./run.sh --stage 7 --stop_stage 9 --ngpu 2
# The corpus location is in db.sh (AISHELL=/path ./run.sh also works).
set -euo pipefail
cd "$(dirname "$0")"

. ../../TEMPLATE/asr1/scripts/select_model.sh "$@"  # sets asr_config and args

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
