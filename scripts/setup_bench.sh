#!/usr/bin/env bash
# Tools the serving benchmarks need beyond the Python environment: wrk (a C HTTP load generator).
#   scripts/setup_bench.sh        (Debian/Ubuntu; needs root or sudo)
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
    echo "wrk is installed: $(command -v wrk)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "installing wrk (Debian package) for benchmarks/serve_wrk.py ..."
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wrk
wrk --version 2>&1 | head -1 || true
