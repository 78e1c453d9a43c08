#!/usr/bin/env bash
# Data preparation for the root small recipe (stage 1 of egs2/TEMPLATE/asr1/asr.sh):
#   local/data.sh --datadir DIR --recipe librispeech|aishell --corpus CORPUS_DIR [OPTIONS]
# CORPUS_DIR has the released layout (LibriSpeech/... or data_aishell/...), e.g. the output of
# `python -m espnet_iml.bin.make_corpus`. The full recipe's egs2/<recipe>/asr1/local/data.sh
# does the work; every other OPTION goes to it (e.g. --train_sets for LibriSpeech).
set -euo pipefail

datadir=data
recipe=
corpus=
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --datadir | --recipe | --corpus)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"
            shift 2
            ;;
        *) rest+=("$1"); shift ;;
    esac
done
if [ -z "${recipe}" ] || [ -z "${corpus}" ]; then
    echo "$0: --recipe and --corpus are required" >&2
    exit 2
fi

# Run the recipe's own local/data.sh from its directory with the corpus path set, writing
# into our data directory (absolute paths, since it runs elsewhere).
root=$(pwd)
case "${datadir}" in /*) ;; *) datadir=${root}/${datadir} ;; esac
case "${corpus}" in /*) ;; *) corpus=${root}/${corpus} ;; esac
case "${recipe}" in
    aishell) export AISHELL=${corpus} ;;
    librispeech) export LIBRISPEECH=${corpus} ;;
    *) echo "$0: unknown --recipe '${recipe}'; valid: librispeech aishell" >&2; exit 2 ;;
esac
cd "egs2/${recipe}/asr1"
local/data.sh --datadir "${datadir}" "${rest[@]}"
