"""Reference outputs of torchvision 0.x functional transforms on PIL images, for the parity tests
of mixbt's augmentations (tests/fixtures/pil_reference.json). Run once; the output is committed.

Usage: python scripts/make_pil_fixtures.py   (needs torchvision + Pillow; not needed by the tests)
"""
import json
import os

import numpy as np
import PIL
from PIL import Image, ImageFilter, ImageOps
import torchvision
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pil_reference.json")


def arr(img):
    return np.asarray(img.convert("RGB"), dtype=np.uint8).reshape(-1).tolist()


def main():
    rng = np.random.RandomState(7)
    src = rng.randint(0, 256, size=(13, 17, 3), dtype=np.uint8)  # H=13, W=17
    img = Image.fromarray(src, "RGB")
    cases = []

    def add(name, out, **params):
        cases.append({"name": name, "params": params, "width": out.size[0], "height": out.size[1], "pixels": arr(out)})

    for h, w in [(8, 8), (5, 9), (20, 24), (13, 6)]:
        add("resize_bilinear", F.resize(img, [h, w], InterpolationMode.BILINEAR), height=h, width=w)
        add("resize_bicubic", F.resize(img, [h, w], InterpolationMode.BICUBIC), height=h, width=w)
    add("resized_crop_bilinear", F.resized_crop(img, 2, 3, 9, 11, [8, 8], InterpolationMode.BILINEAR), top=2, left=3, height=9, width=11, size=8)
    add("resized_crop_bicubic", F.resized_crop(img, 1, 0, 12, 10, [6, 6], InterpolationMode.BICUBIC), top=1, left=0, height=12, width=10, size=6)
    add("resize_shorter", F.resize(img, 7, InterpolationMode.BICUBIC), size=7)
    add("center_crop", F.center_crop(img, [8, 8]), size=8)
    for f in [0.6, 1.37]:
        add("brightness", F.adjust_brightness(img, f), factor=f)
        add("contrast", F.adjust_contrast(img, f), factor=f)
        add("saturation", F.adjust_saturation(img, f), factor=f)
    for h in [-0.1, -0.03, 0.05, 0.1]:
        add("hue", F.adjust_hue(img, h), factor=h)
    add("grayscale", F.rgb_to_grayscale(img, num_output_channels=3))
    add("hflip", F.hflip(img))
    for s in [0.1, 0.7, 1.3, 2.0]:
        add("gaussian_blur", img.filter(ImageFilter.GaussianBlur(radius=s)), sigma=s)
    add("solarize", ImageOps.solarize(img, 128), threshold=128)
    json.dump({"pillow": PIL.__version__, "torchvision": torchvision.__version__, "width": 17, "height": 13, "source": src.reshape(-1).tolist(), "cases": cases}, open(OUT, "w"))
    print("wrote", OUT, len(cases), "cases")


if __name__ == "__main__":
    main()
