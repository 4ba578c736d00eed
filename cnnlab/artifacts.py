"""Run directories: ``<output_dir>/<name>/<timestamp>/``, never overwritten, written atomically."""

import csv
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

from cnnlab import __version__
from cnnlab.errors import CnnlabError

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CLASSES_FILE = "class_names.json"
BACKUP_DIR = "backup"


def write_atomic(path, text):
    """Write `text` to `path` through a temporary file and a rename: never half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path, default=None):
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def new_run_dir(output_dir, name):
    """Create a fresh run folder named by the time, adding -2, -3... rather than reuse one."""
    parent = Path(output_dir) / name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
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


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return int(pid) != os.getpid()


def find_resumable(output_dir, name, config_dict):
    """The latest unfinished run of `name` with the same config, if its process is gone."""
    parent = Path(output_dir) / name
    for run in reversed(list_runs(parent.parent) if parent.is_dir() else []):
        if run.parent != parent:
            continue
        info = run_info(run)
        if info.get("status") in ("running", "interrupted") and not _alive(info.get("pid")):
            from cnnlab.config import read_yaml

            saved = read_yaml(run / CONFIG_FILE)
            saved.pop("provenance", None)
            if saved == {k: v for k, v in config_dict.items() if k != "provenance"}:
                return run
        return None  # only the latest run of an experiment is resumed
    return None


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


def truncate_history(run, epochs):
    """Keep the first `epochs` epochs of history.csv (what a resumed run restarts after)."""
    path = Path(run) / HISTORY_FILE
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs]
    tmp = path.with_name(".history.partial")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


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
        rows.append((str(run), info.get("status", "?"), str(len(history)), f"{max(val):.4f}" if val else "-",
                     f"{metrics['accuracy']:.4f}" if "accuracy" in metrics else "-",
                     _short(info.get("base", ""))))
    if len(rows) == 1:
        raise CnnlabError(f"no runs under {str(root)!r}.")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
