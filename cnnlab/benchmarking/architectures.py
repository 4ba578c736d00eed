"""Architectures side by side: one worker process each, built and warmed up, then timed in alternation.

`measure_architectures` starts a `cnnlab.benchmarking.worker` per architecture, one
at a time: each imports TensorFlow, builds, counts, compiles and warms up its model
alone, so its warm-up times its steps truly. Then the repetitions: each asks every
worker for one measurement in turn (`cnnlab.benchmarking.timing.alternate`), so only
one computes at any time; last, each worker's peak memory.

A worker keeps its model, its optimizer state and its peak memory for as long as it
lives, so workers are held together only while the machine has room: before another
one starts, the memory available must exceed the largest peak so far plus
`HEADROOM`. Otherwise the workers built so far are measured as a group and ended,
and the next group starts; repetitions alternate within a group. A worker that fails
(an architecture that cannot take the images, out of memory) becomes a row with its
reason; the others go on.
"""

from dataclasses import dataclass, field
from typing import Optional

from cnnlab.benchmarking import memory
from cnnlab.benchmarking.timing import Dropped, alternate, ticker
from cnnlab.benchmarking.worker import WorkerSpec
from cnnlab.benchmarking.workers import Worker

FIGURES = ("train", "predict_1", "predict_batch")  # the rates a worker measures, images per second
HEADROOM = 2**30  # memory left free beyond another worker as large as the largest so far


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
    """Measure the architectures of `specs` (`WorkerSpec`s), `repeats` alternating repetitions each.

    Returns:
        A `Measured` per spec, in their order.
    """
    found = {spec.architecture: Measured(spec.architecture) for spec in specs}
    pending, group = list(specs), 0
    tick, done = ticker(repeats * len(specs), progress)
    while pending:
        group, workers = group + 1, {}
        try:
            build_group(pending, workers, found, group, echo)
            measure_group(workers, found, repeats, tick)
        finally:
            for worker in workers.values():
                worker.quit()  # all at once: each takes a second or two to wind TensorFlow down
            for worker in workers.values():
                worker.close()
    done()
    return list(found.values())


def build_group(pending, workers, found, group, echo):
    """Start and build workers from `pending` (taking them off it) while memory allows another."""
    while pending:
        if workers and not room_for_another(workers):
            echo(f"Not enough memory for another model beside {', '.join(workers)}: measuring them first.")
            return
        spec = pending.pop(0)
        name = spec.architecture
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


def room_for_another(workers):
    """Whether the machine can hold another worker as large as the largest of `workers`, and `HEADROOM`."""
    available = memory.available_bytes()
    peaks = [memory.peak_bytes(worker.process.pid) or 0 for worker in workers.values()]
    return available is None or available >= max(peaks) + HEADROOM


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
