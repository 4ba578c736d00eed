"""How well `cnnlab doctor` finds planted problems in MNIST, and what it costs on all 70,000 images.

From an MNIST .npz (keras.datasets layout) it writes a damaged copy: 1 % of the training labels
flipped to another class (seeded), and 50 test images planted in the training split (with their
labels). Then, as a user runs it, in a fresh process under /usr/bin/time:

    cnnlab doctor <experiment on the damaged npz> --folds K

with experiments/mnist_fast.yaml as the experiment (the book's deep CNN, 3 epochs). It prints the
precision and recall of the flipped labels among the label suspects of the training split, the
share of planted test images found as leakage, and the wall time and peak memory (max RSS).

    python benchmarks/doctor_mnist.py --npz ../shared/datasets/mnist.npz [--folds 2] [--out /tmp/doctor-mnist]
"""

import argparse
import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLIP_SHARE = 0.01
PLANTED = 50


def damaged(npz, out, seed=0):
    """Write the damaged copy of `npz` into `out`; (its path, flipped training indices, planted indices)."""
    rng = np.random.default_rng(seed)
    with np.load(npz) as data:
        x, y, xt, yt = data["x_train"], data["y_train"].copy(), data["x_test"], data["y_test"]
    flipped = np.sort(rng.choice(len(y), int(FLIP_SHARE * len(y)), replace=False))
    y[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10  # another class, at random
    picked = rng.choice(len(yt), PLANTED, replace=False)
    planted = np.arange(len(y), len(y) + PLANTED)
    path = out / "mnist_damaged.npz"
    np.savez(path, x_train=np.concatenate([x, xt[picked]]), y_train=np.concatenate([y, yt[picked]]),
             x_test=xt, y_test=yt)
    return path, set(flipped.tolist()), set(planted.tolist())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/doctor-mnist"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    path, flipped, planted = damaged(args.npz, args.out)
    report = args.out / "doctor"
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "cnnlab", "doctor",
               str(ROOT / "experiments" / "mnist_fast.yaml"), "--folds", str(args.folds), "-o", str(report),
               "--set", "data.dataset=npz", "--set", f"data.path={path}", "--set", f"output_dir={args.out / 'runs'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"doctor failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", done.stderr).group(1)
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 2**20
    with open(report / "doctor.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    suspects = {int(r["id"].removeprefix("train:")) for r in rows if r["issue"] == "label" and r["split"] == "train"}
    hits = suspects & flipped
    leaked = {int(r["id"].removeprefix("train:")) for r in rows
              if r["issue"].startswith("leakage") and r["id"].startswith("train:")}
    print(f"images: {70000 + PLANTED}; flipped labels: {len(flipped)}; planted test images: {len(planted)}")
    print(f"label suspects (train): {len(suspects)}; flipped among them: {len(hits)}")
    print(f"precision {len(hits) / max(len(suspects), 1):.3f}, recall {len(hits) / len(flipped):.3f}")
    print(f"planted test images found as leakage: {len(leaked & planted)} of {len(planted)} "
          f"({100 * len(leaked & planted) / len(planted):.0f} %); other training images in leakage sets: "
          f"{len(leaked - planted)}")
    print(f"wall time {wall}, peak memory {peak:.2f} GiB (max RSS, /usr/bin/time -v)")
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith(("Issues", "  ", "Note", "Labels"))))


if __name__ == "__main__":
    main()
