"""Fine-tuning vs training from scratch on 250 images: MNIST digits 0-4 -> digits 5-9.

1. pretrain deep_cnn on MNIST digits 0-4 (experiments/transfer_pretrain_0to4.yaml);
2. fine-tune it on digits 5-9 with 50 training images per class
   (experiments/transfer_finetune_5to9.yaml, two phases, 30 epochs in all);
3. train the same network from scratch on the same 250 images for the same 30 epochs
   (experiments/transfer_scratch_5to9.yaml).
Prints both test accuracies on every digit-5-9 test image, for three seeds each (the
250 images stay the same; initialisation, dropout and shuffling change), and the wall times.

    python benchmarks/transfer_mnist.py [--npz ../shared/datasets/mnist.npz] [--seeds 42 1 2] [--prepare-only]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "datasets" / "mnist.npz"
PER_CLASS = 50


def prepare(npz, out="data", seed=0):
    """Write data/mnist_0to4.npz and data/mnist_5to9_250.npz from an MNIST .npz."""
    with np.load(npz) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    Path(out).mkdir(exist_ok=True)
    low, low_test = y_train < 5, y_test < 5
    np.savez_compressed(Path(out) / "mnist_0to4.npz", x_train=x_train[low], y_train=y_train[low],
                        x_test=x_test[low_test], y_test=y_test[low_test],
                        class_names=np.array([str(d) for d in range(5)]))
    rng = np.random.default_rng(seed)
    few = np.concatenate([rng.choice(np.flatnonzero(y_train == d), PER_CLASS, replace=False) for d in range(5, 10)])
    np.savez_compressed(Path(out) / "mnist_5to9_250.npz", x_train=x_train[few], y_train=y_train[few] - 5,
                        x_test=x_test[~low_test], y_test=y_test[~low_test] - 5,
                        class_names=np.array([str(d) for d in range(5, 10)]))
    return int(low.sum()), len(few), int((~low_test).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", default=DEFAULT_NPZ)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    if not Path(args.npz).is_file():
        raise SystemExit(f"needs MNIST as an .npz: {args.npz} not found (pass --npz)")
    pretrain_n, few_n, test_n = prepare(args.npz)
    print(f"data/: {pretrain_n} images of digits 0-4; {few_n} of digits 5-9 to learn from; {test_n} to test on")
    if args.prepare_only:
        return

    from cnnlab.config import load_config
    from cnnlab.evaluate import evaluate
    from cnnlab.experiment import train
    from cnnlab.finetune import finetune

    quiet = {"echo": lambda *_: None, "verbose": 0}
    experiments = ROOT / "experiments"
    start = time.perf_counter()
    train(load_config(experiments / "transfer_pretrain_0to4.yaml"), fresh=True, **quiet)
    pretrain = time.perf_counter() - start
    steps = {"fine-tuned": lambda s: finetune(experiments / "transfer_finetune_5to9.yaml", overrides=[f"seed={s}"],
                                              fresh=True, **quiet),
             "from scratch": lambda s: train(load_config(experiments / "transfer_scratch_5to9.yaml", [f"seed={s}"]),
                                             fresh=True, **quiet)}
    print(f"{'':<14}" + "".join(f"{f'seed {s}':>10}" for s in args.seeds) + f"{'mean':>10}{'wall time':>12}")
    for name, step in steps.items():
        accuracy, seconds = [], []
        for seed in args.seeds:
            start = time.perf_counter()
            run = step(seed)
            seconds.append(time.perf_counter() - start)
            accuracy.append(evaluate(run, echo=lambda *_: None)["accuracy"])
        print(f"{name:<14}" + "".join(f"{a:>10.4f}" for a in accuracy) + f"{np.mean(accuracy):>10.4f}"
              f"{np.mean(seconds):>11.0f}s")
    print(f"(test accuracy on all {test_n} test images of digits 5-9; pretraining on digits 0-4 took {pretrain:.0f}s)")


if __name__ == "__main__":
    main()
