#!/usr/bin/python3
"""torch_unet.py - the PyTorch side of tests/bench/segment_bench.sh: the U-Net of
sd_unet_build (src/train/unet.c) rebuilt from a stemdefect model file, with its weights, so
the same network runs in both engines.

  torch_unet.py --model unet.h5 [--check stack.h5 heatmaps.h5] [--threads T] [--reps R]

--check: runs the network on the stack's images (robust z-score per image, as `segment`)
and compares the softmax with the heatmaps `segment` wrote (max |difference| printed and
required < 1e-3). Then times eval-mode forward + softmax of a batch of 16 64x64 images under
torch.no_grad() (median of R repeats of at least --min-time s) and prints

  PARAMS unet <trainable scalars>
  RESULT unet infer <batch> <threads> <median img/s> <img/s of each repeat...>
"""
import argparse
import re
import statistics
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_arch(text):
    """Layers of sd_nn_model_describe: list of (kind, name, inputs, attrs)."""
    layers = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] in ("input", "output"):
            continue
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        layers.append((parts[0], kv.get("name"), [int(v) for v in kv.get("in", "").split(",") if v], kv))
    return layers


class Net(nn.Module):
    """Runs the described graph (conv2d, conv_transpose2d, batchnorm, relu, maxpool, dropout,
    concat) with torch modules named as our layers."""

    def __init__(self, layers, params, buffers):
        super().__init__()
        self.layers = layers
        self.mods = nn.ModuleDict()
        for kind, name, ins, kv in layers:
            if kind in ("conv2d", "conv_transpose2d"):
                w = params[name + ".weight"]
                b = params.get(name + ".bias")
                k, s, p = int(kv.get("k", 3)), int(kv.get("stride", 1)), int(kv.get("pad", 0))
                if kind == "conv2d":
                    mod = nn.Conv2d(w.shape[1], w.shape[0], k, s, p, bias=b is not None)
                else:
                    mod = nn.ConvTranspose2d(w.shape[0], w.shape[1], k, s, p, bias=b is not None)
                mod.weight.data = torch.from_numpy(w)
                if b is not None:
                    mod.bias.data = torch.from_numpy(b)
            elif kind == "batchnorm":
                g = params[name + ".weight"] if name + ".weight" in params else params[name + ".gamma"]
                mod = nn.BatchNorm2d(g.shape[0], eps=float(kv.get("eps", 1e-5)))
                mod.weight.data = torch.from_numpy(g)
                mod.bias.data = torch.from_numpy(params[name + ".bias"] if name + ".bias" in params else params[name + ".beta"])
                mod.running_mean.data = torch.from_numpy(buffers[name + ".running_mean"])
                mod.running_var.data = torch.from_numpy(buffers[name + ".running_var"])
            else:
                continue
            self.mods[name] = mod

    def forward(self, x):
        outs = [x]
        for kind, name, ins, kv in self.layers:
            a = outs[ins[0]]
            if kind in ("conv2d", "conv_transpose2d", "batchnorm"):
                y = self.mods[name](a)
            elif kind == "relu":
                y = F.relu(a)
            elif kind == "maxpool":
                y = F.max_pool2d(a, int(kv.get("k", 2)), int(kv.get("stride", 2)))
            elif kind == "dropout":
                y = a  # eval mode
            elif kind == "concat":
                y = torch.cat([a, outs[ins[1]]], dim=1)
            else:
                raise SystemExit(f"torch_unet.py: layer kind {kind} not supported")
            outs.append(y)
        return outs[-1]


def load(path):
    f = h5py.File(path, "r")
    arch = f["model"].attrs["architecture"]
    arch = arch.decode() if isinstance(arch, bytes) else arch
    params = {k: np.ascontiguousarray(v[...], dtype=np.float32) for k, v in f["params"].items()}
    buffers = {k: np.ascontiguousarray(v[...], dtype=np.float32) for k, v in f["buffers"].items()}
    return Net(parse_arch(arch), params, buffers).eval()


def robust(x):
    med = np.median(x)
    mad = np.median(np.abs(x - med))
    s = 1.4826 * mad
    if not s > 1e-12:
        s = x.std() if x.std() > 1e-12 else 1.0
    return ((x - med) * np.float32(1.0 / s)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--check", nargs=2, metavar=("STACK", "HEATMAPS"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if torch.get_num_threads() != a.threads:
        sys.exit(f"torch_unet.py: asked for {a.threads} threads, torch uses {torch.get_num_threads()}")
    net = load(a.model)
    if a.check:
        imgs = h5py.File(a.check[0], "r")["images"][: a.batch].astype(np.float32)
        x = torch.from_numpy(np.stack([robust(i) for i in imgs])[:, None])
        with torch.no_grad():
            p = F.softmax(net(x), dim=1).numpy()
        q = h5py.File(a.check[1], "r")["heatmaps"][: a.batch]
        err = float(np.max(np.abs(p - q)))
        print(f"CHECK max_abs_diff {err:.3g}")
        if not err < 1e-3:
            sys.exit(f"torch_unet.py: PyTorch and stemdefect heatmaps differ by {err}")
    g = torch.Generator().manual_seed(7)
    x = torch.rand(a.batch, 1, 64, 64, generator=g) * 2 - 1

    def step():
        with torch.no_grad():
            F.softmax(net(x), dim=1)

    for _ in range(2):
        step()
    ips = []
    for _ in range(a.reps):
        it, t0 = 0, time.perf_counter()
        while True:
            step()
            it += 1
            dt = time.perf_counter() - t0
            if dt >= a.min_time:
                break
        ips.append(it * a.batch / dt)
    print(f"PARAMS unet {sum(p.numel() for p in net.parameters())}")
    print(f"RESULT unet infer {a.batch} {a.threads} {statistics.median(ips):.2f} " + " ".join(f"{v:.2f}" for v in ips))


if __name__ == "__main__":
    main()
