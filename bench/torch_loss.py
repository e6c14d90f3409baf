"""The original Mixed Barlow Twins loss (main.py, as coded), forward and backward, timed per d.

Prints one JSON line per d: {"d", "batch", "median_s", "times", "max_rss_mib"}. Inputs are three
[N, d] projector outputs (requires_grad) drawn from a fixed generator; the permutation and
alpha are drawn once per d.
"""
import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F


def off_diagonal(x):
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def loss_main_py(out_1, out_2, out_m, index, alpha, lmbda, mixup_loss_scale):
    batch_size = out_1.shape[0]
    out_1, out_2, out_m = F.normalize(out_1, dim=-1), F.normalize(out_2, dim=-1), F.normalize(out_m, dim=-1)
    out_1_norm = (out_1 - out_1.mean(dim=0)) / out_1.std(dim=0)
    out_2_norm = (out_2 - out_2.mean(dim=0)) / out_2.std(dim=0)
    c = torch.matmul(out_1_norm.T, out_2_norm) / batch_size
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = off_diagonal(c).pow_(2).sum()
    loss_bt = on_diag + lmbda * off_diag
    out_m_norm = (out_m - out_m.mean(dim=0)) / out_m.std(dim=0)
    cc_m_1 = torch.matmul(out_m_norm.T, out_1_norm) / batch_size
    cc_m_1_gt = alpha * torch.matmul(out_1_norm.T, out_1_norm) / batch_size + \
        (1 - alpha) * torch.matmul(out_2_norm[index, :].T, out_1_norm) / batch_size
    cc_m_2 = torch.matmul(out_m_norm.T, out_2_norm) / batch_size
    cc_m_2_gt = alpha * torch.matmul(out_1_norm.T, out_2_norm) / batch_size + \
        (1 - alpha) * torch.matmul(out_2_norm[index, :].T, out_2_norm) / batch_size
    loss_mix = mixup_loss_scale * lmbda * ((cc_m_1 - cc_m_1_gt).pow_(2).sum() + (cc_m_2 - cc_m_2_gt).pow_(2).sum())
    return loss_bt + loss_mix


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dims", default="1024,4096,8192")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    for d in [int(x) for x in a.dims.split(",")]:
        hs = [torch.randn(a.batch, d, generator=g).requires_grad_() for _ in range(3)]
        index = torch.randperm(a.batch, generator=g)
        alpha = float(np.random.default_rng(0).beta(1.0, 1.0))
        times = []
        for i in range(a.runs + 1):
            for h in hs:
                h.grad = None
            t0 = time.perf_counter()
            loss = loss_main_py(*hs, index, alpha, 0.0078125, 4.0)
            loss.backward()
            dt = time.perf_counter() - t0
            if i > 0:  # the first is a warm-up
                times.append(dt)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"d": d, "batch": a.batch, "median_s": float(np.median(times)), "times": times, "max_rss_mib": rss}), flush=True)


if __name__ == "__main__":
    main()
