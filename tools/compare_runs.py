"""Compares two sets of run folders bit for bit: every number in pretrain.json, classify.json,
baseline.json and metrics.json (timings aside) and the exported TorchScript models' outputs on a
fixed random batch. For refactors that must not change results: run the same configs with the old
and the new binary into two output_dirs, then

    /usr/bin/python3 tools/compare_runs.py OLD_OUTPUT_DIR NEW_OUTPUT_DIR

Exits 1 and prints each difference when any value differs."""
import json, os, sys
import torch

TIMING = {"seconds", "train_seconds", "code_seconds", "head_seconds", "images_per_second",
          "pretrain_seconds", "classify_seconds", "evaluate_seconds", "wall_seconds"}

def leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            if k in TIMING or k == "timings":
                continue
            yield from leaves(v, path + "/" + k)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, path + "[%d]" % i)
    else:
        yield path, x

a_root, b_root = sys.argv[1], sys.argv[2]
bad = 0
checked = 0
for run in sorted(os.listdir(a_root)):
    for f in ["pretrain.json", "classify.json", "baseline.json", "metrics.json"]:
        pa, pb = os.path.join(a_root, run, f), os.path.join(b_root, run, f)
        if not os.path.exists(pa):
            continue
        A = dict(leaves(json.load(open(pa))))
        B = dict(leaves(json.load(open(pb))))
        for k in sorted(set(A) | set(B)):
            if k in ("/stage",):
                continue
            va, vb = A.get(k, "<absent>"), B.get(k, "<absent>")
            checked += 1
            if va != vb:
                bad += 1
                print("DIFF %s/%s %s: %r vs %r" % (run, f, k, va, vb))
    for m in ["encoder.pt", "autoencoder.pt", "classifier.pt"]:
        pa, pb = os.path.join(a_root, run, m), os.path.join(b_root, run, m)
        if not os.path.exists(pa):
            continue
        ma, mb = torch.jit.load(pa).eval(), torch.jit.load(pb).eval()
        meta = json.load(open(os.path.join(a_root, run, "model.json")))
        c, h = meta["input"]["channels"], meta["input"]["height"]
        g = torch.Generator().manual_seed(0)
        x = torch.rand(8, c, h, h, generator=g)
        with torch.no_grad():
            ya, yb = ma(x), mb(x)
        checked += 1
        if not torch.equal(ya, yb):
            bad += 1
            print("DIFF %s/%s: max |a-b| %g" % (run, m, (ya - yb).abs().max().item()))
print("%d values and model outputs compared, %d differ" % (checked, bad))
sys.exit(1 if bad else 0)
