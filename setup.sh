#!/usr/bin/env bash
# One-time setup (safe to re-run): Debian packages the recipes use, then a virtual
# environment at .venv with espnet_iml installed in editable mode on the verified stack.
set -euo pipefail
cd "$(dirname "$0")"

debs=(sox libsox-fmt-all espeak-ng flac sctk flite festival festvox-kallpc16k festvox-us-slt-hts)
missing=()
for p in "${debs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || { echo "[setup] error: $py not found; espnet 202511 needs Python 3.11 (set PYTHON=...)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $py"
  "$py" -m venv .venv
fi
stamp=.venv/.espnet_iml-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  echo "[setup] installing espnet_iml and its dependencies into .venv (first time: a few minutes, ~5 GB)"
  # (this machine's pip config lists local mirrors that may not exist: hide that noise)
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet .venv/bin/python -m pip install -q --upgrade "pip<25" "setuptools<74" wheel
  quiet .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
# A regular `pip install` ships espnet_iml-autoload.pth (see setup.py); an editable install
# does not, so put it in place here: stock espnet2.bin.* commands then know our encoder too.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cmp -s espnet_iml-autoload.pth "$site/espnet_iml-autoload.pth" || cp espnet_iml-autoload.pth "$site/"
echo "[setup] ready: $(.venv/bin/python -c 'import torch, espnet; print("torch", torch.__version__, "espnet", espnet.__version__)')"
