#!/usr/bin/env bash
# The GPU checks of one session in one command (docs/cuda.md): the GPU machine starts bare, has
# no network, takes at most 64 MiB with each call and about 15 minutes of device time per
# session, so everything it needs is prepared here first and it runs once.
#
#   tools/device_check.sh prepare [JPEG_ROOT]
#       Here (Debian 12, with Debian's package registry): downloads Debian's yaml-cpp, GoogleTest,
#       Gloo, nlohmann-json and CLI11 packages and unpacks them into .carry/deps, and packs
#       CIFAR-10 (JPEG_ROOT, default ../shared/data/cifar10-jpeg) into .carry/cifar10.pack
#       (tools/device_data.py). .carry/ is git-ignored; the device tool's `carry` takes it along.
#   tools/device_check.sh run OUT_DIR
#       There (device run, carry [".carry"], e.g. `tools/device_check.sh run $OUT`): builds aefx
#       against the machine's pip LibTorch (torch.utils.cmake_prefix_path) without OpenCV, unpacks
#       the data while it builds, then, each step under its own time limit and logged under OUT_DIR:
#         1. run/         the whole configs/cifar10.yaml (every stage, export included), timed
#         2. bench.json   tools/bench_pytorch.py on configs/cifar10.yaml: aefx bench against
#                         PyTorch eager and torch.compile, alternating rounds
#         3. tests.log    the whole test suite, the CUDA tests included
#         4. results/     (step "seeds", not in the default set) configs/cifar10.yaml once per
#                         seed through tools/results.py seeds: the reported GPU figures
#         5. extract/     (step "extract", not in the default set) aefx extract of CIFAR-10's
#                         50,000 train images from memory on the GPU (bf16, batches of 1024)
#                         with a run folder of steps 1 or 4: its meta.json (images/s)
#       and prints a summary table last. A step that fails or runs out of time is reported and
#       the next one still runs. The limits (build 200 s, run 90, bench 200, tests 90) keep the
#       whole command inside the 10 minutes one device command may take; the seeds step (380 s)
#       goes in a second command, `AEFX_CHECK_STEPS=seeds tools/device_check.sh run $OUT`, which
#       reuses the build while the machine is still warm (`AEFX_CHECK_STEPS=seeds,extract` adds
#       the extraction, 60 s more).
# Environment: AEFX_CHECK_STEPS (default run,bench,tests; any of run,bench,tests,seeds,extract),
# AEFX_CHECK_SEEDS (default 0,1,2), AEFX_CHECK_ROUNDS (bench rounds, default 2),
# AEFX_CHECK_PRECISIONS (default bf16; "bf16,fp32" doubles the bench), AEFX_CHECK_JOBS (build
# jobs, default all cores), AEFX_TORCH_PREFIX (LibTorch's CMake prefix, default python3's torch).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
carry=$root/.carry

# Debian 12 packages the GPU machine lacks: headers and CMake files (and yaml-cpp's and
# GoogleTest's libraries), unpacked, never installed.
debs=(libyaml-cpp-dev libyaml-cpp0.7 libgtest-dev libgloo-dev nlohmann-json3-dev libcli11-dev)

prepare() {
  local jpeg=${1:-$root/../shared/data/cifar10-jpeg}
  mkdir -p "$carry/debs" "$carry/deps"
  (cd "$carry/debs" && rm -f ./*.deb && apt-get download "${debs[@]}") || {
    echo "device_check: apt-get download failed (run apt-get update first)" >&2
    exit 1
  }
  for f in "$carry"/debs/*.deb; do dpkg -x "$f" "$carry/deps"; done
  rm -rf "$carry/debs" "$carry/deps/usr/share/doc" "$carry/deps/usr/src"
  /usr/bin/python3 tools/device_data.py pack "$jpeg" "$carry/cifar10.pack" || exit 1
  grep -qx '/.carry/' .gitignore || echo "device_check: .carry/ should be in .gitignore" >&2
  echo "device_check: $(du -sh "$carry" | cut -f1) in .carry (the call carries at most 64 MiB in all)"
}

# step NAME SECONDS COMMAND...: runs one step under a time limit, its output in OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $name (at most ${limit} s)"
  timeout --signal=TERM --kill-after=20 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local took=$((SECONDS - t0))
  echo "$name: exit $rc in ${took} s" | tee -a "$out/summary.txt"
  tail -n 5 "$out/$name.log"
  return $rc
}

run_checks() {
  out=$1
  mkdir -p "$out"
  : >"$out/summary.txt"
  local jobs=${AEFX_CHECK_JOBS:-$(nproc)}
  local rounds=${AEFX_CHECK_ROUNDS:-2}
  local precisions=${AEFX_CHECK_PRECISIONS:-bf16}
  local steps=${AEFX_CHECK_STEPS:-run,bench,tests}
  local seeds=${AEFX_CHECK_SEEDS:-0,1,2}
  wanted() { [[ ",$steps," == *",$1,"* ]]; }
  local prefix=${AEFX_TORCH_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}
  [ -d "$carry/deps/usr" ] || {
    echo "device_check: $carry/deps is missing: run 'tools/device_check.sh prepare' here and carry .carry" >&2
    exit 1
  }
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
    nproc
  } >"$out/machine.txt" 2>&1
  cat "$out/machine.txt"

  local data=/tmp/aefx-data
  (python3 tools/device_data.py unpack "$carry/cifar10.pack" "$data" >"$out/data.log" 2>&1) &
  local unpacking=$!

  local deps=$carry/deps/usr
  local lib=$deps/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  step build 200 bash -c "cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DAEFX_WITH_OPENCV=OFF -DCMAKE_PREFIX_PATH='$prefix;$deps;$lib/cmake' \
      -DAEFX_GLOO_INCLUDE_DIR='$deps/include' -DCMAKE_CXX_FLAGS='-isystem $deps/include' && \
      cmake --build build-device -j $jobs" || {
    echo "device_check: the build failed; see $out/build.log"
    exit 1
  }
  wait "$unpacking" || {
    echo "device_check: unpacking the data failed; see $out/data.log"
    exit 1
  }
  local bin=$root/build-device/aefx
  local sets=(--set "data.root=$data")

  # 1. The whole default run, every stage.
  if wanted run; then
    step run 90 "$bin" run configs/cifar10.yaml "${sets[@]}" --set output_dir=/tmp/aefx-runs --quiet
    mkdir -p "$out/run"
    cp /tmp/aefx-runs/cifar10/{metrics.json,run.json,log.txt,pretrain.json,classify.json} "$out/run/" 2>/dev/null
  fi

  # 2. The pretrain step, code extraction from memory and a head epoch: aefx against eager and
  # compiled PyTorch, same model, batch, data and precision, alternating.
  if wanted bench; then
    step bench 200 python3 tools/bench_pytorch.py configs/cifar10.yaml "${sets[@]}" --aefx "$bin" \
      --rounds "$rounds" --precisions "$precisions" --variants eager,compile
    sed -n '/^{/,$p' "$out/bench.log" >"$out/bench.json"
  fi

  # 3. The test suite (the CUDA tests run here, and skip on machines without a GPU).
  if wanted tests; then
    step tests 90 ctest --test-dir build-device -j "$jobs" --output-on-failure --timeout 80
  fi

  # 4. The reported accuracy runs: configs/cifar10.yaml once per seed, recorded as
  # tools/results.py records them (OUT/results/cifar10/seed<S>/, summary.json).
  if wanted seeds; then
    step seeds 380 python3 tools/results.py seeds configs/cifar10.yaml --seeds "$seeds" \
      --aefx "$bin" --runs /tmp/aefx-runs --results "$out/results" "${sets[@]}"
  fi

  # 5. Feature extraction on the GPU from memory, with the encoder of a run above.
  if wanted extract; then
    local model
    model=$(dirname "$(ls -d /tmp/aefx-runs/cifar10*/encoder.pt 2>/dev/null | head -1)")
    step extract 60 "$bin" extract --model "$model" --data "$data" --split train --device cuda \
      --precision bf16 --batch 1024 --dtype float16 --out /tmp/aefx-extract --quiet
    mkdir -p "$out/extract"
    cp /tmp/aefx-extract/meta.json "$out/extract/" 2>/dev/null
  fi

  python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(path):
    try:
        with open(os.path.join(out, path)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rows = []
b = load("bench.json") or {}
for p in ("bf16", "fp32"):
    s = b.get(p)
    if not s:
        continue
    a = s["aefx"]
    rows.append((f"aefx pretrain img/s ({p})", f"{a['pretrain_images_per_second']:.0f}"))
    rows.append((f"aefx code extraction img/s ({p})", f"{a['code_images_per_second']:.0f}"))
    for v in ("eager", "compile"):
        if v in s:
            r = s[v]
            rows.append((f"PyTorch {v} pretrain img/s ({p})", f"{r['pretrain_images_per_second']:.0f}"))
            rows.append((f"aefx / {v} ({p}, pairwise median)", f"{r['pretrain_ratio_pairwise_median']:.2f}x"))
r, m = load("run/run.json"), load("run/metrics.json")
if r:
    rows.append(("configs/cifar10.yaml wall s (all stages)", f"{r['wall_seconds']:.1f}"))
    rows.append(("stage seconds", json.dumps(r["stages"])))
    rows.append(("precision", r.get("precision")))
if m:
    rows.append(("test accuracy", f"{m['test_accuracy']:.4f}"))
x = load("extract/meta.json")
if x:
    rows.append(("aefx extract img/s (GPU, bf16, from memory)", f"{x['images_per_second']:.0f}"))
print("\n== summary")
for k, v in rows:
    print(f"{k:48s} {v}")
with open(os.path.join(out, "summary.txt")) as f:
    print(f.read())
EOF
}

case ${1:-} in
  prepare) prepare "${2:-}" ;;
  run) [ $# -eq 2 ] || { echo "usage: tools/device_check.sh run OUT_DIR" >&2; exit 2; }; run_checks "$2" ;;
  *) sed -n '2,33p' "$0" >&2; exit 2 ;;
esac
