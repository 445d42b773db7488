#!/usr/bin/env python3
"""`aefx extract` throughput and memory against the same exported encoder in plain PyTorch.

    /usr/bin/python3 tools/bench_extract.py --model RUN_DIR --cifar DIR [--jpeg DIR] [options]

Rounds alternate, each measurement in a fresh process, and the medians are printed as JSON:

  pytorch      torch.jit.load(encoder.pt) in /usr/bin/python3, threads = every core, all images
               already in memory as float batches in [0, 1] (channels-last, its faster layout),
               batches of --batch, no output written: the reference the issue names
  pytorch-frozen  the same after torch.jit.freeze (what aefx extract runs), for reference
  aefx-memory  aefx extract --data CIFAR (cifar10-binary; train then test split: 60,000 images
               read into memory, rows written to features.npy)
  aefx-jpeg    aefx extract JPEG_ROOT (every image file under it, decoded on worker threads)

images/s counts extraction time only (meta.json's `seconds`: model load and file listing
excluded on aefx's side, as the reference excludes loading). `--precision bf16` runs aefx
in bf16 and the references under torch.autocast(bfloat16). Peak RSS per process from wait4.

  --rounds N    alternations (default 3)         --batch N     images per batch (default 256)
  --aefx PATH   the aefx binary (default build/aefx)
  --out FILE    also write the JSON there (e.g. results/extract-cifar10-cpu.json)
  --only pytorch|pytorch-frozen   one reference measurement in this process (used by rounds)
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def cifar_images(root):
    import numpy as np
    d = os.path.join(root, "cifar-10-batches-bin") if os.path.isdir(
        os.path.join(root, "cifar-10-batches-bin")) else root
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    raw = np.concatenate([np.fromfile(os.path.join(d, n), dtype=np.uint8) for n in names])
    return raw.reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32)


def reference(args, frozen):
    import torch
    torch.set_num_threads(os.cpu_count())
    module = torch.jit.load(os.path.join(args.model, "encoder.pt")).eval()
    if frozen:
        module = torch.jit.freeze(module)
    images = torch.from_numpy(cifar_images(args.cifar).copy())
    batches = [images[i:i + args.batch].float().div(255).contiguous(
        memory_format=torch.channels_last) for i in range(0, len(images), args.batch)]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with torch.no_grad(), autocast:
        start = time.perf_counter()
        for b in batches:
            module(b)
        seconds = time.perf_counter() - start
    return {"images": len(images), "seconds": seconds}


def run(cmd):
    """Runs cmd in a fresh process; returns (seconds of wall, its peak RSS in MB, from wait4).
    Exits with the command's output when it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def emit(result, path):
    """Prints `result` as JSON, and writes it to `path` too when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def aefx_extract(args, inputs, tmp):
    """Extraction seconds (meta.json), images, wall seconds and peak RSS over the given runs."""
    seconds = images = wall = 0.0
    rss = 0.0
    for k, extra in enumerate(inputs):
        out = os.path.join(tmp, f"x{k}")
        cmd = [args.aefx, "extract", "--model", args.model, "--out", out, "--batch",
               str(args.batch), "--precision", args.precision, "--quiet"] + extra
        w, r = run(cmd)
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
        seconds += meta["seconds"]
        images += meta["rows"]
        wall += w
        rss = max(rss, r)
        subprocess.run(["rm", "-rf", out], check=True)
    return {"images": int(images), "seconds": seconds, "wall_seconds": wall, "peak_rss_mb": rss}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a run folder holding encoder.pt")
    p.add_argument("--cifar", required=True, help="CIFAR-10 binary root (60,000 images)")
    p.add_argument("--jpeg", help="a folder of image files (e.g. the JPEG copy of CIFAR-10)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--aefx", default="build/aefx")
    p.add_argument("--out")
    p.add_argument("--only", choices=["pytorch", "pytorch-frozen"])
    args = p.parse_args()
    if args.only:
        print(json.dumps(reference(args, args.only == "pytorch-frozen")))
        return
    me = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--cifar", args.cifar,
          "--batch", str(args.batch), "--precision", args.precision]
    samples = {}
    with tempfile.TemporaryDirectory(prefix="aefx-bench-extract-") as tmp:
        for _ in range(args.rounds):
            for name in ["pytorch", "pytorch-frozen"]:
                out = subprocess.run(me + ["--only", name], check=True, capture_output=True,
                                     text=True).stdout
                samples.setdefault(name, []).append(json.loads(out.strip().splitlines()[-1]))
            samples.setdefault("aefx-memory", []).append(aefx_extract(
                args, [["--data", args.cifar, "--split", s] for s in ("train", "test")], tmp))
            if args.jpeg:
                samples.setdefault("aefx-jpeg", []).append(aefx_extract(args, [[args.jpeg]], tmp))
    result = {"model": args.model, "batch": args.batch, "precision": args.precision,
              "rounds": args.rounds, "machine": {"cpus": os.cpu_count(),
                                                 "processor": platform.processor()}}
    for name, runs in samples.items():
        rates = [r["images"] / r["seconds"] for r in runs]
        entry = {"images": runs[0]["images"], "images_per_second": statistics.median(rates),
                 "images_per_second_runs": rates}
        if "peak_rss_mb" in runs[0]:
            entry["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            entry["wall_seconds"] = statistics.median(r["wall_seconds"] for r in runs)
        result[name] = entry
    base = result["pytorch"]["images_per_second"]
    for name in ("pytorch-frozen", "aefx-memory", "aefx-jpeg"):
        if name in result:
            result[name]["vs_pytorch"] = result[name]["images_per_second"] / base
    emit(result, args.out)


if __name__ == "__main__":
    main()
