"""Run directories: ``<output_dir>/<name>/<timestamp>/``, never overwritten, written atomically.

A run's life: `new_run_dir` (or a resumable one found by `find_resumable`), then
`running(run, ...)` holds an exclusive lock on it while a process trains (released
by the kernel however the process ends), marks it ``running`` and, when training
stops, ``completed``, ``interrupted`` or ``failed``. A ``running`` run whose lock
nobody holds died without marking itself: `status` reports it ``interrupted``.
"""

import contextlib
import csv
import datetime
import fcntl
import os
import platform
import re
import subprocess
from pathlib import Path

from cnnlab import __version__
from cnnlab.errors import CnnlabError, TrainingError
from cnnlab.files import read_json, remove_partials, write_json

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


def list_runs(root="runs"):
    """Every run folder under `root`, oldest first (by the time in their names)."""
    root = Path(root)
    runs = [p.parent for p in root.glob(f"*/*/{CONFIG_FILE}")] if root.is_dir() else []
    return sorted(runs, key=lambda p: (p.name, str(p)))


def latest_run(root="runs"):
    """The most recent run under `root`."""
    runs = list_runs(root)
    if not runs:
        raise CnnlabError(f"no runs under {str(root)!r}: train one first (cnnlab train EXPERIMENT.yaml), "
                          "or name a run folder.")
    return runs[-1]


def resolve_run(target, root="runs"):
    """A run folder from a CLI argument: None (the latest run), a run folder, or a file inside one."""
    if target is None:
        return latest_run(root)
    path = Path(target)
    if path.is_file() and is_run(path.parent):
        return path.parent
    if path.is_dir() and is_run(path):
        return path
    if path.is_dir():  # an experiment's folder of runs, or an output_dir: its latest run
        runs = sorted((p.parent for p in path.glob(f"*/{CONFIG_FILE}")), key=lambda p: p.name) or list_runs(path)
        if runs:
            return runs[-1]
    raise CnnlabError(f"{str(path)!r} is not a run folder (a folder with {CONFIG_FILE}, made by cnnlab train).")


def run_info(run):
    return read_json(Path(run) / RUN_FILE, default={})


def update_run_info(run, **fields):
    info = {**run_info(run), **fields, "updated": _now()}
    write_json(Path(run) / RUN_FILE, info)
    return info


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


# --------------------------------------------------------------------------- who is training a run

_held = {}  # run folder -> the open lock file this process holds


def lock(run):
    """Take the run's exclusive lock for this process, or raise naming the process that has it."""
    path = Path(run) / LOCK_FILE
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise CnnlabError(f"the run {run} is being trained by another process (pid {owner}): wait for it, "
                          "stop it, or pass --fresh to start a new run.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held[str(run)] = handle


def unlock(run):
    handle = _held.pop(str(run), None)
    if handle is not None:
        handle.close()


def is_locked(run):
    """Whether some process (this one included) holds the run's lock."""
    if str(run) in _held:
        return True
    path = Path(run) / LOCK_FILE
    if not path.is_file():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def status(run):
    """The run's status; ``running`` only while a process holds its lock, else ``interrupted``."""
    state = run_info(run).get("status", "?")
    return "interrupted" if state == "running" and not is_locked(run) else state


UNFINISHED = ("running", "interrupted")


@contextlib.contextmanager
def running(run, **info):
    """Lock `run` and mark it running; when the block ends mark it completed, interrupted or failed.

    A failure keeps what the run had (its best model, its resume state); only a
    NaN loss (`TrainingError`) drops the resume state, as there is nothing to go on from.
    """
    lock(run)
    try:
        remove_partials(run)
        remove_partials(Path(run) / BACKUP_DIR)
        update_run_info(run, status="running", pid=os.getpid(), error=None, **info)
        yield run
    except KeyboardInterrupt:
        update_run_info(run, status="interrupted", pid=None)
        raise
    except BaseException as exc:
        update_run_info(run, status="failed", pid=None, error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        if isinstance(exc, TrainingError):
            from cnnlab.training.resume import discard

            discard(run)
        raise
    else:
        update_run_info(run, status="completed", pid=None)
    finally:
        unlock(run)


def find_resumable(output_dir, name, config_dict):
    """The newest unfinished run of `name` with the same config whose process is gone, or None."""
    parent = Path(output_dir) / name
    if not parent.is_dir():
        return None
    wanted = _comparable(config_dict)
    for run in reversed(sorted((p.parent for p in parent.glob(f"*/{CONFIG_FILE}")), key=lambda p: p.name)):
        if status(run) != "interrupted" or is_locked(run):
            continue
        from cnnlab.config import read_yaml

        try:
            saved = read_yaml(run / CONFIG_FILE)
        except CnnlabError:
            continue
        if _comparable(saved) == wanted:
            return run
    return None


def _comparable(config_dict):
    return {k: v for k, v in config_dict.items() if k != "provenance"}


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


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _short(base):
    """A base run's ``<name>/<timestamp>``; other bases as they are."""
    parts = Path(base).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else base


def runs_table(root="runs"):
    """Lines of a table of the runs under `root`: status, epochs, best validation accuracy,
    test accuracy (from metrics.json) and base, newest last."""
    rows = [("run", "status", "epochs", "best val_acc", "test acc", "base")]
    for run in list_runs(root):
        info, history = run_info(run), read_history(run)
        val = [r[k] for r in history for k in ("val_accuracy", "val_predictions_accuracy")
               if isinstance(r.get(k), float)]
        metrics = read_json(run / METRICS_FILE, default={})
        rows.append((str(run), status(run), str(len(history)), f"{max(val):.4f}" if val else "-",
                     f"{metrics['accuracy']:.4f}" if "accuracy" in metrics else "-",
                     _short(info.get("base", ""))))
    if len(rows) == 1:
        raise CnnlabError(f"no runs under {str(root)!r}.")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
