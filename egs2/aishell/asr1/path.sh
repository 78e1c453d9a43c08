# shellcheck shell=bash
# Environment of the recipe (sourced by asr.sh and local/data.sh): the project's virtual
# environment first in PATH. Works from a symlinked copy of the recipe directory too.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
if [ -x "${MAIN_ROOT}/.venv/bin/python" ]; then
    export PATH="${MAIN_ROOT}/.venv/bin:${PATH}"
fi
export PYTHONIOENCODING=UTF-8
# Byte-order sorting of utterance ids, as Kaldi-style data directories expect. (Python
# switches itself to UTF-8 mode under the C locale, so transcripts still read as UTF-8.)
export LC_ALL=C
