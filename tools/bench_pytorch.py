#!/usr/bin/env python3
"""The same model and measurement as `aefx bench`, written in plain PyTorch, side by side.

    /usr/bin/python3 tools/bench_pytorch.py CONFIG [--set key=value ...] [options]

The config is resolved by `aefx config` (so both sides read exactly the same keys) and the
PyTorch side builds aefx's architecture from it: conv-BN-ReLU encoder stages, a decoder of
nearest-upsample + conv-BN-ReLU stages, multi-scale pooled codes and an MLP head (for
model.type patch: the whitened patch dictionary, its code map pooled by PyTorch's adaptive
pooling; not with --pipeline). It trains it
the way a competent PyTorch user would: the dataset held in memory as one uint8 tensor (on the
GPU on CUDA), batches gathered and augmented on the device, channels-last, AdamW, the thread
count set to the config's `threads` (0 = all cores); on CUDA bf16 autocast, fused AdamW and
cuDNN autotune where the torch version has them.

Rounds alternate `aefx bench` and each PyTorch variant, every measurement in a fresh process,
and the medians and the ratio aefx / PyTorch are printed as JSON, per precision:

  --rounds N        alternations (default 3)
  --variants LIST   comma list from eager, eager-tuned-malloc, compile (default: eager, plus
                    compile where torch has torch.compile). eager-tuned-malloc runs eager
                    PyTorch with the allocator settings aefx applies to itself at start-up.
  --precisions LIST comma list from fp32, bf16, auto (default: the config's `precision`). Both
                    sides run each one: aefx with --set precision=P, PyTorch in fp32 or under
                    torch.autocast(dtype=torch.bfloat16) with fp32 weights and loss, as aefx.
                    auto resolves as aefx does: bf16 on CUDA and on CPUs with avx512_bf16 or
                    amx_bf16, else fp32.
  --pipeline        also time the whole pipeline (every stage) on both sides, once per round
  --steps/--warmup  timed and warm-up pretrain steps (defaults 30 and 5)
  --aefx PATH       the aefx binary (default build/aefx)
  --only VARIANT    run one PyTorch measurement in this process and print its JSON (used by
                    the rounds; handy on its own too, with --precision P)
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The allocator settings aefx applies with mallopt() at start-up (src/util/runtime.cpp).
TUNED_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}


# ---------------------------------------------------------------- config and data


def cpu_has_bf16():
    """As aefx's util::cpu_has_bf16: native bf16 arithmetic in /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_precision(precision, device):
    """fp32 or bf16, as aefx's util::compute_dtype resolves `precision` on `device`."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"


def resolve_config(aefx, config, sets):
    import yaml  # python3-yaml

    cmd = [aefx, "config", config]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return yaml.safe_load(out)


def read_cifar_binary(root, train):
    d = os.path.join(root, "cifar-10-batches-bin")
    d = d if os.path.isdir(d) else root
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    raw = np.concatenate([np.fromfile(os.path.join(d, n), dtype=np.uint8) for n in names])
    raw = raw.reshape(-1, 3073)
    images = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(raw[:, 0].astype(np.int64))


def read_image_folder(root, train, size):
    from PIL import Image  # python3-pil

    d = os.path.join(root, "train" if train else "test")
    classes = sorted(c for c in os.listdir(d) if os.path.isdir(os.path.join(d, c)))
    images, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(d, c))):
            img = Image.open(os.path.join(d, c, f)).convert("RGB").resize((size, size))
            images.append(np.asarray(img).transpose(2, 0, 1))
            labels.append(k)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def load_split(cfg, train):
    data = cfg["data"]
    if data["format"] == "image-folder":
        images, labels = read_image_folder(data["root"], train, data["image_size"])
    else:
        images, labels = read_cifar_binary(data["root"], train)
    limit = data["limit_train"] if train else data["limit_test"]
    if 0 < limit < len(images):
        keep = torch.randperm(len(images))[:limit]
        images, labels = images[keep], labels[keep]
    return images, labels


def train_val(cfg):
    images, labels = load_split(cfg, True)
    perm = torch.randperm(len(images))
    v = cfg["data"]["val_size"]
    return (images[perm[v:]], labels[perm[v:]]), (images[perm[:v]], labels[perm[:v]])


# ---------------------------------------------------------------- the model, as aefx builds it


def conv_bn_relu(cin, cout, stride):
    return [
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class Autoencoder(nn.Module):
    def __init__(self, m, channels=3):
        super().__init__()
        # aefx's frozen whitening stem (model.whiten_patch): fitted by fit_whitening, no gradient.
        k, self.stem = m.get("whiten_patch", 0), None
        if k:
            self.stem = nn.Conv2d(channels, channels * k * k, k, 1, k // 2, bias=False)
            self.stem.requires_grad_(False)
            self.stem_eps = m.get("whiten_eps", 0.1)
            channels *= k * k
        self.encoder = nn.ModuleList()
        c = channels
        for s, (w, b) in enumerate(zip(m["widths"], m["blocks"])):
            layers = []
            for i in range(b):
                layers += conv_bn_relu(c, w, 2 if (i == 0 and s > 0) else 1)
                c = w
            self.encoder.append(nn.Sequential(*layers))
        decoder = []
        for s in range(len(m["widths"]) - 1, 0, -1):
            w = max(1, int(m["widths"][s - 1] * m["decoder_width"] + 0.5))
            decoder += [nn.Upsample(scale_factor=2.0, mode="nearest")] + conv_bn_relu(c, w, 1)
            c = w
            for _ in range(1, m["decoder_blocks"]):
                decoder += conv_bn_relu(c, c, 1)
        decoder.append(nn.Conv2d(c, channels, 3, 1, 1))
        self.decoder = nn.Sequential(*decoder)

    def fit_whitening(self, normalized):
        """aefx's AutoencoderImpl::fit_whitening: ZCA of the k x k patches' second moment."""
        if self.stem is None:
            return
        k, d = self.stem.kernel_size[0], self.stem.out_channels
        moment, count = torch.zeros(d, d, dtype=torch.double), 0
        for i in range(0, len(normalized), 256):
            p = F.unfold(normalized[i : i + 256].float(), k).transpose(1, 2).reshape(-1, d)
            moment += (p.T @ p).double()
            count += len(p)
        lam, u = torch.linalg.eigh(moment / count)
        lam = lam.clamp_min(0)
        w = u @ torch.diag((lam + self.stem_eps * lam.mean()).rsqrt()) @ u.T
        self.stem.weight.data.copy_(w.float().reshape(self.stem.weight.shape))

    def target(self, x):
        return x if self.stem is None else self.stem(x)

    def stages(self, x):
        x = self.target(x)
        outs = []
        for stage in self.encoder:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x):
        return self.decoder(self.stages(x)[-1])


class PatchAutoencoder(nn.Module):
    """aefx's model.type patch: behind the frozen whitening stem, unit atoms respond to every
    whole whitened patch (optionally scaled by the patch's gain), the code map is the split
    sign of the responses above the threshold, and the tied decoder rebuilds each position from
    its strongest atom alone (the border stays zero)."""

    def __init__(self, m, channels=3):
        super().__init__()
        k = m["whiten_patch"]
        d = channels * k * k
        self.border, self.threshold = k // 2, m["threshold"]
        self.stem = nn.Conv2d(channels, d, k, 1, k // 2, bias=False)
        self.stem.requires_grad_(False)
        self.stem_eps = m.get("whiten_eps", 0.1)
        self.atoms = nn.Parameter(F.normalize(torch.randn(m["atoms"], d), dim=1))
        self.energy = 1.0 if m.get("normalize_patches") else None

    def fit_whitening(self, normalized):
        Autoencoder.fit_whitening(self, normalized)
        if self.energy is not None:  # the whitened patches' mean squared norm (about d)
            k, d = self.stem.kernel_size[0], self.stem.out_channels
            p = F.unfold(normalized[:256].float(), k).transpose(1, 2).reshape(-1, d)
            self.energy = (p @ self.stem.weight.reshape(d, d).T).square().sum(1).mean().item()

    def target(self, x):
        return self.stem(x)

    def flops(self, size):
        """As aefx's PatchAutoencoderImpl::flops: the stem, every atom at every whole patch,
        each position's squared norm, one atom a position in the decoder."""
        d, side = self.stem.out_channels, size - 2 * self.border
        norm = 2 if self.energy is not None else 1
        return 2 * d * d * size * size + 2 * len(self.atoms) * d * side * side + 2 * d * side * side * norm

    def responses(self, x):
        b = self.border
        w = self.stem(x)
        w = w[:, :, b : w.shape[2] - b, b : w.shape[3] - b]
        s = F.conv2d(w, F.normalize(self.atoms, dim=1)[:, :, None, None])
        if self.energy is not None:
            e = self.energy
            s = s * ((w.float().square().sum(1, keepdim=True) + e) / (2 * e)).rsqrt()
        return s

    def stages(self, x):
        s = self.responses(x)
        return [torch.cat([F.relu(s - self.threshold), F.relu(-s - self.threshold)], 1)]

    def forward(self, x):
        s = self.responses(x)
        winner = s.abs().argmax(1, keepdim=True)
        value = s.gather(1, winner)
        d = F.normalize(self.atoms, dim=1)
        n, _, h, w = s.shape
        patches = d.index_select(0, winner.flatten()).view(n, h, w, -1).permute(0, 3, 1, 2)
        b = self.border
        return F.pad(patches * value.to(patches.dtype), (b, b, b, b))


def make_autoencoder(m, channels):
    return PatchAutoencoder(m, channels) if m.get("type", "conv") == "patch" else Autoencoder(m, channels)


def pool_codes(stages, grids, pooling="avg"):
    """aefx's codes: per used stage the average cells, then (max, avgmax) the max cells."""
    parts = []
    for f, g in zip(stages, grids):
        if not g:
            continue
        if pooling != "max":
            parts.append(F.adaptive_avg_pool2d(f, g).contiguous().flatten(1))
        if pooling != "avg":
            parts.append(F.adaptive_max_pool2d(f, g).contiguous().flatten(1))
    return torch.cat(parts, 1)


def make_head(in_dim, hidden, dropout, classes):
    layers, c = [], in_dim
    for h in hidden:
        layers += ([nn.Dropout(dropout)] if dropout > 0 else []) + [nn.Linear(c, h), nn.ReLU(True)]
        c = h
    layers += ([nn.Dropout(dropout)] if dropout > 0 else []) + [nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def conv_flops_per_image(model, channels, size):
    """Forward FLOPs (2 x multiply-adds) of every conv and linear layer, from a real forward."""
    total = [0]

    def hook(mod, inp, out):
        k = mod.weight[0].numel()  # in/groups x kh x kw, or in_features
        total[0] += 2 * k * out[0].numel()

    handles = [
        mod.register_forward_hook(hook)
        for mod in model.modules()
        if isinstance(mod, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        was = model.training
        model.eval()
        model(torch.zeros(1, channels, size, size))
        model.train(was)
    for h in handles:
        h.remove()
    return total[0]


# ---------------------------------------------------------------- the training steps


def to_float(images, device):
    return (
        images.to(device, non_blocking=True)
        .float()
        .div_(255.0)
        .contiguous(memory_format=torch.channels_last)
    )


def augment(x, pad):
    b, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), device=x.device)
        ox = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), device=x.device)
        rows = (oy + torch.arange(h, device=x.device).view(1, 1, h, 1)).expand(b, c, h, w + 2 * pad)
        cols = (ox + torch.arange(w, device=x.device).view(1, 1, 1, w)).expand(b, c, h, w)
        x = padded.gather(2, rows).gather(3, cols)
    flip = torch.rand(b, 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(3), x).contiguous(memory_format=torch.channels_last)


def corrupt(x, ratio, patch, noise):
    if ratio > 0:
        b, _, h, w = x.shape
        gh, gw = -(-h // patch), -(-w // patch)
        keep = (torch.rand(b, 1, gh, gw, device=x.device) >= ratio).to(x.dtype)
        keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
        x = x * keep[:, :, :h, :w]
    if noise > 0:
        x = x + torch.randn_like(x) * noise
    return x


def cosine_lr(base, step, total):
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))


class Pipeline:
    """One PyTorch variant of the aefx pipeline on one device."""

    def __init__(self, cfg, variant, precision):
        self.cfg, self.variant = cfg, variant
        torch.manual_seed(cfg["seed"])
        threads = cfg["threads"] or os.cpu_count()
        torch.set_num_threads(threads)
        dev = cfg["device"]
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.precision = resolve_precision(precision, self.device)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def autocast(self):
        """bf16 autocast around the forward passes (fp32 weights, optimizer state and loss)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def build_pretrain(self, images):
        p = self.cfg["pretrain"]
        x = images.double().div(255.0)
        mean = x.mean((0, 2, 3)).float().view(1, -1, 1, 1).to(self.device)
        std = x.std((0, 2, 3), unbiased=False).clamp_min(1e-6).float().view(1, -1, 1, 1)
        self.mean, self.std = mean, std.to(self.device)
        self.ae = make_autoencoder(self.cfg["model"], images.shape[1])
        step_ = max(1, len(images) // 10000)  # as aefx's fit_stem: kStemImages, every step-th
        self.ae.fit_whitening((images[: step_ * 10000 : step_].float().div(255.0) - mean.cpu()) / std.cpu())
        self.ae = self.ae.to(self.device, memory_format=torch.channels_last).train()
        kwargs = {"lr": p["lr"], "weight_decay": p["weight_decay"]}
        if self.cuda and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames:
            kwargs["fused"] = True
        self.opt = torch.optim.AdamW(self.ae.parameters(), **kwargs)
        self.images = images.to(self.device)

        def step(idx):
            x = to_float(self.images.index_select(0, idx), self.device)
            if p["augment"]:
                x = augment(x, p["crop_padding"])
            clean = (x - self.mean) / self.std
            inp = corrupt(clean, p["mask_ratio"], p["mask_patch"], p["noise"])
            target = self.ae.target(clean)  # in fp32, as aefx
            with self.autocast():
                loss = F.mse_loss(self.ae(inp).float(), target)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            return loss.detach()

        self.step = torch.compile(step) if self.variant == "compile" else step

    def set_lr(self, lr):
        for g in self.opt.param_groups:
            g["lr"] = lr

    def codes(self, images, grids, batch, flip=False):
        self.ae.eval()
        out = []
        with torch.no_grad(), self.autocast():
            for i in range(0, len(images), batch):
                x = to_float(images[i : i + batch], self.device)
                if flip:
                    x = x.flip(3)
                feats = self.ae.stages((x - self.mean) / self.std)
                out.append(pool_codes(feats, grids, self.cfg["classify"]["pooling"]).float())
        return torch.cat(out)

    def head_epochs(self, codes, labels, val_codes, val_labels, epochs):
        c = self.cfg["classify"]
        classes = int(labels.max()) + 1
        head = make_head(codes.shape[1], c["hidden"], c["dropout"], classes).to(self.device)
        cm, cs = codes.mean(0), codes.std(0).clamp_min(1e-6)
        opt = torch.optim.AdamW(head.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
        n, batch = len(codes), min(c["batch_size"], len(codes))
        steps = n // batch
        best, best_state, seconds = -1.0, None, []
        for e in range(epochs):
            t0 = time.perf_counter()
            head.train()
            perm = torch.randperm(n, device=self.device)
            for s in range(steps):
                lr = cosine_lr(c["lr"], e * steps + s, epochs * steps)
                for g in opt.param_groups:
                    g["lr"] = lr
                idx = perm[s * batch : (s + 1) * batch]
                with self.autocast():
                    out = head((codes.index_select(0, idx) - cm) / cs)
                loss = F.cross_entropy(out.float(), labels.index_select(0, idx), label_smoothing=c["label_smoothing"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            head.eval()
            with torch.no_grad(), self.autocast():
                acc = (head((val_codes - cm) / cs).argmax(1) == val_labels).float().mean().item()
            if acc > best:
                best = acc
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            self.sync()
            seconds.append(time.perf_counter() - t0)
        head.load_state_dict(best_state)
        return head, (cm, cs), best, seconds


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(cfg, variant, precision, steps, warmup):
    """The pieces `aefx bench` times, on the same data and sizes."""
    pl = Pipeline(cfg, variant, precision)
    (train, _), _ = train_val(cfg)
    p, c = cfg["pretrain"], cfg["classify"]
    pl.build_pretrain(train)
    batch = min(p["batch_size"], len(train))
    n = len(train)
    if isinstance(pl.ae, PatchAutoencoder):  # its atoms are not a module the hooks see
        flops = pl.ae.flops(train.shape[2])
    else:
        flops = conv_flops_per_image(pl.ae, train.shape[1], train.shape[2])
    perm = torch.randperm(n, device=pl.device)
    times = []
    for s in range(warmup + steps):
        i = (s * batch) % (n - batch + 1)
        t0 = time.perf_counter()
        pl.step(perm[i : i + batch])
        pl.sync()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    ips = batch / step_s

    m = min(n, max(2 * c["code_batch_size"], 2000))
    pl.codes(train[:m], c["pool_grids"], c["code_batch_size"])  # warm-up
    pl.sync()
    t0 = time.perf_counter()
    codes = pl.codes(train[:m], c["pool_grids"], c["code_batch_size"])
    pl.sync()
    code_ips = m / (time.perf_counter() - t0)

    # One head epoch over as many codes as classify trains on (flips and copies add to them).
    rows = n * ((2 if c["flip_codes"] else 1) + c.get("augmented_copies", 0))
    big = codes.repeat(-(-rows // m), 1)[:rows]
    labels = torch.randint(0, 10, (rows,), device=pl.device)
    _, _, _, secs = pl.head_epochs(big, labels, big[:1000], labels[:1000], 2)
    out = {
        "variant": variant,
        "precision": pl.precision,
        "torch": torch.__version__,
        "device": str(pl.device),
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "pretrain_images_per_second": ips,
        "pretrain_step_ms": step_s * 1e3,
        "forward_flops_per_image": flops,
        "train_flops_per_image": 3 * flops,
        "achieved_gflops": 3 * flops * ips / 1e9,
        "code_images_per_second": code_ips,
        "head_epoch_seconds": secs[-1],
        "peak_rss_bytes": peak_rss_bytes(),
    }
    if pl.cuda:
        out["device_peak_bytes"] = torch.cuda.max_memory_allocated()
    return out


def run_pipeline(cfg, variant, precision):
    """Every stage of the config, as aefx runs it: pretrain (with validation and a checkpoint
    each epoch), codes + head (best epoch on validation), evaluate on test, export."""
    t_start = time.perf_counter()
    pl = Pipeline(cfg, variant, precision)
    (train, train_labels), (val, val_labels) = train_val(cfg)
    p, c = cfg["pretrain"], cfg["classify"]
    pl.build_pretrain(train)
    n, batch = len(train), min(p["batch_size"], len(train))
    steps = n // batch
    out_dir = tempfile.mkdtemp(prefix="aefx-torch-")
    for e in range(p["epochs"]):
        pl.ae.train()
        perm = torch.randperm(n, device=pl.device)
        losses = []
        for s in range(steps):
            pl.set_lr(cosine_lr(p["lr"], e * steps + s, p["epochs"] * steps))
            losses.append(pl.step(perm[s * batch : (s + 1) * batch]))
        torch.stack(losses).mean().item()
        pl.ae.eval()
        with torch.no_grad(), pl.autocast():
            for i in range(0, len(val), cfg["evaluate"]["batch_size"]):
                x = to_float(val[i : i + cfg["evaluate"]["batch_size"]], pl.device)
                ((pl.ae((x - pl.mean) / pl.std) * pl.std + pl.mean).clamp(0, 1) - x).pow(2).sum()
        torch.save({"model": pl.ae.state_dict(), "opt": pl.opt.state_dict()}, os.path.join(out_dir, "last.pt"))
    t_pretrain = time.perf_counter()

    for prm in pl.ae.parameters():
        prm.requires_grad_(False)
    grids, cb = c["pool_grids"], c["code_batch_size"]
    codes = pl.codes(train, grids, cb)
    labels = train_labels.to(pl.device)
    if c["flip_codes"]:
        codes = torch.cat([codes, pl.codes(train, grids, cb, flip=True)])
        labels = torch.cat([labels, labels])
    val_codes = pl.codes(val, grids, cb)
    head, (cm, cs), best, _ = pl.head_epochs(codes, labels, val_codes, val_labels.to(pl.device), c["epochs"])
    t_classify = time.perf_counter()

    test, test_labels = load_split(cfg, False)
    test_codes = pl.codes(test, grids, cfg["evaluate"]["batch_size"])
    with torch.no_grad(), pl.autocast():
        acc = (head((test_codes - cm) / cs).argmax(1).cpu() == test_labels).float().mean().item()
    t_eval = time.perf_counter()

    encoder = torch.jit.trace(nn.Sequential(*pl.ae.encoder).cpu().eval(), torch.zeros(1, 3, 32, 32))
    encoder.save(os.path.join(out_dir, "encoder.pt"))
    t_end = time.perf_counter()
    return {
        "variant": variant,
        "pipeline_seconds": t_end - t_start,
        "pretrain_seconds": t_pretrain - t_start,
        "classify_seconds": t_classify - t_pretrain,
        "evaluate_seconds": t_eval - t_classify,
        "export_seconds": t_end - t_eval,
        "val_accuracy": best,
        "test_accuracy": acc,
        "peak_rss_bytes": peak_rss_bytes(),
    }


# ---------------------------------------------------------------- rounds and ratios


def run_json(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"bench_pytorch: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--aefx", default="build/aefx")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="")
    ap.add_argument("--precisions", default="")
    ap.add_argument("--precision", default="", help=argparse.SUPPRESS)  # with --only
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--only", default="")
    a = ap.parse_args()

    cfg = resolve_config(a.aefx, a.config, a.sets)
    kind = cfg["model"].get("type", "conv")
    if kind not in ("conv", "patch") or (kind == "patch" and a.pipeline):
        sys.exit("bench_pytorch.py: builds conv and (without --pipeline) patch autoencoders, "
                 "not model.type %s%s" % (kind, " with --pipeline" if kind == "patch" else ""))
    if a.only:
        precision = a.precision or cfg["precision"]
        if a.pipeline:
            res = run_pipeline(cfg, a.only, precision)
        else:
            res = measure(cfg, a.only, precision, a.steps, a.warmup)
        print(json.dumps(res))
        return

    variants = a.variants.split(",") if a.variants else ["eager"] + (["compile"] if hasattr(torch, "compile") else [])
    for v in variants:
        if v not in ("eager", "eager-tuned-malloc", "compile"):
            sys.exit(f"bench_pytorch: unknown variant '{v}' (eager, eager-tuned-malloc, compile)")
        if v == "compile" and not hasattr(torch, "compile"):
            sys.exit(f"bench_pytorch: torch {torch.__version__} has no torch.compile")
    precisions = a.precisions.split(",") if a.precisions else [cfg["precision"]]
    for p in precisions:
        if p not in ("auto", "fp32", "bf16"):
            sys.exit(f"bench_pytorch: unknown precision '{p}' (auto, fp32, bf16)")
    sets = sum((["--set", s] for s in a.sets), [])
    me = [sys.executable, os.path.abspath(__file__), a.config, "--aefx", a.aefx] + sets
    timing = ["--steps", str(a.steps), "--warmup", str(a.warmup)]
    # results[precision][who]: one JSON per round.
    results = {p: {w: [] for w in ["aefx"] + variants} for p in precisions}
    for r in range(a.rounds):
        # Alternate the order each round so neither side always runs on a warmer machine.
        order = [(p, w) for p in precisions for w in ["aefx"] + variants]
        for p, who in order if r % 2 == 0 else order[::-1]:
            if who == "aefx":
                cmd = [a.aefx, "bench", a.config] + timing + sets + ["--set", f"precision={p}"]
                res = run_json(cmd + (["--pipeline"] if a.pipeline else []))
                res.update({k: v for k, v in res.get("pipeline", {}).items() if k != "stage_seconds"})
            else:
                env = dict(os.environ, **(TUNED_MALLOC_ENV if who == "eager-tuned-malloc" else {}))
                mine = me + ["--only", who, "--precision", p]
                res = run_json(mine + timing, env)
                if a.pipeline:
                    res.update(run_json(mine + ["--pipeline"], env))
            results[p][who].append(res)
            print(f"round {r + 1}/{a.rounds}: {who} {p} done", file=sys.stderr)

    summary = {"config": a.config, "sets": a.sets, "rounds": a.rounds, "torch": torch.__version__}
    for p in precisions:
        summary[p] = summarize(results[p], variants, a.pipeline)
    if "fp32" in results and "bf16" in results:
        summary["aefx_bf16_over_fp32"] = {
            key: pairwise(results["bf16"]["aefx"], results["fp32"]["aefx"], key)
            for key in ("pretrain_images_per_second", "code_images_per_second")
        }
        summary["aefx_bf16_over_fp32"]["head_epoch_speedup"] = pairwise(
            results["fp32"]["aefx"], results["bf16"]["aefx"], "head_epoch_seconds"
        )
    print(json.dumps(summary, indent=2))


def median_of(runs, key):
    vals = [x[key] for x in runs if x.get(key) is not None]
    return statistics.median(vals) if vals else None


def pairwise(xs, ys, key):
    """x / y round by round (each pair ran in the same round), then the median."""
    pairs = [x[key] / y[key] for x, y in zip(xs, ys) if x.get(key) and y.get(key)]
    return statistics.median(pairs) if pairs else None


def summarize(results, variants, pipeline):
    """Medians per side and the aefx / PyTorch ratios, for one precision."""
    ae = results["aefx"]
    aefx_ips = median_of(ae, "pretrain_images_per_second")
    out = {"aefx": {
        "precision": ae[-1].get("precision"),
        "pretrain_images_per_second": aefx_ips,
        "achieved_gflops": median_of(ae, "achieved_gflops"),
        "code_images_per_second": median_of(ae, "code_images_per_second"),
        "head_epoch_seconds": median_of(ae, "head_epoch_seconds"),
        "pipeline_seconds": median_of(ae, "pipeline_seconds"),
        "stage_seconds": ae[-1].get("pipeline", {}).get("stage_seconds"),
        "test_accuracy": median_of(ae, "test_accuracy"),
        "pipeline_peak_rss_bytes": median_of(ae, "pipeline_peak_rss_bytes"),
        "peak_rss_bytes": median_of(ae, "peak_rss_bytes"),
        "matmul_peak_gflops": median_of(ae, "matmul_peak_gflops"),
        "forward_flops_per_image": median_of(ae, "forward_flops_per_image"),
        "all_pretrain_images_per_second": [x["pretrain_images_per_second"] for x in ae],
    }}
    for v in variants:
        rv = results[v]
        ips = median_of(rv, "pretrain_images_per_second")
        row = {
            "precision": rv[-1].get("precision"),
            "pretrain_images_per_second": ips,
            "all_pretrain_images_per_second": [x["pretrain_images_per_second"] for x in rv],
            "code_images_per_second": median_of(rv, "code_images_per_second"),
            "head_epoch_seconds": median_of(rv, "head_epoch_seconds"),
            "forward_flops_per_image": median_of(rv, "forward_flops_per_image"),
            "pretrain_ratio_aefx_over_pytorch": aefx_ips / ips,
            "pretrain_ratio_pairwise_median": pairwise(ae, rv, "pretrain_images_per_second"),
            "pretrain_ratio_pairwise": [
                x["pretrain_images_per_second"] / y["pretrain_images_per_second"] for x, y in zip(ae, rv)
            ],
            "code_ratio_pairwise_median": pairwise(ae, rv, "code_images_per_second"),
            "head_epoch_speedup_pairwise_median": pairwise(rv, ae, "head_epoch_seconds"),
        }
        if pipeline:
            row["pipeline_seconds"] = median_of(rv, "pipeline_seconds")
            row["stage_seconds"] = {k: median_of(rv, k + "_seconds") for k in ("pretrain", "classify", "evaluate", "export")}
            row["pipeline_peak_rss_bytes"] = rv[-1].get("peak_rss_bytes")
            row["test_accuracy"] = median_of(rv, "test_accuracy")
            row["pipeline_wall_ratio_aefx_over_pytorch"] = out["aefx"]["pipeline_seconds"] / row["pipeline_seconds"]
        out[v] = row
    return out


if __name__ == "__main__":
    main()
