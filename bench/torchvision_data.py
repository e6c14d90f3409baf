"""The CIFAR pre-training augmentation pipeline of the original (utils.CifarPairTransform) in
torchvision, timed: decode + two augmented views + ToTensor + Normalize + batching, over an image
folder, with a DataLoader of the given number of worker processes. Called by `mixbt bench data`.
Prints one JSON line: {"pairs_per_s": ..., "images": N, "workers": W}.
"""
import argparse
import json
import time

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


class Pair:
    def __init__(self, t):
        self.t = t

    def __call__(self, x):
        return self.t(x), self.t(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = transforms.Compose([
        transforms.RandomResizedCrop(32),
        transforms.RandomHorizontalFlip(p=0.5),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    ds = datasets.ImageFolder(args.data_dir, transform=Pair(t))
    n = min(args.images, len(ds))
    step = max(1, len(ds) // n)
    ds = Subset(ds, list(range(0, len(ds), step))[:n])
    dl = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=False, persistent_workers=False)
    t0 = time.perf_counter()
    seen = 0
    for (a, b), _ in dl:
        seen += a.shape[0]
    dt = time.perf_counter() - t0
    print(json.dumps({"pairs_per_s": seen / dt, "images": seen, "workers": args.workers, "seconds": dt}), flush=True)


if __name__ == "__main__":
    main()
