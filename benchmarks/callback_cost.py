"""Where a run's callbacks spend their time: each callback's hooks timed inside `fit` (issue 10).

Trains throughput.py's ``cnnlab`` contender (its config, pipeline, model, and
`cnnlab.training.fit.fit` with every callback a run uses) and wraps every hook
of every callback with a timer. Prints, per callback, the milliseconds its hooks
took per epoch (the first epoch, which traces the graph, left out) and their share
of the epoch; and what the saves write.

    python benchmarks/callback_cost.py [--case deep_cnn] [--precision float32] [--epochs 4] [--images N]

Run it alone on the machine: the figures are wall times of code that shares the cores.
"""

import argparse
import collections
import contextlib
import datetime
import gc
import io
import shlex
import sys
import tempfile
import time
from pathlib import Path

import keras
import throughput
from throughput import CASES, cnnlab_config, cnnlab_model, make_images, write_npz

from cnnlab.training import fit as fit_module

HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_epoch_end",
         "on_train_end")


def timed(callback, totals):
    """Wrap each hook of `callback` (on the instance) so that its wall time adds up in ``totals[(name, hook)]``."""
    name = type(callback).__name__
    for hook in HOOKS:
        original = getattr(callback, hook)

        def wrapper(*args, _original=original, _hook=hook, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[(name, _hook)] += time.perf_counter() - start

        setattr(callback, hook, wrapper)
    return callback


class GcClock:
    """Wall time in Python's garbage collector, anywhere in the process, into
    ``totals[("(garbage collector)", "generation N")]``."""

    def __init__(self, totals):
        self.totals, self.started = totals, None

    def __call__(self, phase, info):
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started is not None:
            self.totals[("(garbage collector)", f"generation {info['generation']}")] += (
                time.perf_counter() - self.started)


class EpochClock(keras.callbacks.Callback):
    """Every epoch's wall time but the first, from its start to the next one's (or training's end);
    ``first``: the hooks' totals when the second epoch begins."""

    def __init__(self, totals):
        super().__init__()
        self.totals, self.first, self.epochs, self.start = totals, {}, [], None

    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        if epoch == 1:
            self.first = dict(self.totals)
        elif epoch > 1:
            self.epochs.append(now - self.start)
        self.start = now

    def on_train_end(self, logs=None):
        self.epochs.append(time.perf_counter() - self.start)


def profile(cfg, epochs, workdir):
    """``(totals {(callback, hook): seconds from the second epoch on}, [epoch seconds], {file: bytes})``."""
    bundle, model = cnnlab_model(cfg)
    totals = collections.defaultdict(float)
    clock = EpochClock(totals)
    original = fit_module.make_callbacks
    real_checkpointer = fit_module.resume.Checkpointer

    def make_callbacks(*args, **kwargs):
        return [clock, *(timed(c, totals) for c in original(*args, **kwargs))]  # first: it snapshots the totals

    class Checkpointer(real_checkpointer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            timed(self, totals)

    fit_module.make_callbacks, fit_module.resume.Checkpointer = make_callbacks, Checkpointer
    original_line = fit_module.EpochLine
    fit_module.EpochLine = lambda *a, **k: timed(original_line(*a, **k), totals)
    run = Path(tempfile.mkdtemp(dir=workdir))
    collector = GcClock(totals)
    gc.callbacks.append(collector)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            fit_module.fit(model, bundle, cfg, run, epochs=epochs, verbose=2)
    finally:
        gc.callbacks.remove(collector)
        fit_module.make_callbacks, fit_module.resume.Checkpointer = original, real_checkpointer
        fit_module.EpochLine = original_line
    written = {p.relative_to(run).as_posix(): p.stat().st_size for p in run.rglob("*") if p.is_file()}
    return {k: v - clock.first.get(k, 0.0) for k, v in totals.items()}, clock.epochs, written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=list(CASES), default="deep_cnn")
    parser.add_argument("--precision", choices=throughput.PRECISIONS, default="float32")
    parser.add_argument("--epochs", type=int, default=4, help="epochs; the first (tracing) is left out")
    parser.add_argument("--images", type=int)
    parser.add_argument("--npz", type=Path, default=throughput.DEFAULT_NPZ)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes tracing and is left out")
    case = CASES[args.case]
    print(f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}  "
          f"{shlex.join(['python', *sys.argv])}")
    with tempfile.TemporaryDirectory() as folder:
        x, y = make_images(case, args.images or case.images, 0, args.npz)
        cfg = cnnlab_config(case, write_npz(folder, args.case, x, y), "none", args.precision, 0,
                            Path(folder) / "runs", args.set)
        totals, epochs, written = profile(cfg, args.epochs, folder)
    timed_epochs = len(epochs)
    epoch = sum(epochs) / timed_epochs
    print(f"{args.case}, {len(x):,} images, {args.precision}: {timed_epochs} epochs timed, "
          f"{epoch * 1000:,.0f} ms each on average")
    print("| callback | hook | ms per epoch | share of the epoch |\n| --- | --- | ---: | ---: |")
    rows = sorted(((v / timed_epochs, name, hook) for (name, hook), v in totals.items()), reverse=True)
    for ms, name, hook in rows:
        if ms > 5e-5:  # the hooks under 0.05 ms are in the total only
            print(f"| {name} | {hook} | {ms * 1000:.1f} | {ms / epoch:.2%} |")
    total = sum(ms for ms, name, _ in rows if name != "(garbage collector)")
    print(f"| all callbacks | | {total * 1000:.1f} | {total / epoch:.2%} |")
    print("written: " + ", ".join(f"{name} {size / 1024:,.0f} KiB" for name, size in sorted(written.items())))


if __name__ == "__main__":
    main()
