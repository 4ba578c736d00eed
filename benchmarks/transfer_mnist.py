"""Fine-tuning vs training from scratch on few images: MNIST digits 0-4 -> digits 5-9.

1. pretrain deep_cnn on MNIST digits 0-4 (experiments/transfer_pretrain_0to4.yaml);
2. for each size (default 10 and 50 training images per class of digits 5-9):
   - fine-tune it with the shipped recipe (experiments/transfer_finetune_5to9.yaml: the
     head on the frozen base, then one cycle over every layer with discriminative rates);
   - fine-tune it with the earlier recipe (10 head epochs, then 20 at a constant 3e-4 over
     blocks 2-3 and the dense layers);
   - train the same network from scratch on the same images for the same 60 epochs
     (experiments/transfer_scratch_5to9.yaml).
Prints the test accuracy on every digit-5-9 test image for three seeds each (the images
stay the same; initialisation, dropout and shuffling change), their mean, and wall times.

    python benchmarks/transfer_mnist.py [--npz ../shared/datasets/mnist.npz] [--seeds 42 1 2]
        [--per-class 10 50] [--prepare-only]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "datasets" / "mnist.npz"
EXPERIMENTS = ROOT / "experiments"
# The recipe before issue 11: phase 2 at a constant rate over blocks 2-3 and the dense layers.
EARLIER_RECIPE = ["finetune.freeze=block1_pool", "finetune.learning_rate=3.0e-4", "finetune.lr_schedule=null",
                  "finetune.lr_mult=1.0", "finetune.head_epochs=10", "finetune.epochs=20"]


def few_path(out, per_class):
    return Path(out) / ("mnist_5to9_250.npz" if per_class == 50 else f"mnist_5to9_{5 * per_class}.npz")


def prepare(npz, per_class=(50,), out="data", seed=0):
    """Write data/mnist_0to4.npz and one data/mnist_5to9_<N>.npz per size from an MNIST .npz.

    The smaller sets are the first images of the larger ones' draw, so 10 per class is a
    subset of 50 per class.
    """
    with np.load(npz) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    Path(out).mkdir(exist_ok=True)
    low, low_test = y_train < 5, y_test < 5
    np.savez_compressed(Path(out) / "mnist_0to4.npz", x_train=x_train[low], y_train=y_train[low],
                        x_test=x_test[low_test], y_test=y_test[low_test],
                        class_names=np.array([str(d) for d in range(5)]))
    rng = np.random.default_rng(seed)
    draws = [rng.choice(np.flatnonzero(y_train == d), max(per_class), replace=False) for d in range(5, 10)]
    for n in per_class:
        few = np.concatenate([draw[:n] for draw in draws])
        np.savez_compressed(few_path(out, n), x_train=x_train[few], y_train=y_train[few] - 5,
                            x_test=x_test[~low_test], y_test=y_test[~low_test] - 5,
                            class_names=np.array([str(d) for d in range(5, 10)]))
    return int(low.sum()), int((~low_test).sum())


def contenders(path):
    """name -> function(seed) returning a finished run, on the images at `path`."""
    from cnnlab.commands.finetune import finetune
    from cnnlab.commands.train import train
    from cnnlab.config import load_config

    quiet = {"echo": lambda *_: None, "verbose": 0}
    data = [f"data.path={path}"]
    return {
        "fine-tuned": lambda s: finetune(EXPERIMENTS / "transfer_finetune_5to9.yaml",
                                         overrides=[*data, f"seed={s}"], fresh=True, **quiet),
        "fine-tuned, earlier recipe": lambda s: finetune(EXPERIMENTS / "transfer_finetune_5to9.yaml",
                                                         overrides=[*data, f"seed={s}", *EARLIER_RECIPE],
                                                         fresh=True, **quiet),
        "from scratch": lambda s: train(load_config(EXPERIMENTS / "transfer_scratch_5to9.yaml", [*data, f"seed={s}"]),
                                        fresh=True, **quiet),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", default=DEFAULT_NPZ)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    if not Path(args.npz).is_file():
        raise SystemExit(f"needs MNIST as an .npz: {args.npz} not found (pass --npz)")
    pretrain_n, test_n = prepare(args.npz, args.per_class)
    print(f"data/: {pretrain_n} images of digits 0-4 to pretrain on; {test_n} of digits 5-9 to test on")
    if args.prepare_only:
        return

    from cnnlab.commands.evaluate import evaluate
    from cnnlab.commands.train import train
    from cnnlab.config import load_config

    start = time.perf_counter()
    train(load_config(EXPERIMENTS / "transfer_pretrain_0to4.yaml"), fresh=True, echo=lambda *_: None, verbose=0)
    pretrain = time.perf_counter() - start
    print(f"{time.strftime('%Y-%m-%d')}; pretraining on digits 0-4 took {pretrain:.0f} s")
    for per_class in args.per_class:
        print(f"\n{per_class} training images per class ({5 * per_class} in all):")
        print(f"{'':<28}" + "".join(f"{f'seed {s}':>10}" for s in args.seeds) + f"{'mean':>10}{'wall time':>12}")
        for name, step in contenders(few_path("data", per_class)).items():
            accuracy, seconds = [], []
            for seed in args.seeds:
                began = time.perf_counter()
                run = step(seed)
                seconds.append(time.perf_counter() - began)
                accuracy.append(evaluate(run, echo=lambda *_: None)["accuracy"])
            print(f"{name:<28}" + "".join(f"{a:>10.4f}" for a in accuracy) + f"{np.mean(accuracy):>10.4f}"
                  f"{np.mean(seconds):>11.0f}s", flush=True)
    print(f"(test accuracy on all {test_n} test images of digits 5-9)")


if __name__ == "__main__":
    main()
