"""Generate the small PyTorch fixtures under tests/fixtures/ (run once; the outputs are committed).

They are saved by `torch.save` in the formats the original mix-bt code writes:
  * tiny_r18_cifar.pth: a small-data-set `Model` state dict (f.*, g.*) with thop's float64
    total_ops/total_params buffers, ResNet-18 CIFAR stem at width 1/16, d=16, hidden 16;
    tiny_r18_cifar_features.json: eval-mode L2-normalised backbone features and projections of
    4 deterministic 32x32 images, computed by PyTorch.
  * tiny_r18_small64.pth: the same with the STL-10/TinyImageNet layout (max-pool kept, f.4..f.7).
  * tiny_imagenet_probe.pth: an ImageNet linear-probe checkpoint: dict(epoch, best_acc=argparse.Namespace,
    model=DDP state dict with `module.` prefixes and fc, optimizer=...).
  * tiny_resnet50_backbone.pth: a bare torchvision-style ResNet-50 state dict (no fc), width 1/16.

Usage: python scripts/make_torch_fixtures.py  (needs torch; not needed by the tests)
"""
import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inp, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inp != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inp, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inp != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


def layers(block, blocks, c0):
    inp = c0
    out = []
    for i, n in enumerate(blocks):
        planes = c0 * 2 ** i
        stage = []
        for j in range(n):
            stage.append(block(inp, planes, 2 if (i > 0 and j == 0) else 1))
            inp = planes * block.expansion
        out.append(nn.Sequential(*stage))
    return out, inp


class Model(nn.Module):
    """model.py's Model at a width multiplier (c0 = 64 * width)."""

    def __init__(self, c0=4, d=16, hidden=16, pooled=False):
        super().__init__()
        stages, fdim = layers(BasicBlock, [2, 2, 2, 2], c0)
        f = [nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)]
        if pooled:
            f.append(nn.MaxPool2d(3, 2, 1))
        f += stages + [nn.AdaptiveAvgPool2d((1, 1))]
        self.f = nn.Sequential(*f)
        self.g = nn.Sequential(nn.Linear(fdim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d, bias=True))

    def forward(self, x):
        x = self.f(x)
        feature = torch.flatten(x, 1)
        out = self.g(feature)
        return F.normalize(feature, dim=-1), F.normalize(out, dim=-1)


class ResNet50(nn.Module):
    """torchvision resnet50 naming (conv1 7x7, bn1, layer1..4, fc) at a width multiplier."""

    def __init__(self, c0=4, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c0, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, fdim = layers(Bottleneck, [3, 4, 6, 3], c0)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(fdim, classes)


def add_thop_keys(sd, model):
    """thop leaves float64 total_ops/total_params on modules without a counting rule."""
    out = {}
    for k, v in sd.items():
        out[k] = v
    out["total_ops"] = torch.zeros(1, dtype=torch.float64)
    out["total_params"] = torch.zeros(1, dtype=torch.float64)
    for name, m in model.named_modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            out[f"{name}.total_ops"] = torch.zeros(1, dtype=torch.float64)
            out[f"{name}.total_params"] = torch.zeros(1, dtype=torch.float64)
    return out


def images(n, size=32):
    g = torch.Generator().manual_seed(1234)
    return (torch.rand(n, 3, size, size, generator=g) * 255).round() / 255


def train_a_bit(model, size):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(3):
        x = torch.randn(8, 3, size, size)
        _, z = model(x)
        loss = (z[:, 0] - 1).pow(2).mean() + z.std(0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
    for name, pooled, size in [("tiny_r18_cifar", False, 32), ("tiny_r18_small64", True, 64)]:
        m = Model(pooled=pooled)
        train_a_bit(m, size)
        m.eval()
        x = images(4, size)
        with torch.no_grad():
            feat, proj = m((x - mean) / std)
        torch.save(add_thop_keys(m.state_dict(), m), os.path.join(OUT, name + ".pth"))
        pix = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).reshape(4, -1).tolist()
        json.dump(
            {"size": size, "normalize_mean": mean.flatten().tolist(), "normalize_std": std.flatten().tolist(),
             "pixels_hwc_u8": pix, "features": feat.tolist(), "projections": proj.tolist(), "keys": list(m.state_dict().keys())},
            open(os.path.join(OUT, name + "_features.json"), "w"),
        )
    r = ResNet50()
    sd = {k: v for k, v in r.state_dict().items() if not k.startswith("fc.")}
    torch.save(sd, os.path.join(OUT, "tiny_resnet50_backbone.pth"))
    ddp = {"module." + k: v for k, v in r.state_dict().items()}
    ckpt = dict(epoch=3, best_acc=argparse.Namespace(top1=12.5, top5=40.0), model=ddp,
                optimizer={"state": {}, "param_groups": [{"lr": 0.3, "momentum": 0.9}]}, scheduler={"last_epoch": 3})
    torch.save(ckpt, os.path.join(OUT, "tiny_imagenet_probe.pth"))


if __name__ == "__main__":
    main()
