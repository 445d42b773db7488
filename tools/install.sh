#!/usr/bin/env bash
# Installs the Debian 12 packages aefx needs (only those missing) and builds it (Release).
#   tools/install.sh [--tests]    with --tests, also builds the GoogleTest suite (and installs
#                                 chromium, in which a test renders a run's report.html, and
#                                 python3-sklearn, which reads `aefx extract`'s files in a test)
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake ninja-build ccache g++ make pkg-config clang-format libtorch-dev libopenblas0-pthread libopencv-dev
      libyaml-cpp-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libgloo-dev libgtest-dev python3-torch python3-pil python3-numpy python3-yaml curl ca-certificates)
tests=OFF; target=aefx
if [ "${1:-}" = "--tests" ]; then tests=ON; target=all; pkgs+=(chromium python3-sklearn); fi
bash tools/ensure_packages.sh "${pkgs[@]}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DAEFX_BUILD_TESTS=$tests >/dev/null
cmake --build build --target $target
