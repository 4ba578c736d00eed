"""One architecture in a process of its own: built, counted, compiled as cnnlab trains, then timed on request.

``python -m cnnlab.benchmarking.worker SPEC`` (SPEC: the JSON of a `WorkerSpec`)
imports TensorFlow and says so; then it answers one JSON request per line on stdin
with one JSON line on its own copy of stdout (anything else the libraries print goes
to stderr):

- ``{"build": true}`` (the first request): build the model, count its operations, compile it with
  `cnnlab.training.fit.compile_model` and warm it up; the answer holds the counts. The parent starts
  workers one at a time and waits for each to be built before it starts the next
  (`cnnlab.benchmarking.architectures`): a warm-up that runs alone times its steps truly, and the
  next one's start can be weighed against the memory the others hold;
- ``{"measure": true}``: one repetition: training images/s (``model.fit`` on one random batch
  repeated, as cnnlab fits), inference images/s at batch 1 and at the batch size (``predict_on_batch``,
  as `cnnlab predict` and `evaluate` call the model);
- ``{"memory": true}``: the peak resident memory beyond the baseline (`cnnlab.benchmarking.memory`);
- ``{"quit": true}``: exit.

Every answer is ``{"ok": {...}}`` or ``{"error": "why"}``. A process per architecture keeps its model
and compiled functions between repetitions, so the repetitions can alternate between architectures,
and its peak memory is the model's alone.
"""

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

STEPS_MOST = 8  # runtime.steps_per_execution's default: batches per compiled call where a measurement fits them
WARMUP_CALLS = 2


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker builds and how long it times."""

    architecture: str
    input_shape: tuple
    classes: int
    batch_size: int
    seconds: float

    def to_json(self):
        return json.dumps(asdict(self))

    def expected_counts(self):
        """``(parameters, multiply-adds per image)`` to expect of the model, from the catalog's counts at 224x224
        (`cnnlab.catalog.PARAMETER_COUNTS`; ``(0, 0)`` where it has none), before anything is built.

        Multiply-adds scale with the image's area. Parameters are kept for smaller images and scaled with the
        area for larger ones: a network's convolutions and a head behind global pooling do not change with the
        image, and a flattened head shrinks or grows with it, so the figure errs on the large side.
        """
        from cnnlab import catalog

        counts = catalog.PARAMETER_COUNTS.get(self.architecture)
        if counts is None:
            return 0, 0
        height, width = catalog.COUNTS_SHAPE[:2]
        area = self.input_shape[0] * self.input_shape[1] / (height * width)
        return round(counts[0] * max(1.0, area)), round(counts[1] * area)


class Bench:
    """The model of one architecture, compiled, with its random images and the calls a measurement times."""

    def __init__(self, spec):
        import keras

        from cnnlab.config import ModelConfig
        from cnnlab.models.registry import build_model

        keras.utils.set_random_seed(0)
        self.spec = spec
        self.model = build_model(ModelConfig(architecture=spec.architecture), spec.input_shape, spec.classes)
        self.one, self.batch, self.data = random_batches(spec)
        self.steps_per_execution = self.fit_steps = 1  # set by `compile`

    def facts(self):
        """Parameters and counted operations (before compiling: fast kernels change no count); on a backend
        the counter cannot read (JAX), no operations and the reason."""
        from cnnlab.benchmarking.flops import count_operations
        from cnnlab.errors import CnnlabError

        try:
            found = count_operations(self.model, self.spec.input_shape)
        except CnnlabError as exc:
            return {"parameters": self.model.count_params(), "flops": None, "multiply_adds": None, "note": str(exc)}
        return {"parameters": self.model.count_params(), "flops": found.flops, "multiply_adds": found.multiply_adds}

    def compile(self):
        """Compile as cnnlab trains: `STEPS_MOST` batches per compiled call (``runtime.steps_per_execution``'s
        default) where half a measurement fits that many; a slower model one batch per call (its per-call overhead
        is lost in its step time). A training measurement calls ``fit`` for about half its duration at a time."""
        step = self._compiled(1)
        if step * STEPS_MOST <= self.spec.seconds / 2:
            step = self._compiled(STEPS_MOST) / STEPS_MOST
        self.fit_steps = self.steps_per_execution * max(1, math.floor(self.spec.seconds / 2 / step
                                                                       / self.steps_per_execution))

    def _compiled(self, steps_per_execution):
        """Compile for `steps_per_execution` batches per call, warm up; seconds per batch of the last call."""
        from cnnlab.training.fit import compile_model

        compile_model(self.model, benchmark_config(self.spec), self.spec.classes, steps_per_execution)
        self.steps_per_execution = steps_per_execution
        for _ in range(WARMUP_CALLS):
            start = time.perf_counter()
            self.model.fit(self.data, epochs=1, steps_per_epoch=steps_per_execution, verbose=0)
        return (time.perf_counter() - start) / steps_per_execution

    def warm_up(self):
        """Trace the prediction calls of both batch sizes."""
        for _ in range(WARMUP_CALLS):
            self.predict(self.one)
            self.predict(self.batch)

    def predict(self, images):
        from cnnlab.inference.predictions import predict_batch

        return predict_batch(self.model, images)

    def measure(self):
        """One repetition of the three rates, images per second."""
        from cnnlab.benchmarking.timing import rate

        seconds, size = self.spec.seconds, self.spec.batch_size
        train = rate(lambda: self.model.fit(self.data, epochs=1, steps_per_epoch=self.fit_steps, verbose=0),
                     self.fit_steps * size, seconds)
        return {"train": train, "predict_1": rate(lambda: self.predict(self.one), 1, seconds),
                "predict_batch": rate(lambda: self.predict(self.batch), size, seconds)}


def random_batches(spec):
    """One random image, a batch of them, and the training data: that batch with one-hot labels, repeated."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.random((spec.batch_size, *spec.input_shape), dtype=np.float32)
    labels = np.eye(spec.classes, dtype=np.float32)[rng.integers(0, spec.classes, spec.batch_size)]
    return images[:1], images, tf.data.Dataset.from_tensors((images, labels)).repeat()


def benchmark_config(spec):
    """An experiment with the defaults a run trains with (Adam, cross-entropy, top-k metrics), for compiling."""
    from cnnlab.config import build_config

    return build_config({"data": {"dataset": "cifar10", "batch_size": spec.batch_size},
                         "model": {"architecture": spec.architecture}}, "cnnlab benchmark")


def serve(spec, channel, baseline):
    """Say the imports are done; build, count and warm up when asked; then answer requests until told to quit
    (or stdin closes)."""
    answer(channel, {"ok": {"baseline_bytes": baseline}})
    bench = None
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            return
        if request.get("build"):
            bench = Bench(spec)
            facts = bench.facts()
            bench.compile()
            bench.warm_up()
            answer(channel, {"ok": {**facts, "steps_per_execution": bench.steps_per_execution}})
        elif request.get("memory"):
            from cnnlab.benchmarking.memory import peak_bytes

            answer(channel, {"ok": {"peak_bytes": peak_bytes() - baseline, "baseline_bytes": baseline}})
        else:
            answer(channel, {"ok": bench.measure()})


def answer(channel, message):
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main(argv):
    """Keep a private stdout for answers; whatever else prints goes to stderr."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras  # noqa: F401  (TensorFlow and Keras: the baseline is what they hold)
    import tensorflow  # noqa: F401

    import cnnlab.models  # noqa: F401
    import cnnlab.training.fit  # noqa: F401
    from cnnlab.benchmarking.memory import resident_bytes
    from cnnlab.errors import CnnlabError

    baseline = resident_bytes()
    fields = json.loads(argv[0])
    try:
        serve(WorkerSpec(**{**fields, "input_shape": tuple(fields["input_shape"])}), channel, baseline)
    except CnnlabError as exc:
        answer(channel, {"error": str(exc)})
    except Exception as exc:  # out of memory, a kernel that refuses the shape: the row says so, the others go on
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        answer(channel, {"error": f"{type(exc).__name__}: {first}"})


if __name__ == "__main__":
    main(sys.argv[1:])
