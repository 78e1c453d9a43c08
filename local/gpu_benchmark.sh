#!/usr/bin/env bash
# Paper-scale training benchmark on a GPU (issue 13): IML-Spikeformer vs ESPnet Conformer at
# 12x256 and 18x512, fp32 and bf16 autocast: step time, peak memory, throughput, and the
# IMLS count check under autocast. Arguments go to espnet_iml.bin.gpu_benchmark (--help).
# On a machine without CUDA it says so and exits 0; --dry-run runs tiny sizes on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m espnet_iml.bin.gpu_benchmark "$@"
