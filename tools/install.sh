#!/usr/bin/env bash
# Create .venv and install the requirements. Prefers a CPU build of torch (small, no CUDA download):
# a local wheel when the machine has one, else PyTorch's CPU index, else PyPI.
# HW_PINNED=1 installs the exact versions of the committed run (constraints.txt) instead of the ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_FOR_VENV:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python 3.10 or newer is needed; '$PY' is $("$PY" --version 2>&1 || echo missing)." >&2
  echo "       Install a newer Python, then run again with PYTHON_FOR_VENV=python3.11 (or its path)." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
CONSTRAINTS=()
[ "${HW_PINNED:-0}" = 1 ] && CONSTRAINTS=(-c constraints.txt)
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then
    $PIP install -q "$wheel"
  elif ! $PIP install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
    $PIP install -q torch ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"}
  fi
fi
$PIP install -q -r requirements.txt ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"}
.venv/bin/python -c "import torch, sklearn, nbclient; print('python env ready: torch', torch.__version__)"
