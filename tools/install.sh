#!/usr/bin/env bash
# Create .venv and install the requirements. Prefers a CPU build of torch (small, no CUDA download):
# a local wheel when the machine has one, else PyTorch's CPU index, else PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_FOR_VENV:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then
    $PIP install -q "$wheel"
  elif ! $PIP install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
    $PIP install -q torch
  fi
fi
$PIP install -q -r requirements.txt
.venv/bin/python -c "import torch, sklearn, nbclient; print('python env ready: torch', torch.__version__)"
