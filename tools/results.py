#!/usr/bin/env python3
"""Reported accuracy runs: seeds of a shipped config, the ablation table, the tables of docs/results.md.

Standard library only (any python3). Every figure comes from the run folders aefx writes.

  tools/results.py seeds CONFIG [--seeds 0,1,2] [--set key=value ...]
      Runs the config once per seed (every stage of the config), each in its own run folder
      (name <config name>-seed<S>), and records each run under results/<config name>/seed<S>/:
      metrics.json, config.yaml (the resolved config), run.json (git commit, machine, wall
      time, stage times), pretrain.json and classify.json. Then writes
      results/<config name>/summary.json: test accuracy mean, standard deviation, min and max,
      wall time per run.

  tools/results.py ablation CONFIG [--rows ROW,...] [--set key=value ...]
      Model choices measured on the VALIDATION split (the test set is not touched): the
      pretraining objective (none = the random encoder, plain, masked, denoising, both), the
      whitening stem (without it, trained and random), single- vs multi-scale codes, avg vs
      avg+max pooling, linear vs MLP head. Each objective pretrains once; the code and head
      variants re-run only `classify` on a copy of the reference encoder. The reference is the
      run folder of `seeds` for the config's seed (reused with --resume, as are finished
      pretraining rows). Writes
      results/ablation-<config name>.json with the rows measured.

  tools/results.py labels CONFIG [--seeds 0,1,2] [--labels 10,100,1000,0] [--set key=value ...]
      The label-efficiency table: for each number of labels per class (0 = all) and seed, the
      TEST accuracy of a linear head and of k-NN (evaluate.knn_k, cosine, temperature-weighted)
      on three features: the frozen trained encoder's codes, the same encoder untrained
      (pretrain.epochs 0) and the raw pixels (the baseline stage). Each seed pretrains once (the
      trained encoder is the `seeds` run folder of that seed, reused with --resume) and every
      row re-runs classify and evaluate (or the baseline) on a copy, with
      classify.labels_per_class and classify.hidden=[] (a linear head). Few labels are few
      steps: the head's epochs grow so that every row trains at least ~200 steps (LABEL_EPOCHS).
      Writes results/labels-<config name>.json (with --resume, merged with the rows of other
      seeds and label counts already there).

  tools/results.py table
      Prints the Results tables of docs/results.md (Markdown) from what is under results/.

Common options: --aefx PATH (default build/aefx), --runs DIR (run folders, default
models/results), --results DIR (default results), --resume (a run folder that exists is
continued, or reused when finished, instead of started again).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDED = ["metrics.json", "config.yaml", "run.json", "pretrain.json", "classify.json"]


def aefx_get(args, config, sets, key):
    cmd = [args.aefx, "config", config, "--get", key]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def aefx_run(args, config, sets, stages=None, resume=False):
    cmd = [args.aefx, "run", config, "--set", "output_dir=" + args.runs]
    for s in sets:
        cmd += ["--set", s]
    if stages:
        cmd += ["--stages", stages]
    if resume:
        cmd.append("--resume")
    print("+ " + " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    return time.time() - t0


def load_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def spread(values):
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def cmd_seeds(args):
    base = aefx_get(args, args.config, args.set, "name")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        name = "%s-seed%d" % (base, seed)
        run_dir = os.path.join(args.runs, name)
        aefx_run(args, args.config, args.set + ["seed=%d" % seed, "name=" + name],
                 resume=args.resume and os.path.exists(os.path.join(run_dir, "progress.json")))
        out = os.path.join(args.results, base, "seed%d" % seed)
        os.makedirs(out, exist_ok=True)
        for f in RECORDED:
            if os.path.exists(os.path.join(run_dir, f)):
                shutil.copyfile(os.path.join(run_dir, f), os.path.join(out, f))
        m = load_json(os.path.join(run_dir, "metrics.json"))
        r = load_json(os.path.join(run_dir, "run.json"))
        # After a resume, run.json times only the last `aefx run` of the folder: say so.
        runs.append({"seed": seed, "test_accuracy": m["test_accuracy"],
                     "val_accuracy": m["val_accuracy"], "wall_seconds": r["wall_seconds"],
                     "resumed": bool(r.get("resumed", False))})
        print("seed %d: test %.4f  val %.4f  wall %.0f s" %
              (seed, m["test_accuracy"], m["val_accuracy"], r["wall_seconds"]), flush=True)
    r = load_json(os.path.join(args.runs, "%s-seed%d" % (base, seeds[0]), "run.json"))
    summary = {
        "config": os.path.relpath(os.path.abspath(args.config), ROOT),
        "overrides": args.set,
        "data": aefx_get(args, args.config, args.set, "data.root"),
        "test_accuracy": spread([x["test_accuracy"] for x in runs]),
        "val_accuracy": spread([x["val_accuracy"] for x in runs]),
        # A resumed run's run.json times only its last part: the wall time leaves those out.
        "wall_seconds": spread([x["wall_seconds"] for x in runs if not x["resumed"]] or
                               [x["wall_seconds"] for x in runs]),
        "resumed_seeds": [x["seed"] for x in runs if x["resumed"]],
        "runs": runs,
        "git_commit": r["git_commit"],
        "machine": r["machine"],
        "device": r["device"],
        "threads": r["threads"],
        "libtorch_version": r["libtorch_version"],
    }
    write_json(os.path.join(args.results, base, "summary.json"), summary)
    t = summary["test_accuracy"]
    print("%s: test accuracy %.2f%% +- %.2f (min %.2f, max %.2f) over seeds %s" %
          (base, 100 * t["mean"], 100 * t["std"], 100 * t["min"], 100 * t["max"], args.seeds))


ABLATION_ROWS = ["untrained", "no-stem", "no-stem-untrained", "plain", "masked", "denoising",
                 "single-scale", "linear", "pooling"]


def cmd_ablation(args):
    """The reference is the config as shipped; every other row changes one thing."""
    base = aefx_get(args, args.config, args.set, "name")
    seed = aefx_get(args, args.config, args.set, "seed")
    mask = float(aefx_get(args, args.config, args.set, "pretrain.mask_ratio"))
    noise = float(aefx_get(args, args.config, args.set, "pretrain.noise"))
    stem = int(aefx_get(args, args.config, args.set, "model.whiten_patch"))
    if args.rows:
        wanted = args.rows.split(",")
    else:  # every row that applies to the config
        wanted = [r for r in ABLATION_ROWS if (stem > 0 or "stem" not in r) and
                  (mask > 0 and noise > 0 or r not in ("plain", "masked", "denoising"))]
    unknown = [r for r in wanted if r not in ABLATION_ROWS]
    if unknown:
        sys.exit("ablation: unknown row %s (rows: %s)" % (unknown[0], ",".join(ABLATION_ROWS)))
    if {"plain", "masked", "denoising"} & set(wanted) and (mask <= 0 or noise <= 0):
        sys.exit("ablation: the objective rows need a config with both masking and noise")
    if {"no-stem", "no-stem-untrained"} & set(wanted) and stem == 0:
        sys.exit("ablation: the stem rows need a config with model.whiten_patch > 0")
    grids = json.loads(aefx_get(args, args.config, args.set, "classify.pool_grids"))
    single = [0] * (len(grids) - 1) + [grids[-1]]

    def measure(tag, overrides, from_dir=None):
        """Pretrains and classifies, or (from_dir) classifies on a copy of that encoder. The
        reference runs in the folder `seeds` uses for the config's seed, so that with --resume
        a seeds run is reused (aefx checks that its config is this one) and vice versa."""
        name = "%s-seed%s" % (base, seed) if tag == "reference" else "%s-ablation-%s" % (base, tag)
        run_dir = os.path.join(args.runs, name)
        resume = args.resume and not from_dir and os.path.exists(
            os.path.join(run_dir, "progress.json"))
        if tag == "reference" and os.path.exists(run_dir) and not resume:
            sys.exit("ablation: %s exists (a seeds run?): %s" % (run_dir, (
                "it holds no run to resume; remove it" if args.resume else
                "pass --resume to reuse it, or remove it")))
        if not resume:
            shutil.rmtree(run_dir, ignore_errors=True)
        if from_dir:
            shutil.copytree(from_dir, run_dir)
        t = aefx_run(args, args.config, args.set + overrides + ["name=" + name],
                     "classify" if from_dir else "pretrain,classify", resume)
        c = load_json(os.path.join(run_dir, "classify.json"))
        p = load_json(os.path.join(run_dir, "pretrain.json"))
        if resume:  # the stages' time in the run that did the work, not this check's
            stages = load_json(os.path.join(run_dir, "run.json"))["stages"]
            t = stages.get("pretrain", 0.0) + stages.get("classify", 0.0)
        print("%-18s val %.4f" % (tag, c["val_accuracy"]), flush=True)
        return {"overrides": overrides, "val_accuracy": c["val_accuracy"],
                "code_dim": c["code_dim"], "val_psnr": p["val_psnr"], "seconds": t,
                "run_dir": run_dir}

    ref = measure("reference", [])
    pooling = aefx_get(args, args.config, args.set, "classify.pooling")
    other = "avg" if pooling != "avg" else "avgmax"
    shipped = " (as shipped)"
    # (row, group, label, overrides, classify-only); the shipped row closes each group.
    plan = [
        ("untrained", "objective", "none: random frozen encoder (pretrain.epochs 0)",
         ["pretrain.epochs=0"], False),
        ("plain", "objective", "plain autoencoder", ["pretrain.mask_ratio=0", "pretrain.noise=0"],
         False),
        ("masked", "objective", "masked, ratio %g" % mask, ["pretrain.noise=0"], False),
        ("denoising", "objective", "denoising, noise %g" % noise, ["pretrain.mask_ratio=0"], False),
        (None, "objective", "masked %g + denoising %g%s" % (mask, noise, shipped), None, False),
        ("no-stem", "stem", "no whitening stem (model.whiten_patch 0)", ["model.whiten_patch=0"],
         False),
        ("no-stem-untrained", "stem", "no stem, random frozen encoder (pretrain.epochs 0)",
         ["model.whiten_patch=0", "pretrain.epochs=0"], False),
        (None, "stem", "%dx%d whitening stem%s" % (stem, stem, shipped), None, False),
        ("single-scale", "codes", "single-scale: last stage, grids %s" % json.dumps(single),
         ["classify.pool_grids=" + json.dumps(single)], True),
        (None, "codes", "multi-scale: grids %s%s" % (json.dumps(grids), shipped), None, False),
        ("pooling", "pooling", "%s pooling of each grid cell" % other,
         ["classify.pooling=" + other], True),
        (None, "pooling", "%s pooling of each grid cell%s" % (pooling, shipped), None, False),
        ("linear", "head", "linear", ["classify.hidden=[]"], True),
        (None, "head", "MLP%s" % shipped, None, False),
    ]
    rows, measured_groups = [], set()
    for tag, group, label, overrides, classify_only in plan:
        if tag is None:  # the shipped row of a group with a measured variant
            if group in measured_groups:
                rows.append((group, label, ref))
        elif tag in wanted:
            rows.append((group, label,
                         measure(tag, overrides, ref["run_dir"] if classify_only else None)))
            measured_groups.add(group)
    r = load_json(os.path.join(ref["run_dir"], "run.json"))
    write_json(os.path.join(args.results, "ablation-%s.json" % base), {
        "config": os.path.relpath(os.path.abspath(args.config), ROOT),
        "overrides": args.set,
        "metric": "validation accuracy (held out of train; the test set is not used)",
        "rows": [dict({k: v for k, v in row.items() if k != "run_dir"}, group=g, label=label)
                 for g, label, row in rows],
        "git_commit": r["git_commit"],
        "machine": r["machine"],
    })


# Head epochs per labels-per-class setting (the config's for all labels): a linear head on 10
# labels per class with flipped codes has 200 rows, one step per epoch.
LABEL_EPOCHS = {10: 200, 100: 100, 1000: 30}
FEATURES = ["trained", "untrained", "pixels"]


def cmd_labels(args):
    base = aefx_get(args, args.config, args.set, "name")
    seeds = [int(x) for x in args.seeds.split(",")]
    labels = [int(x) for x in args.labels.split(",")]
    rows = []
    for seed in seeds:
        encoders = {}
        for feature, overrides in (("trained", []), ("untrained", ["pretrain.epochs=0"])):
            name = ("%s-seed%d" % (base, seed) if feature == "trained"
                    else "%s-labels-seed%d-untrained" % (base, seed))
            run_dir = os.path.join(args.runs, name)
            done = os.path.exists(os.path.join(run_dir, "pretrain.json"))
            if not done:
                resume = args.resume and os.path.exists(os.path.join(run_dir, "progress.json"))
                if not resume and feature == "untrained":
                    shutil.rmtree(run_dir, ignore_errors=True)
                aefx_run(args, args.config, args.set + overrides + ["seed=%d" % seed,
                                                                     "name=" + name],
                         "pretrain", resume)
            encoders[feature] = (run_dir, overrides)
        for per_class in labels:
            head = ["classify.hidden=[]", "classify.labels_per_class=%d" % per_class,
                    "seed=%d" % seed]
            if per_class in LABEL_EPOCHS:
                head.append("classify.epochs=%d" % LABEL_EPOCHS[per_class])
            for feature in FEATURES:
                name = "%s-labels-seed%d-%s-%d" % (base, seed, feature, per_class)
                run_dir = os.path.join(args.runs, name)
                done = os.path.exists(os.path.join(
                    run_dir, "baseline.json" if feature == "pixels" else "metrics.json"))
                if not (args.resume and done):
                    shutil.rmtree(run_dir, ignore_errors=True)
                    src, overrides = encoders["trained" if feature == "pixels" else feature]
                    if feature != "pixels":
                        shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns(
                            "*.pt", "*.png", "report.html", "metrics*", "classify*",
                            "baseline.json", "run.json", "progress.json", "log.txt"))
                        shutil.copytree(os.path.join(src, "checkpoints"),
                                        os.path.join(run_dir, "checkpoints"),
                                        ignore=shutil.ignore_patterns("*_last.pt", "head.pt"),
                                        dirs_exist_ok=True)
                    aefx_run(args, args.config, args.set + overrides + head + [
                        "name=" + name, "report.pictures=false"],
                        "baseline" if feature == "pixels" else "classify,evaluate")
                if feature == "pixels":
                    b = load_json(os.path.join(run_dir, "baseline.json"))
                    linear, knn = b["test_accuracy"], b.get("knn_accuracy")
                else:
                    m = load_json(os.path.join(run_dir, "metrics.json"))
                    linear, knn = m["test_accuracy"], m.get("knn_accuracy")
                rows.append({"seed": seed, "labels_per_class": per_class, "features": feature,
                             "linear_test_accuracy": linear, "knn_test_accuracy": knn})
                print("seed %d  labels/class %-5s %-9s linear %.4f  k-NN %s" % (
                    seed, per_class or "all", feature, linear,
                    "%.4f" % knn if knn is not None else "-"), flush=True)
    out = os.path.join(args.results, "labels-%s.json" % base)
    if args.resume and os.path.exists(out):  # keep the rows of other seeds and label counts
        mine = {(r["seed"], r["labels_per_class"], r["features"]) for r in rows}
        rows = [r for r in load_json(out)["runs"]
                if (r["seed"], r["labels_per_class"], r["features"]) not in mine] + rows
    rows.sort(key=lambda r: (r["seed"], r["labels_per_class"] or 10**9,
                             FEATURES.index(r["features"])))
    table = []
    for per_class in sorted({r["labels_per_class"] for r in rows}, key=lambda x: x or 10**9):
        for feature in FEATURES:
            sel = [r for r in rows if r["labels_per_class"] == per_class and
                   r["features"] == feature]
            table.append({"labels_per_class": per_class, "features": feature,
                          "seeds": [r["seed"] for r in sel],
                          "linear": spread([r["linear_test_accuracy"] for r in sel]),
                          "knn": spread([r["knn_test_accuracy"] for r in sel
                                         if r["knn_test_accuracy"] is not None] or [0.0])})
    r = load_json(os.path.join(encoders["trained"][0], "run.json")) if os.path.exists(
        os.path.join(encoders["trained"][0], "run.json")) else {}
    write_json(out, {
        "config": os.path.relpath(os.path.abspath(args.config), ROOT),
        "overrides": args.set,
        "metric": "test accuracy; linear head (classify.hidden []) and k-NN on the frozen "
                  "features; labels_per_class 0 = all labelled train images",
        "label_epochs": LABEL_EPOCHS,
        "table": table,
        "runs": rows,
        "git_commit": r.get("git_commit"),
        "machine": r.get("machine"),
    })


def cmd_table(args):
    res = args.results
    print("| config | test accuracy, mean ± std (min–max) | seeds | wall per run | peak RSS |"
          " machine |")
    print("|---|---|---|---|---|---|")
    for d in sorted(os.listdir(res)) if os.path.isdir(res) else []:
        path = os.path.join(res, d, "summary.json")
        if not os.path.exists(path):
            continue
        s = load_json(path)
        t, w = s["test_accuracy"], s["wall_seconds"]
        rss = max(load_json(os.path.join(res, d, "seed%d" % x["seed"], "run.json"))
                  ["peak_rss_bytes"] for x in s["runs"])
        print("| `%s` | %.2f%% ± %.2f (%.2f–%.2f) | %s | %.1f min (max %.1f) | %.2f GB |"
              " %s, %d threads |" % (
                  s["config"], 100 * t["mean"], 100 * t["std"], 100 * t["min"], 100 * t["max"],
                  ",".join(str(x["seed"]) for x in s["runs"]), w["mean"] / 60, w["max"] / 60,
                  rss / 1e9, s["machine"]["cpu"] if s["device"] == "cpu" else s["device"],
                  s["threads"]))
    for f in sorted(os.listdir(res)) if os.path.isdir(res) else []:
        if not f.startswith("ablation-"):
            continue
        a = load_json(os.path.join(res, f))
        print("\nAblation of `%s` (%s):\n" % (a["config"], a["metric"]))
        print("| what changes | variant | val accuracy | code length | val PSNR |")
        print("|---|---|---|---|---|")
        for r in a["rows"]:
            print("| %s | %s | %.2f%% | %d | %.2f dB |" % (
                r["group"], r["label"], 100 * r["val_accuracy"], r["code_dim"], r["val_psnr"]))
    for f in sorted(os.listdir(res)) if os.path.isdir(res) else []:
        if not f.startswith("labels-"):
            continue
        a = load_json(os.path.join(res, f))
        print("\nLabel efficiency of `%s` (%s):\n" % (a["config"], a["metric"]))
        print("| labels per class | features | linear head | k-NN | seeds |")
        print("|---|---|---|---|---|")
        for r in a["table"]:
            print("| %s | %s | %.2f%% ± %.2f | %.2f%% ± %.2f | %s |" % (
                r["labels_per_class"] or "all", r["features"], 100 * r["linear"]["mean"],
                100 * r["linear"]["std"], 100 * r["knn"]["mean"], 100 * r["knn"]["std"],
                ",".join(str(x) for x in r["seeds"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["seeds", "ablation", "labels", "table"])
    ap.add_argument("config", nargs="?")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--aefx", default=os.path.join(ROOT, "build", "aefx"))
    ap.add_argument("--runs", default=os.path.join(ROOT, "models", "results"))
    ap.add_argument("--results", default=os.path.join(ROOT, "results"))
    ap.add_argument("--labels", default="10,100,1000,0",
                    help="labels: labelled train images per class, 0 = all (default 10,100,1000,0)")
    ap.add_argument("--rows", help="ablation: the rows to measure, comma-separated (default all: "
                    + ",".join(ABLATION_ROWS) + ")")
    ap.add_argument("--resume", action="store_true",
                    help="continue a stopped run folder, or reuse a finished one (aefx checks "
                    "that its config is the same), instead of starting it again")
    args = ap.parse_args()
    if args.command != "table" and not args.config:
        ap.error(args.command + " needs a CONFIG")
    {"seeds": cmd_seeds, "ablation": cmd_ablation, "labels": cmd_labels,
     "table": cmd_table}[args.command](args)


if __name__ == "__main__":
    main()
