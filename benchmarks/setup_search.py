"""The fastest setup on this CPU (issue 10): environment variables, steps_per_execution, evaluation batch.

Three parts, each alternating its variants over repetitions (reversed on odd ones):

- ``env``: cnnlab's model and pipeline with a bare ``fit`` (throughput.py's
  ``cnnlab_bare``) on deep_cnn, 12,000 MNIST images, float32, in a fresh process per
  variant: TensorFlow's defaults, ``TF_NUM_INTEROP_THREADS=1``, ``TF_ENABLE_ONEDNN_OPTS=0``;
- ``spe``: the hand-written deep_cnn fitted on a repeated tf.data pipeline (autotune off)
  with ``steps_per_execution`` 1, 4 and 8;
- ``eval``: ``evaluate`` on the 10,000 MNIST test images with batches of 100 to 1,024.

Prints images/s per repetition, then median and best per variant.

    python benchmarks/setup_search.py [--parts env spe eval] [--reps 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
ENV_VARIANTS = {"default": {}, "TF_NUM_INTEROP_THREADS=1": {"TF_NUM_INTEROP_THREADS": "1"},
                "TF_ENABLE_ONEDNN_OPTS=0": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
CHILD = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, {here!r})
import throughput as T
case = T.CASES["deep_cnn"]
folder = Path(tempfile.mkdtemp())
x, y = T.make_images(case, 12000, 0, T.DEFAULT_NPZ)
cfg = T.cnnlab_config(case, T.write_npz(folder, "d", x, y), False, "float32", 0, folder)
print(json.dumps(T.run_cnnlab_bare(cfg, 2).rate))
"""


def alternate(variants, reps, measure):
    """``{variant: [rate per repetition]}``, the order reversed on odd repetitions."""
    rates = {v: [] for v in variants}
    for rep in range(reps):
        for variant in (variants if rep % 2 == 0 else variants[::-1]):
            rates[variant].append(measure(variant))
            print(f"  {variant}: {rates[variant][-1]:,.0f} img/s", flush=True)
    return rates


def env_rate(variant):
    env = {**os.environ, **ENV_VARIANTS[variant]}
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(HERE))], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spe_measure():
    import keras
    import tensorflow as tf

    sys.path.insert(0, str(HERE))
    import throughput as T

    case = T.CASES["deep_cnn"]
    x, y = T.make_images(case, 12000, 0, T.DEFAULT_NPZ)
    x, y = x.astype("float32"), keras.utils.to_categorical(y, 10)
    options = tf.data.Options()
    options.autotune.enabled = False

    def measure(spe):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = T.keras_model(case)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")], steps_per_execution=spe)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(100).repeat().prefetch(2).with_options(options)
        timer = T.EpochTimer()
        model.fit(ds, epochs=2, steps_per_epoch=len(x) // 100, callbacks=[timer], verbose=0)
        return timer.measure(len(x)).rate

    return measure


def eval_measure():
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(HERE))
    import throughput as T

    with np.load(T.DEFAULT_NPZ) as f:
        x = f["x_test"].reshape(-1, 28, 28, 1).astype("float32") / 255
        y = keras.utils.to_categorical(f["y_test"], 10)
    model = T.keras_model(T.CASES["deep_cnn"])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])

    def measure(batch):
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(-1)
        model.evaluate(ds, verbose=0)  # traced once per batch size
        start = time.perf_counter()
        model.evaluate(ds, verbose=0)
        return len(x) / (time.perf_counter() - start)

    return measure


def report(title, rates):
    print(title)
    base = statistics.median(next(iter(rates.values())))
    for variant, values in rates.items():
        median = statistics.median(values)
        print(f"  {str(variant):<28} median {median:>8,.0f}  best {max(values):>8,.0f}  x{median / base:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("env", "spe", "eval"), default=["env", "spe", "eval"])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {' '.join(sys.argv)}")
    results = []
    if "env" in args.parts:
        results.append(("environment (fresh process each)", alternate(list(ENV_VARIANTS), args.reps, env_rate)))
    if "spe" in args.parts:
        results.append(("steps_per_execution", alternate([1, 4, 8], args.reps, spe_measure())))
    if "eval" in args.parts:
        results.append(("evaluation batch size", alternate([100, 256, 512, 1024], args.reps, eval_measure())))
    for title, rates in results:
        report(title, rates)


if __name__ == "__main__":
    main()
