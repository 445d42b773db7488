#!/usr/bin/env python3
"""CIFAR-10 for the GPU machine, which has no network and takes at most 64 MiB with each call.

    python3 tools/device_data.py pack JPEG_ROOT OUT_FILE   # here: JPEG_ROOT/{train,test}/<class>/*.jpg
    python3 tools/device_data.py unpack PACK OUT_DIR       # there: OUT_DIR/cifar-10-batches-bin/

`pack` concatenates the JPEG files as they are (about 53 MB for the 60,000 images: a tar would
add 88 MB of headers and padding, and general-purpose compression gains nothing on JPEG) after a
JSON index of (split, label, length). `unpack` decodes them with Pillow and writes CIFAR-10's
official binary layout (data_batch_1..5.bin, test_batch.bin: 1 label byte + 3,072 pixel bytes
per image, R then G then B planes), which `data.format: cifar10-binary` reads. The image order
is shuffled with a fixed seed, as ../shared/tools/cifar10_bin.py does, so the same pack always
gives the same bytes.
"""
import io
import json
import os
import random
import struct
import sys

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAGIC = b"AEFXJPG1"


def pack(root, out_file):
    index, blobs = [], []
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            folder = os.path.join(root, split, name)
            if not os.path.isdir(folder):
                sys.exit(f"device_data: {folder} is missing (expected {root}/train|test/<class>/*.jpg)")
            for f in sorted(os.listdir(folder)):
                with open(os.path.join(folder, f), "rb") as fh:
                    data = fh.read()
                index.append((split, label, len(data)))
                blobs.append(data)
    head = json.dumps(index, separators=(",", ":")).encode()
    tmp = out_file + ".tmp"
    with open(tmp, "wb") as out:
        out.write(MAGIC + struct.pack("<Q", len(head)) + head)
        for b in blobs:
            out.write(b)
    os.replace(tmp, out_file)
    print(f"device_data: {len(index)} images, {os.path.getsize(out_file) / 2**20:.1f} MiB in {out_file}")


def unpack(pack_file, out_dir):
    import numpy as np
    from PIL import Image

    with open(pack_file, "rb") as fh:
        if fh.read(8) != MAGIC:
            sys.exit(f"device_data: {pack_file} is not a pack written by `device_data.py pack`")
        (n,) = struct.unpack("<Q", fh.read(8))
        index = json.loads(fh.read(n))
        splits = {"train": [], "test": []}
        for split, label, length in index:
            splits[split].append((label, fh.read(length)))
    dst = os.path.join(out_dir, "cifar-10-batches-bin")
    os.makedirs(dst, exist_ok=True)
    for split, items in splits.items():
        random.Random(20261122).shuffle(items)
        rec = np.empty((len(items), 3073), np.uint8)
        for i, (label, data) in enumerate(items):
            px = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            if px.shape != (32, 32, 3):
                sys.exit(f"device_data: image {i} of {split} is {px.shape}, expected 32x32 RGB")
            rec[i, 0] = label
            rec[i, 1:] = px.transpose(2, 0, 1).reshape(-1)
        if split == "train":
            per = len(rec) // 5
            for b in range(5):
                rec[b * per : (b + 1) * per if b < 4 else len(rec)].tofile(os.path.join(dst, f"data_batch_{b + 1}.bin"))
        else:
            rec.tofile(os.path.join(dst, "test_batch.bin"))
    with open(os.path.join(dst, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    print(f"device_data: {len(splits['train'])} train, {len(splits['test'])} test images in {dst}")


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
