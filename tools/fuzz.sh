#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang (build-fuzz/, -DAEFX_FUZZ=ON) and runs
# each one for SECONDS (default 60), starting from a scratch copy of its committed seed corpus, so
# the fuzzer never writes into the repository. Exits non-zero on any finding and prints where the
# input that triggered it was saved.
#   tools/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
case "$seconds" in '' | *[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac

pkgs=(cmake ninja-build ccache clang libclang-rt-14-dev libtorch-dev libopenblas0-pthread
      libopencv-dev libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev)
bash tools/ensure_packages.sh "${pkgs[@]}"

start=$SECONDS
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DAEFX_FUZZ=ON \
  >/dev/null
cmake --build build-fuzz
echo "fuzz build: $((SECONDS - start)) s"

# ASan's defaults (leak checks on, except for fuzz_image_folder: see below); UBSan stops at the
# first report anyway (-fno-sanitize-recover=all), with a stack trace.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# OpenCV allocates the whole image as soon as a header is read, up to 2^30 pixels: under ASan a
# tiny file claiming 30000 x 30000 then costs ~20 s (shadow memory of a 2.7 GB buffer), and a few
# of them would time out. Over this limit imread throws instead, the path aefx must handle anyway.
export OPENCV_IO_MAX_IMAGE_PIXELS=${OPENCV_IO_MAX_IMAGE_PIXELS:-4194304}
run=build-fuzz/run
rm -rf "$run"
status=0
for target in fuzz_cifar_binary fuzz_idx fuzz_image_folder fuzz_config; do
  bin=build-fuzz/tests/fuzz/$target
  if [ ! -x "$bin" ]; then
    echo "$target: not built (no OpenCV), skipped"
    continue
  fi
  dir=$run/$target
  mkdir -p "$dir/corpus" "$dir/findings"
  cp tests/fuzz/corpus/$target/* "$dir/corpus/"
  args=(-max_total_time="$seconds" -timeout=60 -print_final_stats=1
        -artifact_prefix="$dir/findings/")
  case $target in
    fuzz_config) args+=(-dict=tests/fuzz/config.dict) ;;
    # Every input starts decoder threads, and OpenCV and LibTorch keep per-thread state that is
    # still reachable (no leak), so libFuzzer would run a full LSan heap scan after each input:
    # 180 ms instead of 15 ms an input, and no leak found.
    fuzz_image_folder) args+=(-detect_leaks=0) ;;
  esac
  t0=$SECONDS
  rc=0
  "$bin" "${args[@]}" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log")
  echo "$target: ${runs:-?} inputs, ${rate:-?} exec/s, $((SECONDS - t0)) s, exit $rc"
  if [ $rc -ne 0 ]; then
    status=1
    # The report, without the warnings about the corrupt inputs the decoders were given.
    grep -v -E '^(libpng |Corrupt JPEG|Premature end of JPEG|Invalid SOS|Bogus|imread_|warning: )' \
      "$dir/log" | tail -n 60
    for f in "$dir"/findings/*; do
      [ -e "$f" ] && echo "FINDING ($target): $PWD/$f" &&
        echo "  reproduce: OPENCV_IO_MAX_IMAGE_PIXELS=$OPENCV_IO_MAX_IMAGE_PIXELS $PWD/$bin $PWD/$f"
    done
  fi
done
echo "fuzz build and runs: $((SECONDS - start)) s (logs and corpora in $run)"
exit $status
