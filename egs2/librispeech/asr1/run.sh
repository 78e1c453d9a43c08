#!/usr/bin/env bash
# LibriSpeech-960, BPE unigram 5000. IML-Spikeformer by default; the baselines with
#   ./run.sh --model conformer      (or transformer; or --asr_config conf/<any>.yaml)
# Every other option goes to the stage driver ../../TEMPLATE/asr1/asr.sh, e.g.
#   ./run.sh --stage 7 --stop_stage 9 --ngpu 2
# The corpus location is in db.sh (LIBRISPEECH=/path ./run.sh also works).
# No LM by default, as in the reference numbers of README.md. With --use_lm true a Transformer
# LM (conf/train_lm.yaml) is trained on librispeech-lm-norm.txt.gz (openslr.org/11, unpacked
# beside LibriSpeech/ in ${LIBRISPEECH}) and the training text, and fused in decoding with
# conf/decode_asr.yaml's lm_weight, as ESPnet's recipe does.
set -euo pipefail
cd "$(dirname "$0")"

. ../../TEMPLATE/asr1/scripts/select_model.sh "$@"  # sets asr_config and args

../../TEMPLATE/asr1/asr.sh \
    --ngpu 1 \
    --nj 16 \
    --inference_nj 16 \
    --feats_type fbank \
    --token_type bpe \
    --nbpe 5000 \
    --bpemode unigram \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --train_set train_960 \
    --valid_set dev \
    --test_sets "test_clean test_other dev_clean dev_other" \
    --use_lm false \
    --lm_config conf/train_lm.yaml \
    --lm_train_text "data/train_960/text data/local/other_text/text" \
    --asr_config "${asr_config}" \
    --inference_config conf/decode_asr.yaml \
    "${args[@]}"
