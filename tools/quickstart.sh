#!/usr/bin/env bash
# The main job: install and build aefx, make sure the data is there (CIFAR-10: downloaded;
# Fashion-MNIST: Debian's dataset-fashion-mnist), run the pipeline.
#   tools/quickstart.sh [CONFIG] [--set key=value ...]    (default configs/cifar10-cpu.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/cifar10-cpu.yaml}
[ $# -gt 0 ] && shift
bash tools/install.sh
sets=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--set" ] && [ $((i + 1)) -lt ${#args[@]} ] && sets+=(--set "${args[$((i + 1))]}")
done
format=$(build/aefx config "$config" "${sets[@]}" --get data.format)
root=$(build/aefx config "$config" "${sets[@]}" --get data.root)
if [ "$format" = "cifar10-binary" ] && [ ! -f "$root/cifar-10-batches-bin/data_batch_1.bin" ] &&
   [ ! -f "$root/data_batch_1.bin" ]; then
  if ! bash tools/download_cifar10.sh "$root"; then
    echo "aefx: no CIFAR-10 in $root and the download failed: put cifar-10-batches-bin/ (from cifar-10-binary.tar.gz) into $root, or pass --set data.root=DIR" >&2
    exit 1
  fi
fi
if [ "$format" = "idx" ] && [ "$root" = /usr/share/datasets/fashion-mnist ]; then
  bash tools/ensure_packages.sh dataset-fashion-mnist
fi
exec build/aefx run "$config" "$@"
