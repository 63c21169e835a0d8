#!/usr/bin/python3
"""torch_train.py - the PyTorch side of tests/bench/train_throughput: the same classifier and
reference U-Net as bench_train.c, timed the same way (warm-up, then repeats of at least
--min-time seconds each, median), printed in the same records:

  PARAMS <model> <trainable scalars>
  RESULT <model> <train|infer> <batch> <threads> <median img/s> <img/s of each repeat...>

Training step = zero_grad + forward (train mode) + cross-entropy + backward + AdamW step;
inference = eval-mode forward under torch.no_grad(). Float32, NCHW, CPU.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, k, stride):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]


class Block(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + identity or 1x1 conv+BN projection, then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU(),
                                  *conv_bn(cout, cout, 3, 1))
        self.skip = (nn.Sequential(*conv_bn(cin, cout, 1, stride))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class Classifier(nn.Module):
    """sd_classifier_build(width, stages, blocks, dropout, classes) of src/train/trainer.c."""

    def __init__(self, width=16, stages=3, blocks=1, dropout=0.1, classes=7):
        super().__init__()
        layers = [*conv_bn(1, width, 3, 1), nn.ReLU()]
        ch = width
        for s in range(stages):
            for b in range(blocks):
                first = s > 0 and b == 0
                och = ch * 2 if first else ch
                layers.append(Block(ch, och, 2 if first else 1))
                ch = och
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(ch, classes)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(self.drop(x))


def conv_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU())


class UNet(nn.Module):
    """2x conv3x3 32 -> pool -> 2x conv3x3 64 -> pool -> conv3x3 128 -> up, concat 64-skip,
    conv3x3 64 -> up, concat 32-skip, conv3x3 32 -> conv1x1 8 (ReLU after every 3x3 conv)."""

    def __init__(self):
        super().__init__()
        self.e1 = nn.Sequential(conv_relu(1, 32), conv_relu(32, 32))
        self.e2 = nn.Sequential(conv_relu(32, 64), conv_relu(64, 64))
        self.mid = conv_relu(64, 128)
        self.d2 = conv_relu(128 + 64, 64)
        self.d1 = conv_relu(64 + 32, 32)
        self.out = nn.Conv2d(32, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        s1 = self.e1(x)
        s2 = self.e2(self.pool(s1))
        m = self.mid(self.pool(s2))
        d2 = self.d2(torch.cat([self.up(m), s2], 1))
        d1 = self.d1(torch.cat([self.up(d2), s1], 1))
        return self.out(d1)


def time_steps(step, batch, warmup, reps, min_time):
    for _ in range(warmup):
        step()
    ips = []
    for _ in range(reps):
        iters, t0 = 0, time.perf_counter()
        while True:
            step()
            iters += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        ips.append(iters * batch / dt)
    return ips


def bench(name, model, batch, classes, per_pixel, threads, reps, min_time):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(batch, 1, 64, 64, generator=g) * 2 - 1
    shape = (batch, 64, 64) if per_pixel else (batch,)
    y = torch.randint(0, classes, shape, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name}: loss is not finite")

    def infer_step():
        with torch.no_grad():
            model(x)

    model.train()
    tr = time_steps(train_step, batch, 2, reps, min_time)
    model.eval()
    inf = time_steps(infer_step, batch, 2, reps, min_time)
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"PARAMS {name} {nparams}")
    for pass_, v in (("train", tr), ("infer", inf)):
        vals = " ".join(f"{a:.2f}" for a in v)
        print(f"RESULT {name} {pass_} {batch} {threads} {statistics.median(v):.2f} {vals}")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--only", choices=["all", "classifier", "unet"], default="all")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    if torch.get_num_threads() != a.threads:
        sys.exit(f"torch_train.py: asked for {a.threads} threads, torch uses "
                 f"{torch.get_num_threads()}")
    print(f"# torch {torch.__version__} threads {torch.get_num_threads()} "
          f"mkldnn {torch.backends.mkldnn.is_available()}")
    if a.only in ("all", "classifier"):
        bench("classifier", Classifier(), 64, 7, False, a.threads, a.reps, a.min_time)
    if a.only in ("all", "unet"):
        bench("unet", UNet(), 16, 8, True, a.threads, a.reps, a.min_time)


if __name__ == "__main__":
    main()
