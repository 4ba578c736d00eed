"""TensorFlow against JAX as Keras's backend, and 1 against N workers (issue 12): the same experiment, alternating.

A contender is a backend, or ``jax:N``: JAX with ``--workers N`` (N local processes
training one model, the same global batch). Each repetition runs
``cnnlab train EXPERIMENT --set runtime.backend=B [--workers N]`` in fresh processes for
every contender (reversed order on odd repetitions) on MNIST from ``--npz`` and reads the
last epoch's seconds from the one-line-per-epoch progress cnnlab prints off a terminal
(worker 0's, with several); images/s = training images / those seconds. Then the final
test accuracy of each run.

    python benchmarks/backends.py [experiments/mnist_fast.yaml] [--contenders tensorflow jax jax:2]
        [--reps 5] [--images 12000] [--epochs 2]
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "datasets" / "mnist.npz"
CONTENDERS = ("tensorflow", "jax")
EPOCH_LINE = re.compile(r"^Epoch (\d+)/(\d+) - ([\d.]+)s", re.MULTILINE)


def subset(npz, images, folder):
    """The first `images` training images of `npz` (and its whole test split) as a new .npz."""
    with np.load(npz) as f:
        path = Path(folder) / "subset.npz"
        np.savez(path, x_train=f["x_train"][:images], y_train=f["y_train"][:images], x_test=f["x_test"],
                 y_test=f["y_test"])
    return path


def one_run(experiment, contender, npz, epochs, folder):
    """(images/s of the last epoch, test accuracy) of one fresh-process training of `contender`."""
    backend, _, workers = contender.partition(":")
    sets = [f"runtime.backend={backend}", "data.dataset=npz", f"data.path={npz}", f"training.epochs={epochs}",
            f"output_dir={folder}/{contender.replace(':', '-')}"]
    command = [sys.executable, "-m", "cnnlab", "train", str(experiment), *(a for s in sets for a in ("--set", s)),
               *(["--workers", workers] if workers else [])]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    seconds = float(EPOCH_LINE.findall(out.stdout)[-1][2])
    run = out.stdout.strip().splitlines()[-1].removeprefix("Done: ")
    metrics = subprocess.run([sys.executable, "-m", "cnnlab", "evaluate", run, "--json"], capture_output=True,
                             text=True, cwd=ROOT, check=True)
    return seconds, json.loads(metrics.stdout)["accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", type=Path, default=ROOT / "experiments" / "mnist_fast.yaml")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS),
                        help="backends, or jax:N for N local workers (the first is the baseline)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    args = parser.parse_args()
    if not args.npz.is_file():
        parser.error(f"MNIST as an .npz is needed: {args.npz} not found (pass --npz)")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {args.experiment.name}, {args.images} images, "
          f"last of {args.epochs} epochs timed, {args.reps} repetitions")
    contenders = args.contenders
    rates, accuracy = {c: [] for c in contenders}, {c: [] for c in contenders}
    with tempfile.TemporaryDirectory() as folder:
        npz = subset(args.npz, args.images, folder)
        for rep in range(args.reps):
            for contender in (contenders if rep % 2 == 0 else contenders[::-1]):
                seconds, acc = one_run(args.experiment, contender, npz, args.epochs, folder)
                rates[contender].append(args.images / seconds)
                accuracy[contender].append(acc)
                print(f"  {contender}: {rates[contender][-1]:,.0f} img/s ({seconds:.1f} s/epoch), "
                      f"test accuracy {acc:.4f}", flush=True)
    base = statistics.median(rates[contenders[0]])
    for contender in contenders:
        median = statistics.median(rates[contender])
        print(f"{contender:<11} median {median:>7,.0f} img/s ({args.images / median:.1f} s/epoch)  "
              f"best {max(rates[contender]):>7,.0f}  x{median / base:.2f}  "
              f"test accuracy {statistics.mean(accuracy[contender]):.4f}")


if __name__ == "__main__":
    main()
