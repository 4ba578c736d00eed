"""Run directories: ``<output_dir>/<name>/<timestamp>/``, never overwritten, written atomically.

A run's life: `new_run_dir` (or a resumable one found by `find_resumable`), then
`running(run, ...)` holds an exclusive lock on it while a process trains (released
by the kernel however the process ends), marks it ``running`` and, when training
stops, ``completed``, ``interrupted`` or ``failed``. A ``running`` run whose lock
nobody holds died without marking itself: `status` reports it ``interrupted``.
"""

import csv
import datetime
import platform
import re
import subprocess
from pathlib import Path

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.files import read_json, write_json

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CLASSES_FILE = "class_names.json"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def new_run_dir(output_dir, name):
    """Create a fresh run folder named by the time, adding -2, -3... rather than reuse one.

    ``mkdir`` is atomic, so two processes started in the same second get different folders.
    """
    if not NAME.match(str(name)) or name in (".", ".."):
        raise CnnlabError(f"`name` must be one folder name of letters, digits, '-', '_' and '.'. Received: {name!r}.")
    root = Path(output_dir)
    parent = root / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot create the run folder under {str(root)!r}: {exc.strerror or exc}. "
                          "Set output_dir (or --output-dir) to a folder you can write to.") from None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
        except OSError as exc:
            raise CnnlabError(f"cannot create the run folder {str(run)!r}: {exc.strerror or exc}.") from None
    raise CnnlabError(f"could not create a new run folder under {parent}.")


def is_run(path):
    return (Path(path) / CONFIG_FILE).is_file()


# --------------------------------------------------------------------------- which folders are runs, which is latest


def created(run):
    """When `run` was created (a naive local datetime), by its own record: ``provenance.created`` in its
    config.yaml; for a run without one, the time in its folder's name, else its config.yaml's mtime."""
    run = Path(run)
    for text in (_recorded_creation(run), run.name):
        when = _parse_time(text)
        if when is not None:
            return when
    try:
        return datetime.datetime.fromtimestamp((run / CONFIG_FILE).stat().st_mtime)
    except OSError:
        return datetime.datetime.min


def _recorded_creation(run):
    """``provenance.created`` of the run's config.yaml as text, or None (no such key, unreadable file)."""
    import yaml

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when built: listing reads every config
        config = yaml.load((run / CONFIG_FILE).read_text(encoding="utf-8"), Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    provenance = config.get("provenance") if isinstance(config, dict) else None
    return provenance.get("created") if isinstance(provenance, dict) else None


def _parse_time(text):
    """A naive local datetime from an ISO time or a run folder's ``%Y%m%d-%H%M%S[-n]``; None if neither."""
    if isinstance(text, datetime.datetime):  # YAML reads an unquoted ISO time as one
        when = text
    elif isinstance(text, str):
        try:
            when = datetime.datetime.strptime(text[:15], "%Y%m%d-%H%M%S")
        except ValueError:
            try:
                when = datetime.datetime.fromisoformat(text)
            except ValueError:
                return None
    else:
        return None
    return when.astimezone().replace(tzinfo=None) if when.tzinfo is not None else when


def run_info(run):
    return read_json(Path(run) / RUN_FILE, default={})


def update_run_info(run, **fields):
    info = {**run_info(run), **fields, "updated": _now()}
    write_json(Path(run) / RUN_FILE, info)
    return info


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


# --------------------------------------------------------------------------- who is training a run


def provenance():
    """Versions and the git commit of the working directory, where known."""
    import keras
    import numpy

    versions = {"cnnlab": __version__, "keras": keras.__version__, "numpy": numpy.__version__,
                "python": platform.python_version()}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit, "created": _now()}


def read_history(run):
    """Rows of a run's history.csv as dicts of floats (``epoch`` as int)."""
    path = Path(run) / HISTORY_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else _float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def kept_row(rows, config):
    """The row of history `rows` of the epoch whose model the run keeps (its `config`, a plain dict): the
    checkpoint's best by its monitor (the first epoch of that value: it saves on improvement only), else (no
    checkpoint, or one that saves every epoch) the last. None for no rows."""
    import math

    from cnnlab import catalog

    if not rows:
        return None
    checkpoint = (config.get("callbacks") or {}).get("model_checkpoint")
    if not checkpoint or not checkpoint.get("save_best_only", True):
        return rows[-1]
    monitor, mode = checkpoint.get("monitor", "val_loss"), checkpoint.get("mode", "auto")
    maximize = catalog.direction(monitor, mode) != "min"  # a name that says neither: better higher
    scored = [(v, i) for i, row in enumerate(rows)
              if isinstance(v := _float(row.get(monitor)), float) and math.isfinite(v)]
    if not scored:
        return rows[-1]
    best = max(scored, key=lambda pair: (pair[0], -pair[1])) if maximize else min(scored)
    return rows[best[1]]


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


# --------------------------------------------------------------------------- the runs table (`cnnlab runs`)


def read_config(run):
    """A run's config.yaml as a dict, with what runs from before a key was added meant by it.

    Runs from before ``data.split_seed`` drew their validation and test splits with
    ``seed``: they read as ``split_seed: null`` (the seed draws them), so they keep
    their splits.
    """
    from cnnlab.config import read_yaml

    config = read_yaml(Path(run) / CONFIG_FILE)
    data = config.get("data")
    if isinstance(data, dict) and "split_seed" not in data:
        data["split_seed"] = None
    return config
