#!/usr/bin/env python3
"""Peak RSS of `aefx extract` and of pretrain on folders of growing size: is it flat in N?

    /usr/bin/python3 tools/bench_memory.py --model RUN_DIR --config CONFIG FOLDER... [options]

For each FOLDER (e.g. 10k, 50k and 100k image files; tools/bench_memory.py --make writes such
folders from any folder of images) it runs, each in a fresh process whose peak RSS wait4
reports:
  extract   aefx extract --model RUN_DIR FOLDER (every image file under it)
  pretrain  aefx run CONFIG --stages pretrain --set data.unlabeled=FOLDER
            --set data.unlabeled_only=true --set pretrain.epochs=1 (plus --set ...): one epoch
            over the folder's images, the first run also building its cache (data.cache_dir:
            a fresh temporary folder, so every size pays for its build)
and prints JSON: images, peak RSS (MB) and seconds per folder and command, and the largest
RSS over the smallest.

  --set key=value   more overrides for the pretrain runs (repeatable; e.g. data.root=...)
  --aefx PATH       the aefx binary (default build/aefx)
  --out FILE        also write the JSON there
  --make SRC DEST --counts 10000,50000,100000
                    writes DEST/all (resized JPEG copies of SRC's images, 40 and 36 px, in
                    folders of 1,000) and DEST/n<count> (links to the first count of them)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench_extract import emit, run  # the same measurement: wall seconds, peak RSS (wait4)


def make(src, dest, counts):
    from PIL import Image
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs
                   if f.lower().endswith((".jpg", ".jpeg", ".png")))
    total = max(counts)
    k = 0
    while k < total:
        size = (40, 36, 44, 48)[(k // len(files)) % 4]
        for f in files[: total - k]:
            d = os.path.join(dest, "all", "d%04d" % (k // 1000))
            os.makedirs(d, exist_ok=True)
            Image.open(f).convert("RGB").resize((size, size)).save(
                os.path.join(d, "%07d.jpg" % k), quality=90)
            k += 1
    for n in counts:
        d = os.path.join(dest, "n%d" % n)
        os.makedirs(d, exist_ok=True)
        for i in range((n + 999) // 1000):
            link = os.path.join(d, "d%04d" % i)
            if not os.path.exists(link):
                os.symlink(os.path.join(dest, "all", "d%04d" % i), link)


def count_images(folder):
    return sum(1 for _, _, fs in os.walk(folder, followlinks=True) for f in fs
               if f.lower().endswith((".jpg", ".jpeg", ".png")))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="*")
    p.add_argument("--model")
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--aefx", default="build/aefx")
    p.add_argument("--out")
    p.add_argument("--make", nargs=2, metavar=("SRC", "DEST"))
    p.add_argument("--counts", default="10000,50000,100000")
    args = p.parse_args()
    if args.make:
        make(args.make[0], args.make[1], [int(c) for c in args.counts.split(",")])
        return
    if not (args.model and args.config and args.folders):
        p.error("--model, --config and FOLDER... are needed")
    rows = []
    with tempfile.TemporaryDirectory(prefix="aefx-bench-memory-") as tmp:
        for k, folder in enumerate(args.folders):
            n = count_images(folder)
            out = os.path.join(tmp, "x%d" % k)
            sec, rss = run([args.aefx, "extract", "--model", args.model, "--out", out, "--quiet",
                            folder])
            rows.append({"command": "extract", "folder": folder, "images": n,
                         "peak_rss_mb": rss, "seconds": sec})
            print(json.dumps(rows[-1]), flush=True)
            subprocess.run(["rm", "-rf", out], check=True)
            cmd = [args.aefx, "run", args.config, "--stages", "pretrain", "--quiet"]
            for s in args.set + ["data.unlabeled=" + folder, "data.unlabeled_only=true",
                                 "pretrain.epochs=1", "report.pictures=false",
                                 "data.cache_dir=" + os.path.join(tmp, "cache%d" % k),
                                 "output_dir=" + tmp, "name=pretrain%d" % k]:
                cmd += ["--set", s]
            sec, rss = run(cmd)
            rows.append({"command": "pretrain", "folder": folder, "images": n,
                         "peak_rss_mb": rss, "seconds": sec})
            print(json.dumps(rows[-1]), flush=True)
            subprocess.run(["rm", "-rf", os.path.join(tmp, "cache%d" % k),
                            os.path.join(tmp, "pretrain%d" % k)], check=True)
    result = {"model": args.model, "config": args.config, "overrides": args.set, "runs": rows}
    for command in ("extract", "pretrain"):
        r = [x["peak_rss_mb"] for x in rows if x["command"] == command]
        result[command + "_rss_growth"] = max(r) / min(r)
    emit(result, args.out)


if __name__ == "__main__":
    main()
