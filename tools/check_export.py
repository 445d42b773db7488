#!/usr/bin/env python3
"""Check an aefx export with plain PyTorch (no aefx): load classifier.pt and encoder.pt with
torch.jit.load, compute the test accuracy on CIFAR-10 binary data, and optionally compare the
encoder's codes with codes computed in C++.

    /usr/bin/python3 tools/check_export.py RUN_DIR DATA_ROOT [--codes FILE]

DATA_ROOT holds cifar-10-batches-bin/ (or is it). FILE holds float32 N x D codes of the first
N test images, as aefx's C++ encoder computed them. Prints one JSON line.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch


def load_test(root):
    d = os.path.join(root, "cifar-10-batches-bin")
    path = os.path.join(d if os.path.isdir(d) else root, "test_batch.bin")
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)
    images = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy())
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    return images, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("data_root")
    ap.add_argument("--codes", help="float32 codes from C++ for the first N test images")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    extra = {"aefx.json": ""}
    clf = torch.jit.load(os.path.join(a.run_dir, "classifier.pt"), _extra_files=extra).eval()
    meta = json.loads(extra["aefx.json"])
    enc = torch.jit.load(os.path.join(a.run_dir, "encoder.pt")).eval()
    images, labels = load_test(a.data_root)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 500):
            x = images[i:i + 500].float() / 255.0
            correct += int((clf(x).argmax(1) == labels[i:i + 500]).sum())
        out = {"torch_version": torch.__version__, "kind": meta["kind"],
               "python_accuracy": correct / len(images), "test_images": len(images)}
        if a.codes:
            ref = torch.from_numpy(np.fromfile(a.codes, dtype=np.float32))
            n = ref.numel() // meta["code_dim"]
            got = enc(images[:n].float() / 255.0)
            out["encoder_max_abs_diff"] = float((got.flatten() - ref).abs().max())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
