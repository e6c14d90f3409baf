"""Tiny copies of the seven transfer targets in their real download formats, and the splits the
original code (wgcban/mix-bt `transfer_datasets/*.py`) computes from them, for tests/transfer.rs
and notebook 06.

Writes tests/fixtures/transfer/<target>/… (DTD, MNIST gzipped, FashionMNIST plain, CUB-200-2011,
Flowers-102 with a compressed MATLAB imagelabels.mat, the traffic signs as PPM, FGVC-Aircraft
with bounding boxes), tests/fixtures/transfer/expected.json (per target and split: the image and
label lists in the original's order, its RandomState(42) shuffles included) and
tests/fixtures/numpy_randomstate.json (numpy's own RandomState(42).shuffle outputs).

The split logic below restates the original loaders' rules (one RandomState(42) per data set,
shuffling each class's index list in turn, 80 % train); the traffic signs' file list is sorted
(the original takes glob's directory order, which differs between file systems).

    python3 scripts/make_transfer_fixtures.py      (needs numpy, scipy, Pillow)
"""
import gzip
import json
import os
import shutil
import struct
from collections import defaultdict

import numpy as np
import scipy.io
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
OUT = os.path.join(FIX, "transfer")

noise = np.random.RandomState(0)


def picture(label, w=20, h=16):
    """An image whose colour says its class (so a probe can learn the fixture), plus noise."""
    base = np.array([(label * 67) % 256, (label * 131 + 40) % 256, (label * 29 + 90) % 256], dtype=np.int32)
    img = base[None, None, :] + noise.randint(-30, 31, size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def save(img, path, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, **kw)


def rel(path):
    return os.path.relpath(path, OUT).replace(os.sep, "/")


def split_80_20(class_lists):
    """One RandomState(42) over the classes in the given order, as vgg_flower.py/traffic_sign.py."""
    rs = np.random.RandomState(42)
    train, test = [], []
    for label, paths in class_lists:
        num = len(paths)
        indexer = np.arange(num)
        rs.shuffle(indexer)
        paths = np.array(paths)[indexer].tolist()
        train += [[p, label] for p in paths[: int(0.8 * num)]]
        test += [[p, label] for p in paths[int(0.8 * num):]]
    return train, test


def dtd():
    root = os.path.join(OUT, "dtd")
    cats = ["striped", "banded", "dotted"]
    lines = {"train1": [], "val1": [], "test1": [], "train2": []}
    for c, cat in enumerate(cats):
        for i in range(6):
            name = f"{cat}/{cat}_{i + 1:04d}.jpg"
            save(picture(c, 24, 20), os.path.join(root, "images", name), quality=90)
            lines[["train1", "train1", "val1", "val1", "test1", "test1"][i]].append(name)
            lines["train2"].append(name)
    for k, v in lines.items():
        os.makedirs(os.path.join(root, "labels"), exist_ok=True)
        with open(os.path.join(root, "labels", f"{k}.txt"), "w") as f:
            f.write("".join(x + "\n" for x in v))

    def split(files):
        cats_sorted = sorted({x.split("/")[0] for x in files})
        return [[f"dtd/images/{x}", cats_sorted.index(x.split("/")[0])] for x in files]

    return {"train": split(lines["train1"] + lines["val1"]), "test": split(lines["test1"])}


def idx_files(folder, gz, seed):
    root = os.path.join(OUT, folder)
    os.makedirs(root, exist_ok=True)
    rs = np.random.RandomState(seed)
    out = {}
    for prefix, n in [("train", 30), ("t10k", 10)]:
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, y in enumerate(labels):
            images[i, 4 + y: 10 + y, 6:22] = 255
            images[i] = np.clip(images[i].astype(np.int32) + rs.randint(0, 40, size=(28, 28)), 0, 255)
        img_bytes = struct.pack(">IIII", 0x00000803, n, 28, 28) + images.tobytes()
        lab_bytes = struct.pack(">II", 0x00000801, n) + labels.tobytes()
        for name, data in [(f"{prefix}-images-idx3-ubyte", img_bytes), (f"{prefix}-labels-idx1-ubyte", lab_bytes)]:
            if gz:
                # mtime 0: the same bytes on every run.
                with open(os.path.join(root, name + ".gz"), "wb") as raw:
                    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
                        f.write(data)
            else:
                with open(os.path.join(root, name), "wb") as f:
                    f.write(data)
        split = "train" if prefix == "train" else "test"
        out[split] = {"labels": labels.tolist(), "pixel_sums": [int(im.sum()) for im in images]}
    return out


def cub():
    root = os.path.join(OUT, "cu_birds", "CUB_200_2011")
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    images, labels, splits = [], [], []
    k = 0
    for c, cls in enumerate(classes):
        for i in range(5):
            k += 1
            name = f"{cls}/{cls.split('.', 1)[1]}_{i:04d}_{k}.jpg"
            save(picture(c + 10, 22, 18), os.path.join(root, "images", name), quality=90)
            images.append(f"{k} {name}")
            labels.append(f"{k} {c + 1}")
            splits.append(f"{k} {1 if i < 3 else 0}")
    for fname, lines in [("images.txt", images), ("image_class_labels.txt", labels), ("train_test_split.txt", splits),
                         ("classes.txt", [f"{i + 1} {c}" for i, c in enumerate(classes)])]:
        with open(os.path.join(root, fname), "w") as f:
            f.write("".join(x + "\n" for x in lines))
    out = {"train": [], "test": []}
    for line, lab, sp in zip(images, labels, splits):
        name = line.split(" ", 1)[1]
        y = int(lab.split(" ", 1)[1]) - 1
        out["train" if sp.endswith(" 1") else "test"].append([f"cu_birds/CUB_200_2011/images/{name}", y])
    return out


def flowers():
    root = os.path.join(OUT, "vgg_flower")
    # Labels in file order, as imagelabels.mat (1-based, classes interleaved): the class order
    # of the split is the order of first appearance.
    labels = [77, 5, 77, 12, 5, 77, 12, 77, 5, 77, 12, 77, 5, 5, 77, 12, 77]
    for i, y in enumerate(labels):
        save(picture(y, 26, 22), os.path.join(root, "jpg", f"image_{i + 1:05d}.jpg"), quality=90)
    scipy.io.savemat(os.path.join(root, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.float64)},
                     do_compression=True)
    by_label = defaultdict(list)
    for i, y in enumerate(labels):
        by_label[y].append(f"vgg_flower/jpg/image_{i + 1:05d}.jpg")
    train, test = split_80_20([(y - 1, p) for y, p in by_label.items()])
    return {"train": train, "test": test}


def traffic():
    root = os.path.join(OUT, "traffic_sign", "FullIJCNN2013")
    counts = {0: 6, 1: 11, 2: 1, 5: 4}  # classes 03 and 04 have no folder: as glob, empty
    lists = []
    for c in range(43):
        if c not in counts:
            continue
        paths = []
        for i in range(counts[c]):
            name = f"{c:02d}/{i:05d}.ppm"
            save(picture(c + 30, 18, 18), os.path.join(root, name))
            paths.append(f"traffic_sign/FullIJCNN2013/{name}")
        lists.append((c, sorted(paths)))
    # A full-scene image at the top (as in the real archive) is not a class member.
    save(picture(99, 40, 20), os.path.join(root, "00000.ppm"))
    train, test = split_80_20(lists)
    return {"train": train, "test": test}


def aircraft():
    root = os.path.join(OUT, "aircraft", "data")
    variants = ["707-320", "Cessna 172", "DC-10"]
    rows = {"trainval": [], "test": []}
    boxes = []
    k = 1034000
    for v, var in enumerate(variants):
        for i in range(4):
            k += 7
            name = f"{k:07d}"
            w, h = 40, 30
            save(picture(v + 50, w, h), os.path.join(root, "images", name + ".jpg"), quality=90)
            # Boxes as the dataset gives them; the last one reaches past the image (PIL pads).
            box = (3 + i, 2, 30 + i, 22) if i < 3 else (10, 5, 44, 33)
            boxes.append(f"{name} {box[0]} {box[1]} {box[2]} {box[3]}")
            rows["trainval" if i < 3 else "test"].append((name, var))
    with open(os.path.join(root, "variants.txt"), "w") as f:
        f.write("".join(x + "\n" for x in variants))
    with open(os.path.join(root, "images_box.txt"), "w") as f:
        f.write("".join(x + "\n" for x in boxes))
    out = {}
    for split, lines in rows.items():
        with open(os.path.join(root, f"images_variant_{split}.txt"), "w") as f:
            f.write("".join(f"{n} {v}\n" for n, v in lines))
        names_to_variants = dict(lines)
        variants_to_names = defaultdict(list)
        for n, v in names_to_variants.items():
            variants_to_names[v].append(n)
        vs = sorted(variants_to_names)
        out["train" if split == "trainval" else "test"] = [
            [f"aircraft/data/images/{n}.jpg", vid] for vid, v in enumerate(vs) for n in sorted(variants_to_names[v])
        ]
    # The crop of the last (out-of-bounds) test image as PIL computes it: width, height, pixel sum.
    im = Image.open(os.path.join(root, "images", out["test"][-1][0].split("/")[-1])).convert("RGB").crop((10, 5, 44, 33))
    out["test_last_crop"] = [im.width, im.height, int(np.asarray(im, dtype=np.int64).sum())]
    return out


def randomstate():
    out = {}
    for n in [1, 7, 80, 1000]:
        x = np.arange(n)
        np.random.RandomState(42).shuffle(x)
        out[str(n)] = x.tolist()
    # One generator over several lists in turn, as the per-class splits use it.
    rs = np.random.RandomState(42)
    seq = []
    for n in [5, 7, 1, 80, 3]:
        x = np.arange(n)
        rs.shuffle(x)
        seq.append(x.tolist())
    out["sequence_5_7_1_80_3"] = seq
    # Raw 32-bit outputs of MT19937 seeded 42 (the first five).
    out["uint32_first5"] = np.random.RandomState(42).randint(0, 2**32, size=5, dtype=np.uint64).tolist()
    return out


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    expected = {
        "dtd": dtd(),
        "mnist": idx_files("mnist", gz=True, seed=1),
        "fashionmnist": idx_files("fashionmnist", gz=False, seed=2),
        "cu_birds": cub(),
        "vgg_flower": flowers(),
        "traffic_sign": traffic(),
        "aircraft": aircraft(),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    with open(os.path.join(FIX, "numpy_randomstate.json"), "w") as f:
        json.dump(randomstate(), f)
    # An uncompressed MAT file with uint8 data, the other form a MAT reader must take.
    scipy.io.savemat(os.path.join(FIX, "labels_uint8.mat"), {"labels": np.array([[3, 1, 2, 250]], dtype=np.uint8)})


if __name__ == "__main__":
    main()
