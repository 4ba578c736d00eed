"""`lr-find`: the learning-rate range test (Smith 2017; fastai's ``lr_find``, Lightning's ``Tuner.lr_find``).

The experiment's model trains on its own training batches (augmentation included)
for a number of steps while the learning rate rises exponentially from a tiny rate
to a large one. Each step's loss, smoothed as fastai smooths it (an exponential
moving average with bias correction), is plotted against the rate; the sweep stops
early once the loss diverges (4 times its lowest). The suggestion is fastai's default,
the valley (part-way down the longest stretch where the loss falls); the rate where it
falls fastest (Lightning's) and a tenth of the rate at its lowest (fastai's classic
rule) are given beside it. Nothing is written into ``runs/``.
"""

import math
from dataclasses import dataclass

import numpy as np

from cnnlab.errors import TrainingError

SMOOTHING = 0.98  # fastai's
DIVERGED = 4.0  # the loss at this multiple of its lowest ends the sweep


@dataclass
class RangeTest:
    """A sweep's rates, raw and smoothed losses, and the rates read off it."""

    rates: list
    losses: list
    smoothed: list
    valley: float | None
    steepest: float | None
    minimum_tenth: float | None

    @property
    def suggestion(self):
        """fastai's default (the valley), else the steepest descent, else a tenth of the minimum."""
        return self.valley or self.steepest or self.minimum_tenth

    def to_dict(self):
        return {"suggestion": self.suggestion, "valley": self.valley, "steepest": self.steepest,
                "minimum_tenth": self.minimum_tenth, "rates": self.rates, "losses": self.losses,
                "smoothed": self.smoothed}


def smooth(losses, beta=SMOOTHING):
    """The exponential moving average of `losses`, bias-corrected (fastai's ``SmoothenValue``)."""
    out, average = [], 0.0
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** step))
    return out


def longest_valley(values):
    """fastai's ``valley``: the index 1/2 of the way down the longest decreasing run of `values`, or None.

    The run is the longest strictly decreasing subsequence (not necessarily contiguous);
    its start and end bound the valley.
    """
    n = len(values)
    if n < 3:
        return None
    lengths, end = [1] * n, 0
    for i in range(1, n):
        for j in range(i):
            if values[i] < values[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
        if lengths[end] < lengths[i]:
            end = i
    start = end - lengths[end]
    third = (end - start) / 3
    return max(start + int(third) + int(third / 2), 0) if lengths[end] > 1 else None


def suggest(rates, losses):
    """A `RangeTest` of the sweep: the valley, the steepest descent, and a tenth of the minimum.

    As fastai does, the first tenth of the sweep and its last 5 steps (where the loss
    runs away) are left out of the search.
    """
    smoothed = smooth(losses)
    first, last = len(smoothed) // 10, len(smoothed) - 5 if len(smoothed) > 20 else len(smoothed)
    search = np.asarray(smoothed[first:last])
    if len(search) < 3:
        return RangeTest(list(rates), list(losses), smoothed, None, None, None)
    searched = np.asarray(rates[first:last], dtype=float)
    low = int(np.argmin(search))
    slopes = np.gradient(search, np.log(searched))
    steep = int(np.argmin(slopes[:low + 1]))
    valley = longest_valley(list(search))
    return RangeTest(list(rates), list(losses), smoothed, None if valley is None else float(searched[valley]),
                     float(searched[steep]) if slopes[steep] < 0 else None, float(searched[low]) / 10)


def _sweep_callback(rates):
    """A Keras callback: epoch ``i`` (one batch) at ``rates[i]``; records each batch's loss; stops on divergence."""
    import keras

    class RateSweep(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate.assign(rates[epoch])

        def on_epoch_end(self, epoch, logs=None):
            loss = float((logs or {}).get("loss", math.nan))
            self.losses.append(loss)
            smoothed = smooth(self.losses)
            if not math.isfinite(loss) or smoothed[-1] > DIVERGED * min(smoothed):
                self.model.stop_training = True

    return RateSweep()


def lr_find(cfg, *, start=1e-7, end=10.0, steps=100, output="lr_find.png", echo=print):
    """Run the range test on the experiment `cfg`; write its plot to `output`; return the `RangeTest`.

    Each step is one Keras epoch of one batch, so the loss Keras logs is that batch's
    own (within an epoch Keras logs a running mean). The optimizer, its arguments,
    the loss (label smoothing included), precision and augmentation are the experiment's;
    for GoogLeNet the loss includes its auxiliary classifiers' (weighted 0.3).
    """
    from cnnlab import files
    from cnnlab.models.assemble import build
    from cnnlab.session import setup

    files.check_writable_file(output, "the plot", "Give -o a .png in a folder you can write to.")
    setup(cfg, backend=True)
    from cnnlab.data.pipeline import load_data
    from cnnlab.training.fit import compile_model
    from cnnlab.visual import plots

    data = load_data(cfg)
    data.describe(echo)
    model = build(cfg, data)
    compile_model(model, cfg, data.classes, 1, learning_rate=start, labels=data.train.labels)
    rates = start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))
    sweep = _sweep_callback(rates)
    echo(f"Sweeping the learning rate from {start:g} to {end:g} over {steps} batches of {data.batch_size}")
    batches = data.train_dataset(epochs=steps, steps_per_epoch=1, outputs=len(model.outputs))
    model.fit(batches, epochs=steps, steps_per_epoch=1, callbacks=[sweep], verbose=0, shuffle=False)
    finite = [i for i, loss in enumerate(sweep.losses) if math.isfinite(loss)]
    if not finite:
        raise TrainingError(f"the loss was not finite at the first learning rate, --start {start:g} (received "
                            f"{sweep.losses[0]}): check the data's scaling or the model, or lower --start.")
    result = suggest([float(rates[i]) for i in finite], [sweep.losses[i] for i in finite])
    plots.lr_find(result, output)
    return result
