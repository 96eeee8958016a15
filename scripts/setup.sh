#!/usr/bin/env bash
# Set up cascadekit on a fresh Debian/Ubuntu machine: the Fashion-MNIST data set (Debian package),
# a virtual environment in .venv, PyTorch's CPU wheel first (anything else pulls a CUDA build),
# then the package with every extra and the development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[all,dev]"
echo "cascadekit is set up in .venv ($(.venv/bin/python -c 'import cascadekit; print(cascadekit.__version__)'))"
