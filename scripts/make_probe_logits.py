"""PyTorch's logits of the released-format probe fixture (tests/fixtures/tiny_imagenet_probe.pth,
written by make_torch_fixtures.py), for tests/torch_import.rs: the probe evaluated as released.

The probe is loaded as evaluate_imagenet.py loads it (the `model` entry, `module.` prefixes
removed, into a torchvision-named ResNet-50 with `fc`), in eval mode; the inputs are a few
images of 64×64 pixels (uint8, stored) normalised with the ImageNet statistics.

    python3 scripts/make_probe_logits.py     (needs torch)
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_torch_fixtures import ResNet50  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "fixtures")


def main():
    ckpt = torch.load(os.path.join(OUT, "tiny_imagenet_probe.pth"), map_location="cpu", weights_only=False)
    sd = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    fdim = sd["fc.weight"].shape[1]
    net = ResNet50(c0=sd["conv1.weight"].shape[0], classes=sd["fc.weight"].shape[0])
    net.load_state_dict(sd)
    net.eval()
    g = torch.Generator().manual_seed(99)
    pixels = (torch.rand(3, 64, 64, 3, generator=g) * 255).round().to(torch.uint8)
    x = pixels.permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1((x - mean) / std))))
        h = net.layer4(net.layer3(net.layer2(net.layer1(h))))
        logits = net.fc(torch.flatten(net.avgpool(h), 1))
    json.dump(
        {"size": 64, "feature_dim": fdim, "classes": sd["fc.weight"].shape[0], "normalize_mean": mean.flatten().tolist(),
         "normalize_std": std.flatten().tolist(), "pixels_hwc_u8": pixels.reshape(3, -1).tolist(), "logits": logits.tolist()},
        open(os.path.join(OUT, "tiny_imagenet_probe_logits.json"), "w"),
    )
    print("wrote tiny_imagenet_probe_logits.json", tuple(logits.shape))


if __name__ == "__main__":
    main()
