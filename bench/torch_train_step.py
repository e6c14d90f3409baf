"""The Mixed Barlow Twins training step of the original main.py in PyTorch, timed.

Called by `mixbt bench train` (as a `--serve` subprocess, when `python3` can import torch) so that
both sides are measured in the same run on the same machine, in alternating rounds. Prints one
JSON object per case.

The step: two views + the mixed batch through `Model` (ResNet-18, CIFAR stem, projector
512-512-1024, train mode), the Barlow Twins loss with the mixed regulariser exactly as main.py,
backward, Adam(lr 1e-3, weight_decay 1e-6). Inputs are random 32x32 images.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class Model(nn.Module):
    def __init__(self, feature_dim=1024):
        super().__init__()
        f = []
        for name, module in torchvision.models.resnet18().named_children():
            if name == "conv1":
                module = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            if not isinstance(module, nn.Linear) and not isinstance(module, nn.MaxPool2d):
                f.append(module)
        self.f = nn.Sequential(*f)
        self.g = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, feature_dim, bias=True))

    def forward(self, x):
        x = self.f(x)
        feature = torch.flatten(x, start_dim=1)
        out = self.g(feature)
        return F.normalize(feature, dim=-1), F.normalize(out, dim=-1)


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def step(net, opt, pos_1, pos_2, lmbda=0.0078125, scale=4.0, amp=False):
    """One Mixed BT step; with `amp`, the network's forward passes run under
    `torch.autocast(device, torch.bfloat16)` and the loss in FP32 (mixbt's `precision: bf16`)."""
    bs = pos_1.shape[0]

    def net_fp32(x):
        if not amp:
            return net(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            f, out = net(x)
        return f.float(), out.float()

    _, out_1 = net_fp32(pos_1)
    _, out_2 = net_fp32(pos_2)
    out_1_norm = (out_1 - out_1.mean(dim=0)) / out_1.std(dim=0)
    out_2_norm = (out_2 - out_2.mean(dim=0)) / out_2.std(dim=0)
    c = torch.matmul(out_1_norm.T, out_2_norm) / bs
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = off_diagonal(c).pow_(2).sum()
    loss_bt = on_diag + lmbda * off_diag
    index = torch.randperm(bs)
    alpha = np.random.beta(1.0, 1.0)
    pos_m = alpha * pos_1 + (1 - alpha) * pos_2[index, :]
    _, out_m = net_fp32(pos_m)
    out_m_norm = (out_m - out_m.mean(dim=0)) / out_m.std(dim=0)
    cc_m_1 = torch.matmul(out_m_norm.T, out_1_norm) / bs
    cc_m_1_gt = alpha * torch.matmul(out_1_norm.T, out_1_norm) / bs + (1 - alpha) * torch.matmul(out_2_norm[index, :].T, out_1_norm) / bs
    cc_m_2 = torch.matmul(out_m_norm.T, out_2_norm) / bs
    cc_m_2_gt = alpha * torch.matmul(out_1_norm.T, out_2_norm) / bs + (1 - alpha) * torch.matmul(out_2_norm[index, :].T, out_2_norm) / bs
    loss_mix = scale * lmbda * ((cc_m_1 - cc_m_1_gt).pow_(2).sum() + (cc_m_2 - cc_m_2_gt).pow_(2).sum())
    loss = loss_bt + loss_mix
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


class Bench:
    """The model, optimiser and inputs, kept between requests."""

    def __init__(self, device="cpu"):
        torch.manual_seed(0)
        np.random.seed(0)
        self.device = torch.device(device)
        self.net = Model().to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, weight_decay=1e-6)
        self.inputs = {}

    def _input(self, key, bs):
        if (key, bs) not in self.inputs:
            self.inputs[(key, bs)] = torch.randn(bs, 3, 32, 32).to(self.device)
        return self.inputs[(key, bs)]

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, case, bs, steps, warmup):
        """`warmup` untimed then `steps` timed training steps ("train") or embedding batches."""
        amp = case.endswith("-bf16")
        if case in ("train", "train-bf16"):
            self.net.train()
            x1, x2 = self._input("a", bs), self._input("b", bs)

            def run():
                step(self.net, self.opt, x1, x2, amp=amp)
        elif case in ("embed", "embed-bf16"):
            self.net.eval()
            x = self._input("a", bs)

            def run():
                with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                    self.net(x)
        else:
            raise ValueError(f"unknown case {case!r}")
        for _ in range(warmup):
            run()
        self._sync()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            run()
            self._sync()
            times.append(time.perf_counter() - t)
        med = float(np.median(times))
        return {"case": case, "batch": bs, "median_s": med, "images_per_s": bs / med, "times": times,
                "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(self.device)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--embed-batch", type=int, default=256)
    ap.add_argument("--device", default="cpu", help="cpu or cuda:N (the same device as mixbt's side)")
    ap.add_argument("--serve", action="store_true",
                    help="answer requests `train|embed BATCH STEPS WARMUP` (one per stdin line, `quit` ends) with a JSON line each")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(args.device)
    if args.serve:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            case, bs, steps, warmup = words[0], int(words[1]), int(words[2]), int(words[3])
            print(json.dumps(bench.time(case, bs, steps, warmup)), flush=True)
        return
    for bs in [int(b) for b in args.batches.split(",")]:
        print(json.dumps(bench.time("train", bs, args.steps, args.warmup)), flush=True)
    print(json.dumps(bench.time("embed", args.embed_batch, args.steps, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
