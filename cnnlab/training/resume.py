"""Resume: a run's whole training state, saved at every epoch's end, restored by the same command.

At the end of each epoch `Checkpointer` writes, in this order and each atomically:
the model's variables with the optimizer's (``backup/epoch-NNNN.npz``, see
`save_variables`; the optimizer's variables hold the learning rate, also one
lowered by ReduceLROnPlateau, and the step count that schedules read),
EarlyStopping's best weights when it restores them, history.csv, and last
``backup/state.json``, which names the variables file (under the key
``weights``, as older runs' state did). ``state.json`` is the commit point:
killed at any moment, the run resumes from the last epoch whose state.json was
written, with the callbacks' counters that Keras's own BackupAndRestore forgets
(keras-team/keras#17012): EarlyStopping's and ReduceLROnPlateau's wait/best,
the checkpoint's best, the dropout layers' seed states, and fine-tuning's phase.
"""

import contextlib
import math
import zipfile
from pathlib import Path

import keras
import numpy as np

from cnnlab import files
from cnnlab.distribution import primary_only, share, shared_file
from cnnlab.errors import CnnlabError
from cnnlab.rundir import BACKUP_DIR, HISTORY_FILE

STATE_FILE = "state.json"
ES_BEST_FILE = "early_stopping_best.npz"
WEIGHT, SEED, OPTIMIZER = "weight_", "seed_", "optimizer_"  # the keys' prefixes in a variables file

# The attributes of Keras's callbacks that make up their state between epochs.
COUNTERS = {keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
            keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
            keras.callbacks.ModelCheckpoint: ("best",)}


def load(run):
    """The run's saved training state (a dict), or None when no epoch has finished."""
    state = files.read_json(Path(run) / BACKUP_DIR / STATE_FILE)
    if not state or not (Path(run) / BACKUP_DIR / state["weights"]).is_file():
        return None
    return state


def save_variables(model, path):
    """The model's weights, its seed states and its optimizer's variables, in one .npz, atomically.

    Through Keras's own getters (`get_weights`, the optimizer's `save_own_variables`),
    in the order they give: ``model.save_weights`` writes the same walking every
    layer's attributes, several times slower (BENCHMARKS.md, "Callbacks").
    """
    store = {}
    model.optimizer.save_own_variables(store)
    files.save_arrays(path, {**{f"{WEIGHT}{i}": value for i, value in enumerate(model.get_weights())},
                             **{f"{SEED}{i}": np.asarray(v) for i, v in enumerate(seed_states(model))},
                             **{f"{OPTIMIZER}{k}": value for k, value in store.items()}})


def restore_variables(model, run, state):
    """Load the state's variables into the compiled `model`: weights, seed states, the optimizer's.

    Raises:
        CnnlabError: the backup is unreadable or does not fit the model (the run then fails, keeping it).
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    backup = Path(run) / BACKUP_DIR / state["weights"]
    try:
        with shared_file(backup) as path:  # process 0's, on every worker
            if path.name.endswith(".weights.h5"):  # a backup from before save_variables: Keras's weights file
                model.load_weights(path)
                seeds = [np.asarray(v) for v in state.get("seeds", [])]
            else:
                with np.load(path) as saved:
                    optimizer = _series(saved, OPTIMIZER)
                    if len(optimizer) != len(model.optimizer.variables):
                        raise ValueError(f"{len(optimizer)} optimizer variables saved, "
                                         f"the model's optimizer has {len(model.optimizer.variables)}")
                    model.set_weights(_series(saved, WEIGHT))
                    model.optimizer.load_own_variables({str(i): v for i, v in enumerate(optimizer)})
                    seeds = _series(saved, SEED)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise CnnlabError(f"cannot resume from {str(backup)!r}: {exc}. The run is marked failed and kept; "
                          "the same command now starts a new run.") from None
    for variable, value in zip(seed_states(model), seeds):
        variable.assign(value.astype(variable.dtype))


def _series(saved, prefix):
    """The arrays of `saved` under `prefix`, in their order."""
    return [saved[f"{prefix}{i}"] for i in sorted(int(k.removeprefix(prefix)) for k in saved.files
                                                  if k.startswith(prefix))]


def seed_states(model):
    """The random layers' seed-generator states (dropout masks): model state that weights files leave out."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def history_rows(state):
    """The epochs' log rows the state has recorded."""
    return list(state["history"]) if state else []


def _number(value):
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


class Checkpointer(keras.callbacks.Callback):
    """Saves the training state at every epoch's end; restores the callbacks' counters at the start.

    Args:
        run: the run folder.
        state: the state to go on from (None for a new run).
        phase: fine-tuning's phase (1 or 2), or None; counters carry over only within one phase,
            the checkpoint's best across phases.
        watched: the other callbacks of this fit, whose counters are saved.
        write_history: whether to write history.csv (``callbacks.csv_logger``).
    """

    def __init__(self, run, state, *, phase, watched, write_history):
        super().__init__()
        self.folder = Path(run) / BACKUP_DIR
        self.history_path = Path(run) / HISTORY_FILE
        self.state, self.phase, self.watched, self.write_history = state, phase, watched, write_history
        self.rows = history_rows(state)

    def on_train_begin(self, logs=None):
        if self.state is None:
            return
        same_phase = self.state.get("phase") == self.phase
        for callback in self.watched:
            kind = _kind(callback)
            saved = self.state["callbacks"].get(kind.__name__) if kind else None
            if saved is None or (kind is not keras.callbacks.ModelCheckpoint and not same_phase):
                continue
            for name, value in saved.items():
                setattr(callback, name, value)
            if isinstance(callback, keras.callbacks.EarlyStopping) and same_phase:
                self._restore_best_weights(callback)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if any(isinstance(v, (int, float)) and not math.isfinite(v) for v in logs.values()):
            return  # a NaN epoch is never saved; TerminateOnNaN stops training
        previous = self.state["weights"] if self.state else None
        backup = f"epoch-{epoch + 1:04d}.npz"
        rate = {"learning_rate": float(self.model.optimizer.learning_rate)}  # also when no callback logs it
        self.rows.append({"epoch": epoch, **rate, **{k: _row_value(v) for k, v in logs.items()}})
        self.state = {"epoch": epoch + 1, "phase": self.phase, "weights": backup, "history": self.rows,
                      "stopped": bool(self.model.stop_training), "callbacks": self._counters()}
        primary_only(lambda: self._write(epoch, backup, previous))  # on several workers, process 0 writes

    def _write(self, epoch, backup, previous):
        self.folder.mkdir(exist_ok=True)
        save_variables(self.model, self.folder / backup)
        self._save_best_weights(epoch)
        if self.write_history:
            write_history(self.history_path, self.rows)
        files.write_json(self.folder / STATE_FILE, self.state)
        if previous and previous != backup:
            with contextlib.suppress(OSError):
                (self.folder / previous).unlink()

    def _counters(self):
        out = {}
        for callback in self.watched:
            kind = _kind(callback)
            if kind:
                out[kind.__name__] = {name: _jsonable(getattr(callback, name, None)) for name in COUNTERS[kind]}
        return out

    def _early_stopping(self):
        return next((c for c in self.watched if isinstance(c, keras.callbacks.EarlyStopping)), None)

    def _save_best_weights(self, epoch):
        """EarlyStopping's best weights, when it restores them and they just changed."""
        stopper = self._early_stopping()
        if stopper is None or stopper.best_weights is None or stopper.best_epoch != epoch:
            return
        files.save_arrays(self.folder / ES_BEST_FILE, {f"arr_{i}": w for i, w in enumerate(stopper.best_weights)})

    def _restore_best_weights(self, stopper):
        path = self.folder / ES_BEST_FILE
        if stopper.restore_best_weights and share(path.is_file()):  # process 0's file, on every worker
            with shared_file(path) as copy, np.load(copy) as saved:
                stopper.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _kind(callback):
    return next((kind for kind in COUNTERS if isinstance(callback, kind)), None)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # Keras starts `best` at +-inf or None; None is what on_train_begin sets
    return value


def _row_value(value):
    return value if isinstance(value, int) else _number(value)


def write_history(path, rows):
    """history.csv from the epochs' rows, as Keras's CSVLogger writes it (``epoch`` first, then sorted keys)."""
    keys = sorted({k for row in rows for k in row if k != "epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in rows:
        lines.append(",".join(str(row.get(k, "")) if row.get(k) is not None else "nan" for k in ["epoch", *keys]))
    files.write_text(path, "\n".join(lines) + "\n")
