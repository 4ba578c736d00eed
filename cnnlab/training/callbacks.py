"""Callbacks from the ``callbacks:`` section, with Keras's own argument names."""

import math
import os
from pathlib import Path

import keras

from cnnlab.artifacts import BACKUP_DIR, HISTORY_FILE, MODEL_FILE


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that saves to a temporary file, then renames it over `filepath`.

    A kill during the save leaves the previous best model intact.
    """

    def __init__(self, filepath, **kwargs):
        self.target = str(filepath)
        self.partial = str(Path(filepath).with_name(".partial." + Path(filepath).name))
        super().__init__(self.partial, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if os.path.exists(self.partial):
            os.replace(self.partial, self.target)


class PhaseLogger(keras.callbacks.Callback):
    """Adds ``phase`` (fine-tuning's 1 or 2) to the epoch logs, for history.csv."""

    def __init__(self, phase):
        super().__init__()
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = self.phase


def direction(monitor, mode):
    """``min`` or ``max`` for a monitored metric: `mode`, or read from the name when ``auto``."""
    if mode != "auto":
        return mode
    if monitor.endswith(("loss", "error")):
        return "min"
    return "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1")) else "auto"


def best_so_far(history, monitor, mode):
    """The best value of `monitor` in earlier epochs, for a resumed checkpoint's threshold."""
    values = [row[monitor] for row in history if isinstance(row.get(monitor), float) and not math.isnan(row[monitor])]
    if not values:
        return None
    return max(values) if direction(monitor, mode) == "max" else min(values)


def make_callbacks(cfg, run, *, history=(), phase=None, backup=True, monitor=None):
    """The callbacks for one `fit`: the configured ones plus NaN guard and resume backup.

    Args:
        cfg: a CallbacksConfig.
        run: the run folder.
        history: earlier epochs' rows (a resumed or continued run), to carry the best value on.
        phase: fine-tuning phase written to history.csv, or None.
        backup: whether to back up every epoch for resuming.
        monitor: maps a configured monitor to its name in the logs (multi-output models).
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
        args = watch(cfg.model_checkpoint.model_dump())
        threshold = best_so_far(history, args["monitor"], args["mode"]) if (run / MODEL_FILE).is_file() else None
        out.append(AtomicModelCheckpoint(run / MODEL_FILE, **args, initial_value_threshold=threshold))
    if cfg.reduce_lr_on_plateau is not None:
        out.append(keras.callbacks.ReduceLROnPlateau(**watch(cfg.reduce_lr_on_plateau.model_dump())))
    if cfg.early_stopping is not None:
        out.append(keras.callbacks.EarlyStopping(**watch(cfg.early_stopping.model_dump())))
    if cfg.tensorboard:
        out.append(keras.callbacks.TensorBoard(log_dir=str(run / "tensorboard")))
    if cfg.csv_logger:
        out.append(keras.callbacks.CSVLogger(str(run / HISTORY_FILE), append=bool(history)))
    if backup:
        out.append(keras.callbacks.BackupAndRestore(str(run / BACKUP_DIR), delete_checkpoint=True))
    return out
