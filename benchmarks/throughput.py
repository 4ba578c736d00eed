"""Training throughput: cnnlab against a hand-written Keras script of the same network (issues 10, 21).

Three contenders train the same network on the same images, in one process:

- ``cnnlab``: what a run does: its config, its tf.data pipeline, its model and
  compile, and `cnnlab.training.fit.fit` with the callbacks a run uses
  (checkpoint, EarlyStopping, ReduceLROnPlateau, the resume backup, history.csv,
  the one-line-per-epoch progress; monitors on ``loss``, as there is no validation split);
- ``cnnlab_bare``: the same model and pipeline, ``model.fit`` with no callbacks
  (the difference to ``cnnlab`` is what the callbacks cost);
- ``keras``: the script a user writes by hand: ``keras.Input`` -> ``Rescaling`` ->
  the layers written directly, ``model.fit`` on numpy arrays (with augmentation:
  a ``keras.Sequential`` of Keras's preprocessing layers for the same keys, mapped in
  tf.data, as a user writes it: one layer, and one resampling, per transform, where
  cnnlab's ``layers`` engine composes them and resamples once). The ``unet`` case is segmentation
  (issue 21) on the MNIST canvases of ``benchmarks/mnist_canvases.py``, the hand-written script as
  the keras-io example "Image segmentation with a U-Net-like architecture" writes it: the U-Net's
  layers, ``compile(optimizer="adam", loss="sparse_categorical_crossentropy")`` and ``model.fit`` on a
  ``tf.data`` pipeline of (image, mask) batches.

Before timing, each case asserts that cnnlab's model and the hand-written one
have the same parameter count and the same sequence of convolution output shapes.
Within one repetition every (augmentation, precision, contender) of a case runs
once, in reverse order on odd repetitions. The rate is images per second of the
last of ``--epochs`` epochs (the first includes tracing), timed from that epoch's
start to the end of training, so the callbacks' epoch-end work counts.
``--memory`` also runs each contender once in a fresh process and reports its
peak resident memory (ru_maxrss; about 750 MiB of it is importing TensorFlow, and
every child imports cnnlab's modules, about 11 MiB, the hand-written one too).

    python benchmarks/throughput.py [--cases deep_cnn resnet20 mobilenet_v2] [--reps 5] [--epochs 2]
        [--aug none aug] [--precisions float32 mixed_bfloat16] [--contenders cnnlab cnnlab_bare keras]
        [--images N] [--npz ../shared/datasets/mnist.npz] [--set KEY=VALUE ...] [--memory]

Time only on a quiet machine; absolute figures swing with the host, so compare within one run.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import layers

from cnnlab.config import apply_overrides, build_config
from cnnlab.data.pipeline import load_data
from cnnlab.models.assemble import build
from cnnlab.session import setup
from cnnlab.training import fit as fit_module
from cnnlab.training.fit import compile_model

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"
CONTENDERS = ("cnnlab", "cnnlab_bare", "keras")
PRECISIONS = ("float32", "mixed_bfloat16")
AUG_CHOICES = ("none", "aug")
HALF_SPEED = 0.6  # a repetition below 0.6x its contender's best ran at "half speed"
CONV_TYPES = (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Conv2DTranspose)
SHIFTS = {"rotation_range": 10, "width_shift_range": 0.1, "height_shift_range": 0.1}


@dataclass(frozen=True)
class Case:
    """One network on one kind of data; `augmentation` holds cnnlab's keys for the ``aug`` variant."""

    architecture: str
    shape: tuple
    images: int
    batch: int
    augmentation: dict
    classes: int = 10
    mnist: bool = False
    task: str = "classification"
    model: tuple = ()  # cnnlab's model keys beside the architecture, as (key, value) pairs


CASES = {
    "deep_cnn": Case("deep_cnn", (28, 28, 1), 12000, 100, {**SHIFTS, "zoom_range": 0.1}, mnist=True),
    "resnet20": Case("resnet20", (32, 32, 3), 5000, 128, {**SHIFTS, "horizontal_flip": True}),
    "mobilenet_v2": Case("mobilenet_v2", (96, 96, 3), 1000, 32, {**SHIFTS, "zoom_range": 0.1, "horizontal_flip": True}),
    "unet": Case("unet", (64, 84, 1), 1600, 32, {"horizontal_flip": True}, classes=11, mnist=True,
                 task="segmentation", model=(("width", 0.125), ("batch_norm", True), ("dropout", 0.0))),
}
UNET_LEVELS = (64, 128, 256, 512)  # the U-Net's filters by level (1024 at the bottom), times the case's width


class EpochTimer(keras.callbacks.Callback):
    """The last epoch, from its start to the end of training (every callback's epoch end included).

    ``seconds``: its wall time; ``share``: the CPU seconds this process got per wall second
    (about 1.9 when both cores train; near 1.0 in the repetitions the host slows down).
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start
        self.share = (time.process_time() - self.cpu) / self.seconds

    def measure(self, images):
        return Measure(images / self.seconds, self.share)


@dataclass(frozen=True)
class Measure:
    rate: float  # images per second of the timed epoch
    share: float  # CPU seconds per wall second of this process in that epoch


# --------------------------------------------------------------------------- data


def make_images(case, images, seed, mnist_npz):
    """``(x uint8 (N, H, W, C), y int64)``: a seeded MNIST subset, or random pixels with balanced labels."""
    rng = np.random.default_rng(seed)
    if case.task == "segmentation":
        from mnist_canvases import build_task, load_mnist

        x, y = build_task("segmentation", load_mnist(mnist_npz), {"train": images, "test": 1}, seed)["train"]
        return x.reshape(-1, *case.shape), y
    if case.mnist:
        with np.load(mnist_npz) as f:
            x, y = f["x_train"], f["y_train"]
        keep = np.sort(rng.choice(len(x), size=images, replace=False))
        return x[keep].reshape(-1, *case.shape), y[keep].astype(np.int64)
    x = rng.integers(0, 256, size=(images, *case.shape), dtype=np.uint8)
    return x, rng.permutation(np.arange(images) % case.classes).astype(np.int64)


def write_npz(folder, name, x, y):
    """The images as an .npz in keras.datasets' layout (what cnnlab's ``dataset: npz`` reads)."""
    path = Path(folder) / f"{name}.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


def read_npz(path):
    with np.load(path) as f:
        return f["x_train"], f["y_train"]


# --------------------------------------------------------------------------- cnnlab


def cnnlab_config(case, npz, aug, precision, seed, output_dir, overrides=()):
    """The experiment a user would write for this case; callbacks on, watching ``loss`` (no validation split).

    `overrides`: ``KEY=VALUE`` strings applied last, as ``cnnlab train --set`` does.
    """
    watch = {"monitor": "loss"}
    return build_config(apply_overrides({
        "seed": seed, "output_dir": str(output_dir), "task": case.task,
        "data": {"dataset": "npz", "path": str(npz), "batch_size": case.batch, "validation_split": 0.0,
                 "test_split": 0.0},
        "augmentation": case.augmentation if aug else {},
        "model": {"architecture": case.architecture, **dict(case.model)},
        "training": {"precision": precision},
        "callbacks": {"model_checkpoint": watch, "reduce_lr_on_plateau": watch, "early_stopping": watch}},
        overrides))


def cnnlab_model(cfg):
    """`(bundle, compiled model)` as `cnnlab.commands.train.train` makes them."""
    setup(cfg)
    bundle = load_data(cfg)
    model = build(cfg, bundle)
    compile_model(model, cfg, bundle.classes, bundle.steps_per_epoch())
    return bundle, model


@contextlib.contextmanager
def timer_injected(timer):
    """`fit` with `timer` appended to the callbacks it makes (as tests/test_resume.py injects one)."""
    original = fit_module.make_callbacks
    fit_module.make_callbacks = lambda *args, **kwargs: [*original(*args, **kwargs), timer]
    try:
        yield
    finally:
        fit_module.make_callbacks = original


def run_cnnlab(cfg, epochs, workdir):
    """Images/s of `cnnlab.training.fit.fit` into a throw-away run folder, progress lines swallowed."""
    bundle, model = cnnlab_model(cfg)
    timer, run = EpochTimer(), Path(tempfile.mkdtemp(dir=workdir))
    try:
        with timer_injected(timer), contextlib.redirect_stdout(io.StringIO()):
            fit_module.fit(model, bundle, cfg, run, epochs=epochs, verbose=2)  # 2: a run's progress off a terminal
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return timer.measure(len(bundle.train))


def run_cnnlab_bare(cfg, epochs):
    """Images/s of cnnlab's model on cnnlab's pipeline, ``model.fit`` with no callback but the timer."""
    bundle, model = cnnlab_model(cfg)
    timer = EpochTimer()
    model.fit(bundle.train_dataset(epochs=epochs), steps_per_epoch=bundle.steps_per_epoch(), epochs=epochs,
              callbacks=[timer], verbose=0, shuffle=False)
    return timer.measure(len(bundle.train))


# --------------------------------------------------------------------------- the hand-written script


def conv(filters, padding="same", **kwargs):
    return layers.Conv2D(filters, 3, padding=padding, activation="relu", kernel_initializer="he_normal", **kwargs)


def keras_deep_cnn(x, classes):
    """The book's DeepConvNet; its 4th convolution pads by 2 (28 -> 14 -> 8 -> 4)."""
    x = conv(16)(x)
    x = conv(16)(x)
    x = layers.MaxPooling2D(2)(x)
    x = conv(32)(x)
    x = layers.ZeroPadding2D(2)(x)
    x = conv(32, padding="valid")(x)
    x = layers.MaxPooling2D(2)(x)
    x = conv(64)(x)
    x = conv(64)(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(50, activation="relu", kernel_initializer="he_normal")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(classes, kernel_initializer="he_normal")(x)
    x = layers.Dropout(0.5)(x)
    return layers.Activation("softmax", dtype="float32")(x)


def conv_bn(x, filters, kernel, strides=1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal")(x)
    return layers.BatchNormalization(epsilon=1.001e-5)(x)


def keras_resnet20(x, classes):
    """CIFAR ResNet-20 (He et al. 4.2) with 1x1 projection shortcuts where the shape changes."""
    x = layers.Activation("relu")(conv_bn(x, 16, 3))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x if strides == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, strides)
            y = layers.Activation("relu")(conv_bn(x, filters, 3, strides))
            y = conv_bn(y, filters, 3)
            x = layers.Activation("relu")(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(classes, activation="softmax", dtype="float32", kernel_initializer="he_normal")(x)


def keras_mobilenet_v2(x, classes):
    """keras.applications.MobileNetV2 without its top, then GAP, dropout, softmax (cnnlab's head)."""
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=tuple(x.shape[1:]))
    x = layers.GlobalAveragePooling2D()(base(x))
    x = layers.Dropout(0.5)(x)
    return layers.Dense(classes, activation="softmax", dtype="float32", kernel_initializer="he_normal")(x)


def keras_unet(x, classes, width=0.125):
    """Ronneberger et al.'s U-Net at `width` of its filters: two 3x3 conv-BN-ReLU per level, 2x2 max-pooling
    (``same``: 84 -> 42 -> 21 -> 11 -> 6), 2x2 transposed convolutions cropped to their skip's size, then
    concatenated with it, and a 1x1 convolution to the classes."""
    def double(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
            x = layers.Activation("relu")(layers.BatchNormalization(epsilon=1.001e-5)(x))
        return x

    skips = []
    for filters in UNET_LEVELS:
        x = double(x, round(filters * width))
        skips.append(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = double(x, round(1024 * width))
    for filters, skip in reversed(list(zip(UNET_LEVELS, skips))):
        x = layers.Conv2DTranspose(round(filters * width), 2, strides=2, kernel_initializer="he_normal")(x)
        extra = (x.shape[1] - skip.shape[1], x.shape[2] - skip.shape[2])
        if extra != (0, 0):
            x = layers.Cropping2D(((0, extra[0]), (0, extra[1])))(x)
        x = double(layers.Concatenate()([skip, x]), round(filters * width))
    x = layers.Conv2D(classes, 1, kernel_initializer="he_normal")(x)
    return layers.Activation("softmax", dtype="float32")(x)


KERAS_BODIES = {"deep_cnn": keras_deep_cnn, "resnet20": keras_resnet20, "mobilenet_v2": keras_mobilenet_v2,
                "unet": keras_unet}


def keras_model(case):
    """The hand-written model, compiled as cnnlab compiles its own (Adam 1e-3, cross-entropy, accuracy, top-5);
    the U-Net as the keras-io example compiles it (Adam, sparse cross-entropy, no metric)."""
    inputs = keras.Input(case.shape)
    x = layers.Rescaling(1 / 255)(inputs)
    model = keras.Model(inputs, KERAS_BODIES[case.architecture](x, case.classes))
    if case.task == "segmentation":
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        return model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                           keras.metrics.TopKCategoricalAccuracy(5, name="top5_accuracy")])
    return model


def keras_augmentation(case, seed):
    """Keras's preprocessing layers for cnnlab's keys, kept in float32: what a user writes by hand."""
    a, fill = case.augmentation, {"fill_mode": "nearest", "seed": seed, "dtype": "float32"}
    out = [layers.RandomRotation(a["rotation_range"] / 360, **fill),
           layers.RandomTranslation(a["height_shift_range"], a["width_shift_range"], **fill)]
    if "zoom_range" in a:
        out.append(layers.RandomZoom((-a["zoom_range"], a["zoom_range"]), (-a["zoom_range"], a["zoom_range"]), **fill))
    if a.get("horizontal_flip"):
        out.append(layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
    return keras.Sequential(out)


def keras_augmented(x, y, case, seed):
    import tensorflow as tf

    augment = keras_augmentation(case, seed)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(case.batch)
    ds = ds.map(lambda images, labels: (augment(images, training=True), labels), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def run_keras(case, x, y, aug, precision, epochs, seed):
    """Images/s of the hand-written script: ``fit`` on float32 arrays (or its tf.data augmentation)."""
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy(precision)
    model = keras_model(case)
    timer = EpochTimer()
    if case.task == "segmentation":  # the keras-io example's way: fit on a tf.data pipeline of batches
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("int32")))
        ds = ds.shuffle(len(x), seed=seed).batch(case.batch)
        if aug:
            flip = layers.RandomFlip("horizontal", seed=seed, dtype="float32")
            ds = ds.map(lambda images, masks: _flipped(flip, images, masks), num_parallel_calls=tf.data.AUTOTUNE)
        model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, callbacks=[timer], verbose=0)
        return timer.measure(len(x))
    x, y = x.astype("float32"), keras.utils.to_categorical(y, case.classes)
    if aug:
        model.fit(keras_augmented(x, y, case, seed), epochs=epochs, callbacks=[timer], verbose=0, shuffle=False)
    else:
        model.fit(x, y, batch_size=case.batch, epochs=epochs, callbacks=[timer], verbose=0)
    return timer.measure(len(x))


def _flipped(flip, images, masks):
    """Keras's RandomFlip on an image batch and its masks together (its dict input)."""
    out = flip({"images": images, "segmentation_masks": masks[..., None]}, training=True)
    return out["images"], out["segmentation_masks"][..., 0]


# --------------------------------------------------------------------------- one run, the same network


def conv_shapes(model):
    """Output shapes of every convolution in order, nested models (a keras.applications base) walked."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += conv_shapes(layer)
        elif isinstance(layer, CONV_TYPES):
            out.append(tuple(layer.output.shape[1:]))
    return out


def check_same_network(name, case, npz, seed, workdir):
    """Fail loudly unless cnnlab's model and the hand-written one have the same parameters and conv shapes."""
    keras.backend.clear_session()
    _, model = cnnlab_model(cnnlab_config(case, npz, False, "float32", seed, workdir))
    ours = (model.count_params(), conv_shapes(model))
    keras.backend.clear_session()
    model = keras_model(case)
    hand = (model.count_params(), conv_shapes(model))
    keras.backend.clear_session()
    if ours != hand:
        raise SystemExit(f"{name}: cnnlab's model and the hand-written one differ: parameters "
                         f"{ours[0]:,} vs {hand[0]:,}; conv output shapes\n  cnnlab {ours[1]}\n  keras  {hand[1]}")
    print(f"{name}: same network: {ours[0]:,} parameters, {len(ours[1])} convolutions of the same output shapes")


def run_one(contender, case, npz, aug, precision, args, workdir):
    """The `Measure` of one contender's run, from a clean session; the float32 policy is restored after."""
    keras.backend.clear_session()
    try:
        if contender == "keras":
            x, y = read_npz(npz)
            return run_keras(case, x, y, aug, precision, args.epochs, args.seed)
        cfg = cnnlab_config(case, npz, aug, precision, args.seed, workdir, args.set)
        if contender == "cnnlab":
            return run_cnnlab(cfg, args.epochs, workdir)
        return run_cnnlab_bare(cfg, args.epochs)
    finally:
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()


# --------------------------------------------------------------------------- timing


def schedule(args, rep):
    """The runs of one repetition: every (aug, precision, contender), reversed on odd repetitions."""
    runs = [(aug == "aug", p, c) for aug in args.aug for p in args.precisions for c in args.contenders]
    return runs[::-1] if rep % 2 else runs


def time_case(name, npz, args, workdir):
    """``{(aug, precision, contender): [images/s per repetition]}`` and the same of CPU shares, of one case."""
    case, rates, shares = CASES[name], {}, {}
    for rep in range(args.reps):
        for aug, precision, contender in schedule(args, rep):
            measure = run_one(contender, case, npz, aug, precision, args, workdir)
            rates.setdefault((aug, precision, contender), []).append(measure.rate)
            shares.setdefault((aug, precision, contender), []).append(measure.share)
        print(f"  {name}: repetition {rep + 1}/{args.reps} done", flush=True)
    return rates, shares


def stats(rates):
    """Median, best, min, max and the repetitions (1-based) below HALF_SPEED x best."""
    best = max(rates)
    half = [i + 1 for i, r in enumerate(rates) if r < HALF_SPEED * best]
    return {"median": statistics.median(rates), "best": best, "min": min(rates), "max": max(rates), "half": half}


def ratio(rates, a, b):
    """Ratio of the medians of two keys of `rates`, or None when one was not measured."""
    if a not in rates or b not in rates:
        return None
    return statistics.median(rates[a]) / statistics.median(rates[b])


def fmt(value, spec=".2f"):
    return "n/a" if value is None else format(value, spec)


def aug_name(aug):
    return "aug" if aug else "none"


def print_case(name, rates, shares, args):
    """Per (aug, precision, contender): median, best, min-max, median/best, CPU shares, half-speed repetitions."""
    print(f"\n{name}: images/s of the last of {args.epochs} epochs, {args.reps} repetitions")
    print(f"{'aug':<5}{'precision':<16}{'contender':<13}{'median':>9}{'best':>9}{'min-max':>17}"
          f"{'med/best':>10}  {'CPU share per rep':<30}half speed (<{HALF_SPEED}x best)")
    for (aug, precision, contender), values in rates.items():
        s = stats(values)
        spread = f"{s['min']:.0f}-{s['max']:.0f}"
        cpu = " ".join(f"{v:.2f}" for v in shares[(aug, precision, contender)])
        print(f"{aug_name(aug):<5}{precision:<16}{contender:<13}{s['median']:>9.0f}{s['best']:>9.0f}{spread:>17}"
              f"{s['median'] / s['best']:>10.2f}  {cpu:<30}{', '.join(f'rep {i}' for i in s['half']) or '-'}")
    for line in ratio_lines(rates, args):
        print(line)


def ratio_lines(rates, args):
    """cnnlab/keras, the callbacks' cost, augmentation's cost and bf16/float32, from medians."""
    augs, out = sorted({k[0] for k in rates}), []
    for aug in augs:
        for p in args.precisions:
            key = (aug, p)
            out.append(f"  {aug_name(aug)} {p}: cnnlab/keras {fmt(ratio(rates, (*key, 'cnnlab'), (*key, 'keras')))}"
                       f"; cnnlab_bare/keras {fmt(ratio(rates, (*key, 'cnnlab_bare'), (*key, 'keras')))}"
                       f"; callbacks cost {callbacks_cost(rates, key)} (target <= 3%)")
    for c in args.contenders:
        for p in args.precisions if len(augs) == 2 else ():
            out.append(f"  {c} {p}: augmentation costs {fmt(cost(rates, (True, p, c), (False, p, c)), '.1%')}"
                       + (" (target <= 10%)" if c == "cnnlab" else ""))
        for aug in augs if len(args.precisions) == 2 else ():
            out.append(f"  {c} {aug_name(aug)}: mixed_bfloat16/float32 "
                       f"{fmt(ratio(rates, (aug, 'mixed_bfloat16', c), (aug, 'float32', c)))}"
                       + (" (target >= 1.35)" if c == "cnnlab" else ""))
    return out


def cost(rates, slower, faster):
    """``1 - slower/faster`` of the medians: the share of throughput that `slower` loses."""
    r = ratio(rates, slower, faster)
    return None if r is None else 1 - r


def callbacks_cost(rates, key):
    """What the callbacks cost (``cnnlab`` against ``cnnlab_bare``), from the medians."""
    return fmt(cost(rates, (*key, "cnnlab"), (*key, "cnnlab_bare")), ".1%")


def summary_table(results):
    """Markdown rows: one per (case, aug, precision), each contender's median (best) and the ratios."""
    rows = ["| case | aug | precision | cnnlab | cnnlab, no callbacks | keras | cnnlab/keras | callbacks cost "
            "| half-speed reps |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, rates in results.items():
        for aug, p in dict.fromkeys((k[0], k[1]) for k in rates):
            cells = []
            for c in CONTENDERS:
                s = stats(rates[(aug, p, c)]) if (aug, p, c) in rates else None
                cells.append(f"{s['median']:,.0f} ({s['best']:,.0f})" if s else "n/a")
            half = [f"{c} {i}" for c in CONTENDERS if (aug, p, c) in rates for i in stats(rates[(aug, p, c)])["half"]]
            rows.append(f"| {name} | {aug_name(aug)} | {p} | {' | '.join(cells)} "
                        f"| {fmt(ratio(rates, (aug, p, 'cnnlab'), (aug, p, 'keras')))} "
                        f"| {callbacks_cost(rates, (aug, p))} "
                        f"| {', '.join(half) or '-'} |")
    return rows


# --------------------------------------------------------------------------- peak memory


def child(args):
    """Run `args.only` once on `args.child_data` and print its images/s and peak memory as JSON."""
    case = CASES[args.cases[0]]
    with tempfile.TemporaryDirectory() as workdir:
        rate = run_one(args.only, case, Path(args.child_data), args.aug[0] == "aug", args.precisions[0], args,
                       workdir).rate
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"rate": rate, "peak_mib": peak}))


def peak_memory(name, npz, aug, precision, contender, args):
    """Peak MiB of one contender's run in a fresh process (this script with ``--only``)."""
    command = [sys.executable, __file__, "--only", contender, "--child-data", str(npz), "--cases", name,
               "--aug", aug_name(aug), "--precisions", precision, "--epochs", str(args.epochs),
               "--seed", str(args.seed), *[a for item in args.set for a in ("--set", item)]]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def memory_table(npzs, args):
    """Markdown rows of each contender's peak MiB per (case, aug, precision) and cnnlab/keras."""
    rows = ["| case | aug | precision | " + " | ".join(f"{c} MiB" for c in CONTENDERS) + " | cnnlab/keras |",
            "| --- | --- | --- | " + " | ".join("---:" for _ in CONTENDERS) + " | ---: |"]
    for name, npz in npzs.items():
        for aug in args.aug:
            for p in args.precisions:
                peaks = {c: peak_memory(name, npz, aug == "aug", p, c, args) for c in args.contenders}
                r = peaks["cnnlab"] / peaks["keras"] if {"cnnlab", "keras"} <= set(peaks) else None
                cells = " | ".join(f"{peaks[c]:,.0f}" if c in peaks else "n/a" for c in CONTENDERS)
                rows.append(f"| {name} | {aug} | {p} | {cells} | {fmt(r)} |")
    return rows


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=[c for c in CASES if c != "unet"],
                        help="default: the classification cases (unet: segmentation, issue 21)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (0: no timing, e.g. with --memory)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the last is timed (at least 2)")
    parser.add_argument("--images", type=int, help="training images of every case (default: each case's own)")
    parser.add_argument("--aug", nargs="+", choices=AUG_CHOICES, default=list(AUG_CHOICES))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help="MNIST in keras.datasets layout (deep_cnn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of cnnlab's experiment, as `cnnlab train --set` does "
                             "(e.g. runtime.fast_kernels=false)")
    parser.add_argument("--memory", action="store_true", help="also each contender's peak memory, fresh process")
    parser.add_argument("--only", choices=CONTENDERS, help=argparse.SUPPRESS)  # the --memory child
    parser.add_argument("--child-data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes tracing")
    if {"deep_cnn", "unet"} & set(args.cases) and not args.only and not args.npz.is_file():
        parser.error(f"deep_cnn and unet need MNIST as an .npz: {args.npz} not found (pass --npz)")
    return args


def prepare(args, folder):
    """Write each case's training images to an .npz in `folder`; check each network against cnnlab's."""
    npzs = {}
    for name in args.cases:
        case = CASES[name]
        x, y = make_images(case, args.images or case.images, args.seed, args.npz)
        npzs[name] = write_npz(folder, name, x, y)
        print(f"{name}: {len(x):,} images of {case.shape}, batch {case.batch}"
              + (f"; augmentation {case.augmentation}" if "aug" in args.aug else ""))
        check_same_network(name, case, npzs[name], args.seed, folder)
    return npzs


def main(argv=None):
    args = parse_args(argv)
    if args.only:
        return child(args)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = shlex.join(["python", *sys.argv])
    print(f"{started}  {command}\nkeras {keras.__version__}, {os.cpu_count()} cores; last of {args.epochs} "
          f"epochs timed, {args.reps} repetitions, alternating")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        npzs = prepare(args, folder)
        for name, npz in npzs.items() if args.reps else ():
            results[name], shares = time_case(name, npz, args, folder)
            print_case(name, results[name], shares, args)
        memory = memory_table(npzs, args) if args.memory else []
    print(f"\n{started}  {command}")
    for line in (summary_table(results) if results else []) + ([""] if results and memory else []) + memory:
        print(line)


if __name__ == "__main__":
    main()
