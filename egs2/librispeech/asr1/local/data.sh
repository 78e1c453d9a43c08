#!/usr/bin/env bash
# LibriSpeech data preparation (stage 1 of asr.sh):
#   ${LIBRISPEECH}/LibriSpeech/<subset> -> <datadir>/{dev_clean,dev_other,test_clean,test_other}
#   plus <datadir>/train_960 (the training subsets together) and <datadir>/dev (both dev sets)
#   and, when ${LIBRISPEECH}/librispeech-lm-norm.txt.gz is there (openslr.org/11), the LM text
#   <datadir>/local/other_text/text ("<id> <sentence>", as ESPnet's recipe makes it)
# Usage: local/data.sh [--datadir data] [--train_sets "train-clean-100 train-clean-360 train-other-500"]
# The corpus location comes from db.sh (LIBRISPEECH, overridable from the environment).
set -euo pipefail

datadir=data
train_sets="train-clean-100 train-clean-360 train-other-500"
while [ $# -gt 0 ]; do
    case "$1" in
        --datadir) datadir=${2:?--datadir needs a value}; shift 2 ;;
        --datadir=*) datadir=${1#*=}; shift ;;
        --train_sets) train_sets=${2:?--train_sets needs a value}; shift 2 ;;
        --train_sets=*) train_sets=${1#*=}; shift ;;
        -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "$0: unknown option $1 (usage: local/data.sh [--datadir DIR] [--train_sets \"SUBSET ...\"])" >&2; exit 2 ;;
    esac
done

# shellcheck disable=SC1091
. ./db.sh
# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
python=${python:-python3}

root=${LIBRISPEECH}/LibriSpeech
all_subsets="train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other"
if [ ! -d "${root}" ]; then
    cat >&2 <<MSG
ERROR: LibriSpeech was not found at LIBRISPEECH=${LIBRISPEECH} (set in db.sh, or LIBRISPEECH=/path ./run.sh).
Expected layout (as released on https://www.openslr.org/12, each <subset>.tar.gz unpacked in place):
  \${LIBRISPEECH}/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac
  \${LIBRISPEECH}/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
  subsets: ${all_subsets}
Missing: ${root}/
A synthetic stand-in with the same layout (minutes to train on a CPU):
  python -m espnet_iml.bin.make_corpus --corpus librispeech --out <dir> --size small
MSG
    exit 1
fi
present=
missing=
for subset in ${all_subsets}; do
    if [ -d "${root}/${subset}" ]; then present+=" ${subset}"; else missing+=" ${subset}"; fi
done
# The training subsets asked for and at least one dev subset are needed; a missing test
# subset only needs to be left out of asr.sh's --test_sets.
need_missing=
for subset in ${train_sets}; do
    [ -d "${root}/${subset}" ] || need_missing+=" ${subset}"
done
[ -d "${root}/dev-clean" ] || [ -d "${root}/dev-other" ] || need_missing+=" dev-clean or dev-other"
if [ -n "${need_missing}" ]; then
    present_train=$(for s in ${present}; do case "${s}" in train-*) echo "${s}" ;; esac; done | tr '\n' ' ')
    cat >&2 <<MSG
ERROR: LibriSpeech at ${root} is incomplete.
  present:${present:- none}
  missing:${missing}
  needed but missing:${need_missing}
Unpack the missing <subset>.tar.gz from https://www.openslr.org/12 into ${LIBRISPEECH}, or train
on what is there: ./run.sh --local_data_opts "--train_sets '${present_train% }'" (and leave the
missing test sets out of --test_sets).
MSG
    exit 1
fi
if [ -n "${missing}" ]; then
    echo "local/data.sh: LibriSpeech at ${root}: present${present}; missing${missing}"
fi

# shellcheck disable=SC2086
"${python}" -m espnet_iml.recipe.prep_librispeech --corpus "${LIBRISPEECH}" --out "${datadir}" \
    --train_sets ${train_sets}

# The LM text LibriSpeech publishes beside the audio (resource 11), for asr.sh --use_lm true.
lm_text=${LIBRISPEECH}/librispeech-lm-norm.txt.gz
if [ -f "${lm_text}" ]; then
    mkdir -p "${datadir}/local/other_text"
    gzip -dc "${lm_text}" | awk 'NF { printf("librispeech_lm_norm_%08d %s\n", NR, $0) }' \
        >"${datadir}/local/other_text/text.tmp"
    mv "${datadir}/local/other_text/text.tmp" "${datadir}/local/other_text/text"
    echo "local/data.sh: ${datadir}/local/other_text/text: $(wc -l <"${datadir}/local/other_text/text") LM sentences"
else
    echo "local/data.sh: no LM text at ${lm_text} (https://www.openslr.org/resources/11/librispeech-lm-norm.txt.gz); an LM (--use_lm true) would need it"
fi
for x in train_960 dev dev_clean dev_other test_clean test_other; do
    if [ -f "${datadir}/${x}/wav.scp" ]; then
        echo "local/data.sh: ${datadir}/${x}: $(wc -l <"${datadir}/${x}/wav.scp") utterances"
    fi
done
