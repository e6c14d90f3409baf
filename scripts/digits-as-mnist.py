"""Write scikit-learn's 8×8 handwritten digits (UCI optical recognition of handwritten digits,
1,797 images, 10 classes; CC BY 4.0) in MNIST's file layout, so that `mixbt transfer` and
notebook 06 can use them as a small real transfer target:

    python3 scripts/digits-as-mnist.py OUT_DIR

writes OUT_DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz: every image scaled ×3
(nearest) to 24×24 and centred in 28×28 as MNIST's digits are, grey levels 0–16 → 0–255;
the first 1,000 images are the training split, the other 797 the test split. The data file is
read from the scikit-learn wheel (downloaded once into target/, no installation).
"""
import csv
import glob
import gzip
import io
import os
import struct
import subprocess
import sys
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
N_TRAIN = 1000
# The wheel whose digits.csv.gz is read (pinned: the same 1,797 images everywhere).
SKLEARN = "scikit-learn==1.9.1"


def wheel():
    cache = os.path.join(ROOT, "target", "sklearn-wheel")
    found = glob.glob(os.path.join(cache, "scikit_learn-" + SKLEARN.split("==")[1] + "-*.whl"))
    if not found:
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", SKLEARN, "--no-deps", "--only-binary=:all:", "-q", "-d", cache], check=True)
        found = glob.glob(os.path.join(cache, "scikit_learn-" + SKLEARN.split("==")[1] + "-*.whl"))
    return sorted(found)[-1]


def digits():
    with zipfile.ZipFile(wheel()) as z:
        raw = gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")).decode()
    rows = [list(map(float, r)) for r in csv.reader(io.StringIO(raw)) if r]
    return [(r[:64], int(r[64])) for r in rows]


def image28(px):
    out = bytearray(28 * 28)
    for y in range(24):
        for x in range(24):
            out[(y + 2) * 28 + x + 2] = round(px[(y // 3) * 8 + x // 3] * 255 / 16)
    return bytes(out)


def write(path, header, body):
    tmp = path + ".tmp"
    with gzip.open(tmp, "wb") as f:
        f.write(header + body)
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.join(sys.argv[1], "mnist")
    os.makedirs(out, exist_ok=True)
    data = digits()
    assert len(data) == 1797, f"expected 1,797 digits, read {len(data)}"
    for split, part in (("train", data[:N_TRAIN]), ("t10k", data[N_TRAIN:])):
        n = len(part)
        write(os.path.join(out, f"{split}-images-idx3-ubyte.gz"), struct.pack(">IIII", 2051, n, 28, 28), b"".join(image28(p) for p, _ in part))
        write(os.path.join(out, f"{split}-labels-idx1-ubyte.gz"), struct.pack(">II", 2049, n), bytes(l for _, l in part))
    print(f"{out}: {N_TRAIN} train / {len(data) - N_TRAIN} test digits in MNIST's layout")


if __name__ == "__main__":
    main()
