#!/usr/bin/env bash
# Run the default test suite (sets the machine up first if needed) and list the 10 slowest
# tests at the end. Extra arguments go to pytest, e.g. ./test.sh -k imls, or
# ./test.sh tests/test_recipes.py for one file.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 "$@"
