# shellcheck shell=bash
# Where the LibriSpeech corpus lives: the directory that holds LibriSpeech/.
# Override without editing: LIBRISPEECH=/path/to/corpus ./run.sh
LIBRISPEECH=${LIBRISPEECH:-downloads}
