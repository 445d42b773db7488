#!/usr/bin/env bash
# The main job: install and build aefx, make sure the data is there (CIFAR-10: downloaded;
# Fashion-MNIST: Debian's dataset-fashion-mnist), run the pipeline, say where the results are.
#   tools/quickstart.sh [CONFIG] [--set key=value ...] [other `aefx run` options]
#                                                      (default configs/cifar10-cpu.yaml)
# Without a CONFIG and without --set data.root, when CIFAR-10 is not in data/cifar10 and cannot
# be downloaded (offline), it runs configs/fashion-mnist.yaml on Debian's Fashion-MNIST instead.
set -euo pipefail
cd "$(dirname "$0")/.."
default_config=configs/cifar10-cpu.yaml
config=$default_config
explicit_config=0
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  config=$1; explicit_config=1; shift
fi
bash tools/install.sh
sets=()
root_given=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "--set" ] && [ $((i + 1)) -lt ${#args[@]} ]; then
    sets+=(--set "${args[$((i + 1))]}")
    case "${args[$((i + 1))]}" in data.root=*) root_given=1 ;; esac
  fi
done
get() { build/aefx config "$config" "${sets[@]}" --get "$1"; }
format=$(get data.format)
root=$(get data.root)
if [ "$format" = "cifar10-binary" ] && [ ! -f "$root/cifar-10-batches-bin/data_batch_1.bin" ] &&
   [ ! -f "$root/data_batch_1.bin" ]; then
  if ! bash tools/download_cifar10.sh "$root"; then
    if [ $explicit_config = 1 ] || [ $root_given = 1 ]; then
      echo "aefx: no CIFAR-10 in $root and the download failed: put cifar-10-batches-bin/ (from cifar-10-binary.tar.gz) into $root, or pass --set data.root=DIR" >&2
      exit 1
    fi
    config=configs/fashion-mnist.yaml
    echo "aefx: CIFAR-10 could not be downloaded (offline?) and is not in $root: running $config on Debian's Fashion-MNIST instead (for CIFAR-10, put cifar-10-batches-bin/ into $root or pass --set data.root=DIR)" >&2
    format=$(get data.format)
    root=$(get data.root)
  fi
fi
if [ "$format" = "idx" ] && [ "$root" = /usr/share/datasets/fashion-mnist ]; then
  if ! bash tools/ensure_packages.sh dataset-fashion-mnist; then
    echo "aefx: Debian's dataset-fashion-mnist could not be installed (apt-get install dataset-fashion-mnist), and $config needs it" >&2
    exit 1
  fi
fi
status=0
# aefx runs as a child (so this script can name the results after it): a SIGTERM to the script
# is passed on to it, and Ctrl-C reaches it from the terminal, so it stops as it would alone
# (progress saved, exit 130/143) and the script exits with its status.
trap '' INT
build/aefx run "$config" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do
  status=0
  wait "$child" || status=$?
done
[ $status -eq 0 ] || exit $status
run_dir="$(get output_dir)/$(get name)"
case "$run_dir" in /*) ;; *) run_dir="$PWD/$run_dir" ;; esac
echo "results: $run_dir (metrics.json: $run_dir/metrics.json, report: $run_dir/report.html)"
