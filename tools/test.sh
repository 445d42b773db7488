#!/usr/bin/env bash
# Installs what is missing, builds aefx with its tests, and runs them (ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh --tests
ctest --test-dir build --output-on-failure -j2 "$@"
