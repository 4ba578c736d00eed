"""Training throughput of deep_cnn on MNIST: no augmentation, the layers engine, the generator engine.

All in one process, same model, same data, same augmentation settings (rotation 10,
shifts 0.1, zoom 0.1), plus plain Keras (``model.fit`` on numpy arrays) as the
reference. Prints images per second and the ratios to "none".

    python benchmarks/augmentation_throughput.py [--images 12000] [--epochs 2] [--npz PATH]

Needs ../shared/datasets/mnist.npz (or --npz); the first epoch of each is warm-up.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from cnnlab.config import build_config
from cnnlab.data.pipeline import load_data
from cnnlab.models.assemble import build
from cnnlab.session import setup
from cnnlab.training.fit import compile_model

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"
AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1, "height_shift_range": 0.1, "zoom_range": 0.1}


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last = time.perf_counter() - self.start


def config(npz, images, engine):
    aug = {"engine": engine, **AUGMENTATION} if engine else {}
    return build_config({
        "seed": 0, "data": {"dataset": "npz", "path": str(npz), "batch_size": 100, "validation_split": 0.0,
                            "test_split": 0.0},
        "augmentation": aug, "model": {"architecture": "deep_cnn"}, "training": {"epochs": 1},
        "callbacks": {"model_checkpoint": None, "reduce_lr_on_plateau": None, "early_stopping": None}})


def subset(data, images):
    keep = np.random.default_rng(0).choice(len(data.train), size=images, replace=False)
    data.train = data.train.take(np.sort(keep))
    return data


def measure(cfg, images, epochs, plain=False):
    setup(cfg)
    data = subset(load_data(cfg), images)
    model = build(cfg, data)
    compile_model(model, cfg, data.classes, images // 100)
    timer = EpochTimer()
    if plain:
        x = data.train.images.astype("float32")
        y = keras.utils.to_categorical(data.train.labels, data.classes)
        model.fit(x, y, batch_size=100, epochs=epochs, callbacks=[timer], verbose=0)
    else:
        model.fit(data.train_dataset(epochs=epochs), steps_per_epoch=data.steps_per_epoch(), epochs=epochs,
                  callbacks=[timer], verbose=0)
    return images / timer.last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", default=DEFAULT_NPZ)
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.npz).is_file():
        raise SystemExit(f"needs MNIST as an .npz: {args.npz} not found (pass --npz)")
    rates = {"plain keras (numpy arrays)": measure(config(args.npz, args.images, None), args.images, args.epochs,
                                                   plain=True),
             "none": measure(config(args.npz, args.images, None), args.images, args.epochs),
             "layers": measure(config(args.npz, args.images, "layers"), args.images, args.epochs),
             "generator": measure(config(args.npz, args.images, "generator"), args.images, args.epochs)}
    print(f"deep_cnn on {args.images} MNIST images, batch 100, last of {args.epochs} epochs timed; "
          f"augmentation {AUGMENTATION}")
    print(f"{'pipeline':<28}{'images/s':>10}{'vs none':>10}")
    for name, rate in rates.items():
        print(f"{name:<28}{rate:>10.0f}{rate / rates['none']:>10.2f}")
    overhead = 1 - rates["layers"] / rates["none"]
    print(f"layers engine costs {overhead:.1%} of throughput over no augmentation "
          f"(goal: at most 10%); the generator engine {1 - rates['generator'] / rates['none']:.1%}")


if __name__ == "__main__":
    main()
