"""Architectures side by side: one worker process each, built and warmed up, then timed in alternation.

`measure_architectures` starts a `cnnlab.benchmarking.worker` per architecture, one
at a time: each imports TensorFlow, builds, counts, compiles and warms up its model
alone, so its warm-up times its steps truly. Then the repetitions: each asks every
worker for one measurement in turn (`cnnlab.benchmarking.timing.alternate`), so only
one computes at any time; last, each worker's peak memory.

A worker keeps its model, its optimizer state and its peak memory for as long as it
lives, so workers are held together only while the machine has room. Each model's
memory is estimated before it is started (`expected_bytes`: the catalog's parameter
and multiply-add counts), and the largest are started first, while the machine is
emptiest; before another one starts, the memory available must exceed the larger of
its estimate and the largest peak measured so far, plus `HEADROOM`. Otherwise the
workers built so far are measured as a group and ended, and the next group starts;
repetitions alternate within a group. A worker that fails (an architecture that
cannot take the images, out of memory) becomes a row with its reason; the others go
on. The results keep the order of the specs, whatever order they were measured in.
"""

from dataclasses import dataclass, field
from typing import Optional

from cnnlab.benchmarking import memory
from cnnlab.benchmarking.timing import Dropped, alternate, progress_bar
from cnnlab.benchmarking.worker import WorkerSpec
from cnnlab.benchmarking.workers import Worker

FIGURES = ("train", "predict_1", "predict_batch")  # the rates a worker measures, images per second
HEADROOM = 2**30  # memory left free beyond the next worker (its estimate, or the largest peak so far)
WORKER_BYTES = 800 * 2**20  # a worker's resident memory once TensorFlow, Keras and cnnlab are imported
BYTES_PER_PARAMETER = 16  # float32: the weight, its gradient and Adam's two moments
# Activations kept for the backward pass, per multiply-add of one image: a rough figure (networks differ several
# times over: wide early layers keep more per operation), enough to rank the models and start none blind.
BYTES_PER_MULTIPLY_ADD = 0.01


@dataclass
class Measured:
    """What was found for one architecture.

    Attributes:
        facts: parameters, flops, multiply_adds, steps_per_execution (None when it never got ready).
        rates: ``{figure: Spread}`` of images per second, figures as in `FIGURES`.
        peak_bytes: peak resident memory beyond the worker's baseline.
        problem: why figures are missing, or None.
        group: the group of workers it was measured with (1, 2, ...: see the module's docstring).
    """

    name: str
    facts: Optional[dict] = None
    rates: dict = field(default_factory=dict)
    peak_bytes: Optional[int] = None
    problem: Optional[str] = None
    group: int = 1


def measure_architectures(specs, repeats, progress=False, echo=print):
    """Measure the architectures of `specs` (`WorkerSpec`s), `repeats` alternating repetitions each, the
    largest expected first (see the module's docstring).

    Returns:
        A `Measured` per spec, in their order.
    """
    found = {spec.architecture: Measured(spec.architecture) for spec in specs}
    pending, group = sorted(specs, key=expected_bytes, reverse=True), 0
    while pending:
        group, workers = group + 1, {}
        try:
            build_group(pending, workers, found, group, echo)
            with progress_bar(repeats * len(workers), progress, f"Measuring {len(workers)} model(s)") as tick:
                measure_group(workers, found, repeats, tick)
        finally:
            for worker in workers.values():
                worker.quit()  # all at once: each takes a second or two to wind TensorFlow down
            for worker in workers.values():
                worker.close()
    return list(found.values())


def build_group(pending, workers, found, group, echo):
    """Start and build workers from `pending` (taking them off it) while memory allows another."""
    while pending:
        spec = pending[0]
        name = spec.architecture
        if not room_for(spec, workers):
            if workers:
                echo(f"Not enough memory for {name} beside {', '.join(workers)}: measuring them first.")
                return
            echo(f"{name} may need about {expected_bytes(spec) / 2**30:.1f} GiB, more than the machine has "
                 "available: trying anyway.")
        pending.pop(0)
        echo(f"Building {name} ...")
        worker = Worker(spec)
        found[name].group = group
        try:
            worker.imported()
            found[name].facts = worker.ask(build=True)
            workers[name] = worker
        except Dropped as exc:
            found[name].problem = str(exc)
            worker.close()


def expected_bytes(spec):
    """The memory a worker for `spec` is expected to take at its peak, before it is started: TensorFlow's,
    the weights with their training state, and the activations of a batch (`WorkerSpec.expected_counts`)."""
    parameters, multiply_adds = spec.expected_counts()
    return WORKER_BYTES + BYTES_PER_PARAMETER * parameters + BYTES_PER_MULTIPLY_ADD * multiply_adds * spec.batch_size


def room_for(spec, workers):
    """Whether the machine can hold the worker of `spec` beside `workers` and `HEADROOM`: the memory available
    must exceed its expected size, and the largest peak of `workers` (the largest are started first)."""
    available = memory.available_bytes()
    peaks = [memory.peak_bytes(worker.process.pid) or 0 for worker in workers.values()]
    return available is None or available >= max([expected_bytes(spec), *peaks]) + HEADROOM


def measure_group(workers, found, repeats, tick):
    """The alternating repetitions of a group of workers, then their peak memory."""
    rates, dropped = alternate(list(workers), lambda name: workers[name].ask(measure=True), repeats, tick)
    for name, worker in workers.items():
        if name in dropped:
            found[name].problem = dropped[name]
            continue
        found[name].rates = rates[name]
        try:
            found[name].peak_bytes = worker.ask(memory=True)["peak_bytes"]
        except Dropped as exc:
            found[name].problem = str(exc)


def worker_specs(names, input_shape, classes, batch_size, seconds):
    """A `WorkerSpec` per architecture name."""
    return [WorkerSpec(name, tuple(input_shape), classes, batch_size, seconds) for name in names]
