"""Timed loops of about a fixed duration, and repetitions that alternate between contenders.

Each measurement repeats its call until `seconds` have passed (at least once), so a
tiny model and a large one both get a stable figure. Repetition ``r`` measures
every contender once before repetition ``r + 1`` starts, in reverse order on odd
repetitions, so that a machine slowing down or warming up over the run weighs on
all of them alike. A figure is the median of its repetitions; their spread is
reported as half the range (max - min), as a fraction of the median.
"""

import contextlib
import statistics
import sys
import time
from dataclasses import dataclass

import click

MEASURE_SECONDS = 1.0  # the least duration of one timed measurement
SPREAD_NOTE = "median of {n} alternating repetition(s), ± half their range (max - min) as a % of the median"


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements, with their smallest and largest."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values):
        """The spread of `values` (at least one)."""
        values = [float(v) for v in values]
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def relative(self):
        """Half the range as a fraction of the median (0 for one repetition)."""
        return (self.high - self.low) / 2 / self.median if self.median else 0.0

    def cell(self, spec=",.0f"):
        """``1,234 ±3%`` (the ± only with several repetitions)."""
        text = format(self.median, spec)
        return text if self.count < 2 else f"{text} ±{100 * self.relative:.0f}%"


class Dropped(Exception):
    """A contender that cannot be measured any more (its process died, its runtime failed): the reason."""


def rate(call, images, seconds=MEASURE_SECONDS):
    """Images per second of `call` (each call handles `images` images), repeated for at least `seconds`."""
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * images / elapsed


def alternate(contenders, measure, repeats, tick=None):
    """Measure every contender once per repetition, `repeats` times, alternating between them.

    Args:
        contenders: names, in the order of even repetitions.
        measure: ``measure(name)`` -> ``{figure: value}`` of one repetition; raises `Dropped` when the
            contender cannot go on (it is then left out of the later repetitions).
        repeats: how many repetitions.
        tick: called after each measurement, or None.

    Returns:
        ``({name: {figure: Spread}}, {name: why it was dropped})``.
    """
    values, dropped = {name: {} for name in contenders}, {}
    for repetition in range(repeats):
        order = contenders if repetition % 2 == 0 else list(reversed(contenders))
        for name in order:
            if name in dropped:
                continue
            try:
                for figure, value in measure(name).items():
                    values[name].setdefault(figure, []).append(value)
            except Dropped as exc:
                dropped[name] = str(exc)
            if tick is not None:
                tick()
    spreads = {name: {figure: Spread.of(found) for figure, found in figures.items()}
               for name, figures in values.items() if name not in dropped}
    return spreads, dropped


@contextlib.contextmanager
def progress_bar(total, enabled, label):
    """A ``tick()`` that advances a progress bar of `total` steps on stderr while the ``with`` block runs.

    The bar is click's, so the parent process of the architectures' workers stays free of TensorFlow; it shows
    only when `enabled` (a terminal: click also hides it when stderr is none), and ``tick`` does nothing otherwise.
    """
    if not enabled or not total:
        yield lambda: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)
