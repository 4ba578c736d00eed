"""Peak memory of streaming an image folder: 1,000 vs 10,000 small PNGs.

Each size runs in a fresh process that scans the folder, then iterates one
training epoch of the tf.data pipeline (decode, shuffle, augment, batch). Peak
resident memory (ru_maxrss) is printed for each; streaming means it does not
grow with the number of images.

    python benchmarks/folder_memory.py [--sizes 1000 10000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_folder(root, count, classes=10, size=28):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = Path(root) / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")


def child(root):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cnnlab.config import build_config
    from cnnlab.data.pipeline import load_data

    cfg = build_config({"data": {"dataset": "directory", "path": root, "batch_size": 64},
                        "augmentation": {"rotation_range": 10, "horizontal_flip": True}})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = load_data(cfg)
    batches = sum(1 for _ in data.dataset("train", training=True))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"images": len(data.train), "batches": batches, "after_import_mib": before / 1024,
                      "peak_mib": peak / 1024}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    print(f"{'images':>8}{'train':>8}{'after import MiB':>18}{'peak MiB':>10}")
    for count in args.sizes:
        with tempfile.TemporaryDirectory() as root:
            make_folder(root, count)
            out = subprocess.run([sys.executable, __file__, "--child", root], capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{count:>8}{r['images']:>8}{r['after_import_mib']:>18.0f}{r['peak_mib']:>10.0f}")


if __name__ == "__main__":
    main()
