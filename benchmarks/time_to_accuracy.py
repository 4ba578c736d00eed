"""Time to accuracy: an experiment file trained and evaluated as a user runs it, per seed (issue 10).

For each seed, in fresh processes: ``cnnlab train EXPERIMENT --set seed=S`` then
``cnnlab evaluate --json`` of that run; the wall time covers both commands, start-up
included. Prints each seed's test accuracy and seconds, then the mean. Data: MNIST
from ``--npz`` (this machine has no internet), passed with ``--set data.dataset=npz``.

    python benchmarks/time_to_accuracy.py [experiments/mnist_fast.yaml] [--seeds 42 1 2]
        [--set training.precision=float32 ...] [--npz ../shared/datasets/mnist.npz]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "datasets" / "mnist.npz"
CNNLAB = [sys.executable, "-m", "cnnlab"]


def run(command):
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def one_seed(experiment, seed, sets, npz, folder):
    """(test accuracy, seconds of train + evaluate) of one seed."""
    overrides = ["data.dataset=npz", f"data.path={npz}", f"seed={seed}", f"output_dir={folder}", *sets]
    start = time.perf_counter()
    run([*CNNLAB, "train", str(experiment), "--quiet", *(a for s in overrides for a in ("--set", s))])
    metrics = json.loads(run([*CNNLAB, "evaluate", str(folder), "--json"]))
    return metrics["accuracy"], time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", type=Path, default=ROOT / "experiments" / "mnist_fast.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    args = parser.parse_args()
    if not args.npz.is_file():
        parser.error(f"MNIST as an .npz is needed: {args.npz} not found (pass --npz)")
    print(f"{args.experiment.name} {' '.join(f'--set {s}' for s in args.sets)}".rstrip())
    accuracies, seconds = [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            accuracy, wall = one_seed(args.experiment, seed, args.sets, args.npz.resolve(), folder)
        accuracies.append(accuracy)
        seconds.append(wall)
        print(f"seed {seed}: test accuracy {accuracy:.4f}, {wall:.1f} s (train + evaluate)", flush=True)
    print(f"mean of {len(args.seeds)} seeds: test accuracy {statistics.mean(accuracies):.4f}, "
          f"{statistics.mean(seconds):.1f} s (slowest {max(seconds):.1f} s)")


if __name__ == "__main__":
    main()
