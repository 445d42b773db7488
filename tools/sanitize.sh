#!/usr/bin/env bash
# Builds aefx and its GoogleTest suite with AddressSanitizer + UndefinedBehaviorSanitizer (GCC,
# build-asan/, -DAEFX_SANITIZE=ON) and runs the suite with ctest. A sanitizer report fails its
# test: the tests run the (instrumented) aefx binary and check its exit code and output.
#   tools/sanitize.sh [--without-opencv] [ctest arguments...]
# --without-opencv builds as the CUDA machine does (-DAEFX_WITH_OPENCV=OFF: no image-folder
# data, no PNG pictures), so one build checks that configuration and the sanitizers (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
opencv=ON
if [ "${1:-}" = "--without-opencv" ]; then opencv=OFF; shift; fi
pkgs=(cmake ninja-build ccache g++ libtorch-dev libopenblas0-pthread libopencv-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libgloo-dev
      libgtest-dev python3-torch python3-pil python3-numpy python3-yaml)
bash tools/ensure_packages.sh "${pkgs[@]}"

# Set before the build too: the build runs aefx_tests to list its tests. Child processes (aefx,
# python3) inherit them; python3 is not instrumented and ignores them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

start=$SECONDS
# -O1, as the sanitizers' documentation advises: a quarter less compile time than Release's -O3.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DAEFX_SANITIZE=ON -DAEFX_WITH_OPENCV=$opencv >/dev/null
cmake --build build-asan --target aefx_core aefx aefx_tests
echo "sanitizer build (OpenCV $opencv): $((SECONDS - start)) s"
start=$SECONDS
status=0
ctest --test-dir build-asan --output-on-failure -j2 "$@" || status=$?
echo "sanitizer test run: $((SECONDS - start)) s"
exit $status
