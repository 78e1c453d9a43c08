#!/usr/bin/env bash
# AiShell-1 data preparation (stage 1 of asr.sh):
#   ${AISHELL}/data_aishell -> <datadir>/{train,dev,test}  (wav.scp, text, utt2spk, spk2utt)
# Usage: local/data.sh [--datadir data]
# The corpus location comes from db.sh (AISHELL, overridable from the environment).
set -euo pipefail

datadir=data
while [ $# -gt 0 ]; do
    case "$1" in
        --datadir) datadir=${2:?--datadir needs a value}; shift 2 ;;
        --datadir=*) datadir=${1#*=}; shift ;;
        -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "$0: unknown option $1 (usage: local/data.sh [--datadir DIR])" >&2; exit 2 ;;
    esac
done

# shellcheck disable=SC1091
. ./db.sh
# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
python=${python:-python3}

wavdir=${AISHELL}/data_aishell/wav
transcript=${AISHELL}/data_aishell/transcript/aishell_transcript_v0.8.txt
if [ ! -d "${wavdir}" ] || [ ! -f "${transcript}" ]; then
    cat >&2 <<MSG
ERROR: AiShell-1 was not found at AISHELL=${AISHELL} (set in db.sh, or AISHELL=/path ./run.sh).
Expected layout (as released on https://www.openslr.org/33, data_aishell.tgz):
  \${AISHELL}/data_aishell/transcript/aishell_transcript_v0.8.txt   "<utt-id> <words ...>"
  \${AISHELL}/data_aishell/wav/<SPK>.tar.gz                          one archive per speaker,
        or, once extracted:  \${AISHELL}/data_aishell/wav/{train,dev,test}/<SPK>/<utt-id>.wav
  (\${AISHELL}/resource_aishell/ is optional)
Missing here: $([ -d "${wavdir}" ] || echo "${wavdir}/ ")$([ -f "${transcript}" ] || echo "${transcript}")
A synthetic stand-in with the same layout (minutes to train on a CPU):
  python -m espnet_iml.bin.make_corpus --corpus aishell --out <dir> --size small
MSG
    exit 1
fi

# prep_aishell unpacks the per-speaker archives of data_aishell/wav in place (once).
"${python}" -m espnet_iml.recipe.prep_aishell --corpus "${AISHELL}" --out "${datadir}"
for x in train dev test; do
    echo "local/data.sh: ${datadir}/${x}: $(wc -l <"${datadir}/${x}/wav.scp") utterances"
done
