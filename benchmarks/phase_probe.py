"""Run a Python program, or a console script such as ``cnnlab``, and log when its training phases happen.

    python benchmarks/phase_probe.py EVENTS.jsonl PROGRAM [ARG ...]

For `whole_process.py`: the program runs as ``__main__`` in this process, untouched,
and each event of Keras's `fit` is appended to EVENTS.jsonl as ``{"event", "t"}``
(``time.time()``), flushed at once so that a killed or ``os._exit``-ing process
keeps what it logged:

- ``train_begin``: ``fit`` starts (after the data is read and the model compiled);
- ``first_batch``: the first batch of that ``fit`` is about to run;
- ``epoch_end``: an epoch (and its validation) has ended;
- ``train_end``: ``fit``'s callbacks have ended (Keras's ``on_train_end``);
- ``fit_return``: ``fit`` has returned, its data iterators released (the time between
  ``train_end`` and ``fit_return`` is what tearing down the iterators cost).

The hook goes on Keras's ``CallbackList`` when the program imports Keras, so the
program chooses its backend and environment before Keras starts, as it does alone.
The hand-written script and ``cnnlab`` run under the same probe.
"""

import importlib.abc
import importlib.util
import json
import os
import runpy
import shutil
import sys
import time

CALLBACKS = "keras.src.callbacks.callback_list"
TRAINER = "keras.src.backend.tensorflow.trainer"


def logger(path):
    stream = open(path, "a", buffering=1)  # line-buffered: each event reaches the file at once

    def log(event):
        stream.write(json.dumps({"event": event, "t": time.time()}) + "\n")

    return log


def hook_fit(module, log):
    """Log when TensorFlow's ``fit`` has returned."""
    fit = module.TensorFlowTrainer.fit

    def logged_fit(self, *args, **kwargs):
        try:
            return fit(self, *args, **kwargs)
        finally:
            log("fit_return")

    module.TensorFlowTrainer.fit = logged_fit


def hook_callbacks(module, log):
    """Wrap ``CallbackList``'s train-begin, batch-begin, epoch-end and train-end calls with `log`."""
    cls = module.CallbackList
    begin, batch, epoch_end, end = (cls.on_train_begin, cls.on_train_batch_begin, cls.on_epoch_end,
                                    cls.on_train_end)
    waiting = {"first": False}

    def on_train_begin(self, logs=None):
        log("train_begin")
        waiting["first"] = True
        return begin(self, logs)

    def on_train_batch_begin(self, step, logs=None):
        if waiting["first"]:
            waiting["first"] = False
            log("first_batch")
        return batch(self, step, logs)

    def on_epoch_end(self, epoch, logs=None):
        result = epoch_end(self, epoch, logs)
        log("epoch_end")
        return result

    def on_train_end(self, logs=None):
        result = end(self, logs)
        log("train_end")
        return result

    cls.on_train_begin, cls.on_train_batch_begin = on_train_begin, on_train_batch_begin
    cls.on_epoch_end, cls.on_train_end = on_epoch_end, on_train_end


class AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports module `name` as usual, then calls ``hook(module, log)``."""

    def __init__(self, name, hook, log):
        self.name, self.hook, self.log = name, hook, log

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # find_spec below, and later imports, go the usual way
        spec = importlib.util.find_spec(name)
        self.original, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.original.create_module(spec)

    def exec_module(self, module):
        self.original.exec_module(module)
        self.hook(module, self.log)


def main():
    events, program, *args = sys.argv[1:]
    log = logger(events)
    sys.meta_path[:0] = [AfterImport(CALLBACKS, hook_callbacks, log), AfterImport(TRAINER, hook_fit, log)]
    path = program if program.endswith(".py") else shutil.which(program)
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(path))  # as ``python PROGRAM`` would have it
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
