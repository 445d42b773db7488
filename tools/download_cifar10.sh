#!/usr/bin/env bash
# Downloads the official CIFAR-10 binary release, checks its MD5 and unpacks it.
#   tools/download_cifar10.sh [DEST]    (default data/cifar10; gives DEST/cifar-10-batches-bin/)
set -euo pipefail
dest=${1:-data/cifar10}
url=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
md5=c32a1d4ab5d03f1284b67883e8d87530
if [ -f "$dest/cifar-10-batches-bin/test_batch.bin" ]; then
  echo "CIFAR-10 already in $dest/cifar-10-batches-bin"; exit 0
fi
mkdir -p "$dest"
archive="$dest/cifar-10-binary.tar.gz"
if [ ! -f "$archive" ] || ! echo "$md5  $archive" | md5sum -c --status; then
  echo "downloading $url"
  # The progress meter only on a terminal; errors always.
  quiet=(-sS); [ -t 2 ] && quiet=()
  if command -v curl >/dev/null; then
    curl -fL "${quiet[@]}" --retry 3 --connect-timeout 20 -o "$archive.part" "$url" ||
      { rm -f "$archive.part"; exit 1; }
  else
    wget -q --tries=3 --timeout=20 -O "$archive.part" "$url" || { rm -f "$archive.part"; exit 1; }
  fi
  mv "$archive.part" "$archive"
fi
if ! echo "$md5  $archive" | md5sum -c --status; then
  echo "error: $archive has the wrong MD5 (expected $md5); delete it and try again" >&2
  exit 1
fi
tar -xzf "$archive" -C "$dest"
rm -f "$archive"
echo "CIFAR-10 ready in $dest/cifar-10-batches-bin"
