"""What a command's TARGET means, in one place: every command that opens a run or a model uses `open_target`.

A target is nothing (the run the current folder is, else the latest run under
``./runs``, else the latest the current folder holds), a run folder, an
experiment's folder of runs (its latest), a file inside a run, or a bare
``.keras`` file; "latest" is the most recently created (`cnnlab.rundir.listing.list_runs`).
Every command says which run it opened (`Target.describe`). Models load in
Keras's safe mode: a model with a Lambda layer is refused unless the user passes
``--unsafe``.
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cnnlab.errors import CnnlabError
from cnnlab.files import read_json
from cnnlab.rundir.folder import CLASSES_FILE, CONFIG_FILE, MODEL_FILE, is_run, read_config
from cnnlab.rundir.lifecycle import status
from cnnlab.rundir.listing import has_runs, pick_run


@dataclass(frozen=True)
class Target:
    """A resolved target: its run (None for a bare .keras file), the model file to load, and how the run
    was picked when the user did not name it (``latest``, ``the current folder``, ...; None if named)."""

    run: Optional[Path]
    model_path: Path
    picked: Optional[str] = None

    @property
    def folder(self):
        """Where the run's own files are (class names, metrics): the run, or the model's folder."""
        return self.run if self.run is not None else self.model_path.parent

    def config(self, overrides=()):
        """The resolved config the run was trained with (None for a bare .keras file)."""
        return None if self.run is None else load_run_config(self.run, overrides)

    def class_names(self):
        """The class names saved beside the model, or None."""
        return read_json(self.folder / CLASSES_FILE)

    def load_model(self, unsafe=False):
        return load_model(self.model_path, unsafe=unsafe, run=self.run)

    def describe(self, label="Run"):
        """The line that says what a command acts on: ``Run: runs/mlp/20261202-011500 (latest)``,
        ``Run: <run> (model <file>)`` for another model file in it, ``Model: <file>`` for a bare one."""
        if self.run is None:
            return f"Model: {self.model_path}"
        notes = [self.picked] if self.picked else []
        if self.model_path != self.run / MODEL_FILE:
            notes.append(f"model {self.model_path.name}")
        return f"{label}: {self.run}" + (f" ({', '.join(notes)})" if notes else "")


def is_target(argument):
    """Whether a command-line argument names a model rather than images or architectures.

    A target is a ``.keras`` file, a run folder (it holds ``config.yaml``), an
    experiment's folder of runs, or a folder of those (``runs/``). A folder of
    images is none of these, nor is a word such as ``resnet*``.
    """
    path = Path(argument)
    if path.is_file():
        return path.suffix == ".keras"
    return has_runs(path)


def open_target(target=None, root="runs", note=None):
    """Resolve a CLI target to a `Target` (raises `CnnlabError` naming what is accepted).

    Args:
        target: see the module's docstring; None for the run the command would pick itself.
        root: where the runs are.
        note: a print-like function told `Target.describe`, or None to say nothing.
    """
    path = Path(target) if target is not None else None
    if path is not None and path.suffix == ".keras" and path.is_file() and not is_run(path.parent):
        opened = Target(None, path)
    else:
        run, picked = pick_run(target, root)
        keras_file = path is not None and path.suffix == ".keras" and path.is_file()
        opened = Target(run, path if keras_file else run / MODEL_FILE, picked)
    if note is not None:
        note(opened.describe())
    return opened


def load_run_config(run, overrides=()):
    """The resolved config a run was trained with, with optional ``--set`` overrides."""
    from cnnlab.config import apply_overrides, build_config

    data = read_config(run)
    return build_config(apply_overrides(data, overrides), str(Path(run) / CONFIG_FILE))


def load_model(path, *, unsafe=False, run=None):
    """Load a .keras model, in Keras's safe mode unless `unsafe`, with cnnlab's own layers registered."""
    import keras

    import cnnlab.models  # noqa: F401  (registers cnnlab's custom layers for deserialisation)
    import cnnlab.training.losses  # noqa: F401  (its losses)
    import cnnlab.training.optimizers  # noqa: F401  (and its discriminative optimizers)

    path = Path(path)
    if not path.is_file():
        state = f" (the run is {status(run)})" if run is not None else ""
        raise CnnlabError(f"no model at {str(path)!r}{state}: a run saves its model when an epoch finishes "
                          "without NaN; train it, or name another run or .keras file.")
    if not zipfile.is_zipfile(path):
        raise CnnlabError(f"{str(path)!r} is not a .keras model file (not a zip archive: truncated or corrupt). "
                          "Name another run or .keras file, or train again.")
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as exc:  # Keras raises several types for a bad file
        message = str(exc)
        if "safe_mode" in message or "Lambda" in message:
            raise CnnlabError(f"{str(path)!r} holds a Lambda layer (arbitrary Python code), which Keras's "
                              "safe mode refuses to load: pass --unsafe only if you trust where the model "
                              "came from.") from None
        first = message.splitlines()[0] if message else type(exc).__name__
        raise CnnlabError(f"{str(path)!r} is not a loadable .keras model: {first}") from None
