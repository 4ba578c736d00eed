"""Where mixed_bfloat16 wins and loses time: TensorFlow's profiler on the throughput benchmark's networks.

For each case of benchmarks/throughput.py (the same networks: its hand-written Keras model, or
cnnlab's with ``--builder cnnlab``) and each configuration, this script builds and compiles the
model, warms up a few train steps on one random batch of the case's shape (the data pipeline
is kept out of the way: the same batch, repeated), times ``--steps`` steps without the
profiler, then traces ``--steps`` more with ``tf.profiler.experimental.start/stop``; all that
``--rounds`` times, the configurations in alternating order, keeping each figure's smallest
over the rounds (the host's other load only ever adds time). It reads
the ``.xplane.pb`` the profiler writes (with the ``xplane_pb2`` that TensorFlow ships; no
tensorboard-plugin-profile needed) and sums, per train step, the time of every TensorFlow
op kernel on the executor's threads, by op type (after oneDNN's graph rewrite, e.g.
``_MklNativeFusedConv2D``) and by the Keras layer class the op belongs to (its name scope;
gradient ops count with their layer; the optimizer's as ``optimizer``). It prints, per
case, both tables with one column of ms per step per configuration and its ratio to the
first, the Cast ops per step, and the step wall time.

Configurations: a dtype policy, optionally with cnnlab's fast kernels (``cnnlab.training.kernels``,
which ``runtime.fast_kernels`` turns on; off here unless named): ``+fused_bn`` (each
BatchNormalization trains with ``FusedBatchNormV3`` on the layer's compute dtype, bfloat16
under the mixed policy, where Keras 3 casts to float32 and computes moments and the
normalisation from primitive ops), ``+f32_strided_dw`` (each DepthwiseConv2D with strides
computes in float32 under bfloat16: oneDNN 3.7's bfloat16 backward-data kernel for strided depthwise
convolutions, ``brgconv_strided``, is many times slower than its float32 ``jit_dw``; see
``ONEDNN_VERBOSE=1``), or ``+grappler_bf16`` (Grappler's ``auto_mixed_precision_onednn_bfloat16``
rewrite of a float32 graph, instead of Keras's policy). Options combine: ``mixed_bfloat16+fused_bn+f32_strided_dw``.

Op time is the sum of kernel durations on TensorFlow's inter-op threads: two ops running
at once both count, so the total can exceed the step's wall time. Absolute times swing with
the host (share it, and they inflate); compare ratios within one run.

    python benchmarks/profile_precision.py [--cases resnet20 mobilenet_v2]
        [--configs float32 mixed_bfloat16 mixed_bfloat16+fused_bn float32+grappler_bf16]
        [--warmup 3] [--steps 10] [--rounds 2] [--batch N] [--builder keras|cnnlab] [--top 25]
        [--logdir /tmp/profile_precision] [--json out.json]
"""

import argparse
import collections
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (the networks and cases of the throughput benchmark)

from cnnlab.training.kernels import speed_up  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")
KERNELS = {"fused_bn": "batch_norm", "f32_strided_dw": "strided_depthwise"}  # cnnlab.training.kernels's
OPTIONS = (*KERNELS, "grappler_bf16")
OPTIMIZER_SCOPES = ("adam", "optimizer")


# --------------------------------------------------------------------------- configurations


def parse_config(text):
    """`text` if it reads ``policy[+option...]`` with a known policy and options."""
    policy, *options = text.split("+")
    if policy not in POLICIES or any(o not in OPTIONS for o in options):
        raise argparse.ArgumentTypeError(f"{text!r}: a policy of {POLICIES}, then optional +{'/+'.join(OPTIONS)}")
    return text


@contextlib.contextmanager
def configured(config):
    """Keras's dtype policy and Grappler's options of `config`, restored after."""
    policy, *options = config.split("+")
    keras.backend.clear_session()  # before the policy: clearing the session resets it to float32
    keras.config.set_dtype_policy(policy)
    if "grappler_bf16" in options:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": False})
        keras.config.set_dtype_policy("float32")


# --------------------------------------------------------------------------- the model and its steps


def cnnlab_model(case, config, seed):
    """cnnlab's model of the case, compiled as a run compiles it but without its fast kernels (the policy comes from
    `configured`, the kernels from `build_model`)."""
    from cnnlab.models.assemble import assemble
    from cnnlab.training.fit import compile_model

    policy = config.split("+")[0]
    with tempfile.TemporaryDirectory() as folder:
        cfg = throughput.cnnlab_config(case, Path(folder) / "unused.npz", False, policy, seed, folder,
                                       ["runtime.fast_kernels=false"])
    model = assemble(cfg, case.shape, case.classes)
    return compile_model(model, cfg, case.classes, steps_per_epoch=100)


def build_model(case, config, builder, seed):
    """The case's compiled model, with the fast kernels `config` names (``+fused_bn``, ``+f32_strided_dw``)."""
    keras.utils.set_random_seed(seed)
    model = cnnlab_model(case, config, seed) if builder == "cnnlab" else throughput.keras_model(case)
    kernels = [KERNELS[option] for option in config.split("+")[1:] if option in KERNELS]
    speed_up(model, kernels=kernels)
    return model


def batches(case, batch, seed):
    """One random batch of the case's shape (pixels 0-255, one-hot labels), repeated forever, no autotuning."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(batch, *case.shape)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, case.classes, size=batch), case.classes)
    options = tf.data.Options()
    options.autotune.enabled = False  # else ending fit's iterator can wait seconds for the autotuner (BENCHMARKS.md)
    return tf.data.Dataset.from_tensors((x, y)).repeat().with_options(options)


def train(model, data, steps):
    """Wall seconds of `steps` train steps (one ``fit`` epoch, no callbacks)."""
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def layer_classes(model, out=None):
    """``{layer name: class name}`` of every layer, nested models walked."""
    out = {} if out is None else out
    for layer in model.layers:
        out[layer.name] = type(layer).__name__
        if isinstance(layer, keras.Model):
            layer_classes(layer, out)
    return out


# --------------------------------------------------------------------------- the trace


def read_xspace(logdir):
    files = sorted(Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
    if not files:
        raise SystemExit(f"no .xplane.pb under {logdir}: did the profiler run?")
    space = xplane_pb2.XSpace()
    space.ParseFromString(files[-1].read_bytes())
    return space


def op_events(space):
    """``(op name, op type, milliseconds)`` of every op kernel the executor ran (tf.data's threads left out)."""
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if line.name.startswith("tf_data"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:  # TraceMe's of the runtime (ExecutorState::Process...)
                    continue
                op_name, op_type = (part.strip() for part in name.rsplit(":", 1))
                if op_type.startswith("__"):  # the call of a tf.function (__inference_...): its ops count apart
                    continue
                yield op_name, op_type, event.duration_ps / 1e9


def owner(op_name, classes):
    """The Keras layer class an op belongs to, by the deepest scope naming a layer; or optimizer / other."""
    scopes = op_name.split("/")
    for scope in reversed(scopes):
        for candidate in (scope, re.sub(r"_\d+$", "", scope)):  # Keras's TF scopes add _1, _2 to layer names
            if candidate in classes:
                return classes[candidate]
    if any(scope in OPTIMIZER_SCOPES for scope in scopes):
        return "optimizer"
    return "other"


def aggregate(space, classes, steps):
    """ms per step by op type and by layer class, Cast counts and time by layer class, ops per step."""
    by_type, by_layer = collections.Counter(), collections.Counter()
    casts, cast_ms, ops = collections.Counter(), collections.Counter(), 0
    for op_name, op_type, ms in op_events(space):
        layer = owner(op_name, classes)
        by_type[op_type] += ms / steps
        by_layer[layer] += ms / steps
        ops += 1
        if op_type == "Cast":
            casts[layer] += 1 / steps
            cast_ms[layer] += ms / steps
    return {"by_type": dict(by_type), "by_layer": dict(by_layer), "casts": dict(casts), "cast_ms": dict(cast_ms),
            "ops_per_step": ops / steps}


def smallest(results):
    """Per key, the smallest value over the rounds of one configuration (the least disturbed by the host)."""
    out = {}
    for key, value in results[0].items():
        if isinstance(value, dict):
            keys = {k for r in results for k in r[key]}
            out[key] = {k: min(r[key].get(k, 0.0) for r in results) for k in keys}
        elif isinstance(value, float):
            out[key] = min(r[key] for r in results)
        else:
            out[key] = value
    return out


def profile(case, config, args, round_):
    """Untraced and traced step times and the aggregated trace of one configuration."""
    batch = args.batch or case.batch
    with configured(config):
        model = build_model(case, config, args.builder, args.seed)
        data = batches(case, batch, args.seed)
        train(model, data, args.warmup)
        untraced = train(model, data, args.steps)
        logdir = Path(args.logdir) / f"{case.architecture}_{config}_{round_}"
        tf.profiler.experimental.start(str(logdir))
        try:
            traced = train(model, data, args.steps)
        finally:
            tf.profiler.experimental.stop()
        result = aggregate(read_xspace(logdir), layer_classes(model), args.steps)
    keras.backend.clear_session()
    result.update(step_ms=1000 * untraced / args.steps, traced_step_ms=1000 * traced / args.steps, batch=batch,
                  logdir=str(logdir))
    return result


# --------------------------------------------------------------------------- the report


KEY = 48  # width of the first column


def table(title, rows, configs, top, total="total op time"):
    """One row per key of the configurations' dicts, the largest (in any configuration) first."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: -max(r.get(k, 0.0) for r in rows))
    head = "".join(f"{c:>{max(12, len(c) + 2)}}" for c in configs)
    ratios = "".join(f"{'x ' + str(i + 1):>7}" for i in range(1, len(configs)))
    print(f"\n{title:<{KEY}}{head}{ratios}")
    shown = keys[:top]
    for key in shown:
        values = [r.get(key, 0.0) for r in rows]
        cells = "".join(f"{v:>{max(12, len(c) + 2)}.2f}" for v, c in zip(values, configs))
        print(f"{key[:KEY - 1]:<{KEY}}{cells}{''.join(f'{ratio(v, values[0]):>7}' for v in values[1:])}")
    if len(keys) > top:
        rest = [sum(r.get(k, 0.0) for k in keys[top:]) for r in rows]
        cells = "".join(f"{v:>{max(12, len(c) + 2)}.2f}" for v, c in zip(rest, configs))
        print(f"{f'({len(keys) - top} more)':<{KEY}}{cells}{''.join(f'{ratio(v, rest[0]):>7}' for v in rest[1:])}")
    totals = [sum(r.values()) for r in rows]
    cells = "".join(f"{v:>{max(12, len(c) + 2)}.2f}" for v, c in zip(totals, configs))
    print(f"{total:<{KEY}}{cells}{''.join(f'{ratio(v, totals[0]):>7}' for v in totals[1:])}")


def ratio(value, base):
    return "-" if not base or not value else f"{value / base:.2f}"


def report(name, results, configs, top):
    """The case's tables: ms per step per configuration, then each configuration's ratio to the first."""
    rows = [results[c] for c in configs]
    print(f"\n=== {name}: batch {rows[0]['batch']}, ms per train step (ratio: column / {configs[0]})")
    table("op type", [r["by_type"] for r in rows], configs, top)
    table("layer class (forward + gradient)", [r["by_layer"] for r in rows], configs, top)
    table("Cast ops per step, by layer class", [r["casts"] for r in rows], configs, top, total="total Cast ops")
    table("Cast ms per step, by layer class", [r["cast_ms"] for r in rows], configs, top, total="total Cast ms")
    width = "".join(f"{c:>{max(12, len(c) + 2)}}" for c in configs)
    print(f"\n{'':<{KEY}}{width}")
    for label, key in (("op kernels per step", "ops_per_step"), ("step wall ms, untraced", "step_ms"),
                       ("step wall ms, traced", "traced_step_ms")):
        values = [r[key] for r in rows]
        cells = "".join(f"{v:>{max(12, len(c) + 2)}.1f}" for v, c in zip(values, configs))
        print(f"{label:<{KEY}}{cells}{''.join(f'{ratio(v, values[0]):>7}' for v in values[1:])}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["resnet20", "mobilenet_v2"], choices=sorted(throughput.CASES))
    parser.add_argument("--configs", nargs="+", type=parse_config, default=["float32", "mixed_bfloat16"])
    parser.add_argument("--builder", choices=("keras", "cnnlab"), default="keras",
                        help="the hand-written network of throughput.py (default) or cnnlab's")
    parser.add_argument("--warmup", type=int, default=3, help="train steps before timing (the first traces)")
    parser.add_argument("--steps", type=int, default=10, help="train steps timed, then as many traced")
    parser.add_argument("--rounds", type=int, default=2,
                        help="profile every configuration this many times (alternating order); keep each figure's "
                             "smallest")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the case's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--logdir", default=str(Path(tempfile.gettempdir()) / "profile_precision"))
    parser.add_argument("--json", type=Path, default=None, help="also write the aggregated results here")
    args = parser.parse_args(argv)

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, oneDNN opts "
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')}, {os.cpu_count()} CPUs; "
          f"{args.warmup} warm-up steps, {args.steps} timed and {args.steps} traced per configuration and round, "
          f"{args.rounds} rounds (each figure: its smallest over the rounds)")
    everything = {}
    for name in args.cases:
        case, rounds = throughput.CASES[name], {}
        for round_ in range(args.rounds):
            for config in args.configs[::-1] if round_ % 2 else args.configs:
                result = profile(case, config, args, round_)
                rounds.setdefault(config, []).append(result)
                print(f"  {name} {config} round {round_ + 1}: {result['step_ms']:.0f} ms per step untraced, "
                      f"{result['traced_step_ms']:.0f} traced", flush=True)
        results = {config: smallest(values) for config, values in rounds.items()}
        report(name, results, args.configs, args.top)
        everything[name] = results
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
