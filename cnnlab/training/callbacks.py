"""Callbacks from the ``callbacks:`` section, with Keras's own argument names."""

import math
import time
from pathlib import Path

import keras

from cnnlab.keras_private import checkpoint_with_save
from cnnlab import files
from cnnlab.catalog import direction
from cnnlab.distribution import local, primary_only
from cnnlab.rundir import MODEL_FILE


def finite(logs):
    """Whether every number in an epoch's logs is finite (a NaN epoch is never saved)."""
    return all(math.isfinite(v) for v in (logs or {}).values() if isinstance(v, (int, float)))


class AtomicModelCheckpoint(checkpoint_with_save(keras.callbacks.ModelCheckpoint)):
    """ModelCheckpoint that writes through `cnnlab.files.atomic_path` and never saves a NaN epoch.

    A kill or a full disk during the save leaves the previous best model intact.
    """

    def __init__(self, filepath, **kwargs):
        super().__init__(str(filepath), **kwargs)
        self.target = Path(filepath)

    def save(self, epoch, batch, logs):
        if finite(logs):
            primary_only(lambda: self._save_atomically(epoch, batch, logs))  # on several workers, process 0 saves

    def _save_atomically(self, epoch, batch, logs):
        with files.atomic_path(self.target) as tmp, local():
            self.filepath = str(tmp)
            files.cache_keras_skipsets()
            super().save(epoch, batch, logs)


class PhaseLogger(keras.callbacks.Callback):
    """Adds ``phase`` (fine-tuning's 1 or 2) to the epoch logs, for history.csv."""

    def __init__(self, phase):
        super().__init__()
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = self.phase


class EpochLine(keras.callbacks.Callback):
    """One line per epoch (for logs and pipes, where a progress bar is a stream of frames)."""

    def __init__(self, epochs, print_fn=print):
        super().__init__()
        self.epochs, self.print_fn, self.started = epochs, print_fn, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        metrics = " - ".join(f"{k}: {v:.4g}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        self.print_fn(f"Epoch {epoch + 1}/{self.epochs} - {time.monotonic() - self.started:.1f}s - {metrics}")


def make_callbacks(cfg, run, *, phase=None, monitor=None, writes=True):
    """The configured callbacks for one `fit`, plus the NaN guard.

    The resume state and history.csv are written by `cnnlab.training.resume.Checkpointer`,
    which `fit` adds after these.

    Args:
        cfg: a CallbacksConfig.
        run: the run folder.
        phase: fine-tuning phase written to history.csv, or None.
        monitor: maps a configured monitor to its name in the logs (multi-output models).
        writes: False on the workers other than process 0: no TensorBoard logs.
    """
    run = Path(run)
    rename = monitor or (lambda name: name)

    def watch(args):
        """Keras's arguments with the monitor's name in the logs and an explicit mode."""
        return {**args, "monitor": rename(args["monitor"]), "mode": direction(args["monitor"], args["mode"])}

    out = [keras.callbacks.TerminateOnNaN()]
    if phase is not None:
        out.append(PhaseLogger(phase))
    if cfg.model_checkpoint is not None:
        out.append(AtomicModelCheckpoint(run / MODEL_FILE, **watch(cfg.model_checkpoint.model_dump())))
    if cfg.reduce_lr_on_plateau is not None:
        out.append(keras.callbacks.ReduceLROnPlateau(**watch(cfg.reduce_lr_on_plateau.model_dump())))
    if cfg.early_stopping is not None:
        out.append(keras.callbacks.EarlyStopping(**watch(cfg.early_stopping.model_dump())))
    if cfg.tensorboard and writes:
        out.append(keras.callbacks.TensorBoard(log_dir=str(run / "tensorboard")))
    return out
