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
import time
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


# --------------------------------------------------------------------------- which folders are runs, which is latest


def _run_folders(root):
    """The run folders at or under `root`, unordered.

    `root` itself if it is a run; else its sub-folders that are runs (an experiment's
    folder of runs, or an ensemble saved as ``runs/ens1``) and their sub-folders that
    are runs (``runs/<name>/<timestamp>``), but not a folder inside a run.
    """
    root = Path(root)
    if is_run(root):
        yield root
        return
    if not root.is_dir():
        return
    for config in root.glob(f"*/{CONFIG_FILE}"):
        yield config.parent
    for config in root.glob(f"*/*/{CONFIG_FILE}"):
        if not is_run(config.parent.parent):
            yield config.parent


def has_runs(root):
    """Whether `root` is a run or holds any (the folders `list_runs` lists), without reading them."""
    return next(_run_folders(root), None) is not None


def list_runs(root="runs"):
    """Every run folder at or under `root` (see `_run_folders`), oldest first by `created`.

    The one home of "which folders are runs": `cnnlab runs`, `latest_run` and `resolve_run` all list them here.
    """
    return sorted(_run_folders(root), key=_age)


def _age(run):
    """Sort key of `run`: its creation time, then (within one second) when its config was written, then its path."""
    try:
        written = (run / CONFIG_FILE).stat().st_mtime_ns
    except OSError:
        written = 0
    return created(run), written, str(run)


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


def latest_run(root="runs"):
    """The most recently created run at or under `root` (see `list_runs`)."""
    runs = list_runs(root)
    if not runs:
        raise CnnlabError(f"no runs under {str(root)!r}: train one first (cnnlab train EXPERIMENT.yaml), "
                          "or name a run folder.")
    return runs[-1]


def resolve_run(target, root="runs"):
    """A run folder from a CLI argument: None (the run we are in, else the latest), a run folder, or a file in one."""
    return pick_run(target, root)[0]


def pick_run(target, root="runs"):
    """The run a command acts on, and how it was picked: None if `target` names it, else what to say.

    `target` is a run folder, a file inside one, a folder holding runs (an
    experiment's, or an output_dir: its latest run), or None: the current folder if
    it is a run, else the latest run under `root`, else the latest run the current
    folder holds (an experiment's folder).
    """
    if target is None:
        return _implicit_run(root)
    path = Path(target)
    if path.is_file() and is_run(path.parent):
        return path.parent, None
    if path.is_dir() and is_run(path):
        return path, None
    if path.is_dir() and has_runs(path):
        return latest_run(path), f"latest in {path}"
    raise CnnlabError(f"{str(path)!r} is not a run folder (a folder with {CONFIG_FILE}, made by cnnlab train) "
                      "nor a folder holding runs.")


def runs_here(root="runs"):
    """Where a command given no run (or `cnnlab runs` given no folder) looks: the current folder if it is a
    run; else `root` if it holds runs; else the current folder if it holds runs (an experiment's folder of
    runs, or an output_dir); else `root`, which holds none."""
    here = Path(".")
    if is_run(here) or (not has_runs(root) and has_runs(here)):
        return here
    return Path(root)


def _implicit_run(root):
    """The run of a command given none (see `runs_here`), and how it was picked."""
    where = runs_here(root)
    if is_run(where):
        return Path.cwd(), "the current folder"
    if where == Path(root):
        return latest_run(root), "latest"
    return latest_run(where), "latest in the current folder"


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
    """Take the run's exclusive lock for this process (held already: nothing to do), or raise naming
    the process that has it."""
    if str(run) in _held:
        return
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
    """The run's status; ``running`` only while a process holds its lock, else ``interrupted``.

    A run folder without run.json was made by a process that died before training
    started: ``interrupted`` too, so the same command takes it up.
    """
    state = run_info(run).get("status", "running")
    return "interrupted" if state == "running" and not is_locked(run) else state


UNFINISHED = ("running", "interrupted")


@contextlib.contextmanager
def running(run, **info):
    """Lock `run` and mark it running; when the block ends mark it completed, interrupted or failed.

    run.json also records the training's wall time (``seconds``, summed over resumed
    sessions). A failure keeps what the run had (its best model, its resume state); only a
    NaN loss (`TrainingError`) drops the resume state, as there is nothing to go on from.
    """
    lock(run)
    started = time.monotonic()
    seconds = run_info(run).get("seconds", 0.0)  # a resumed run adds its time to the earlier sessions'

    def mark(status, **fields):
        update_run_info(run, status=status, pid=None, seconds=round(seconds + time.monotonic() - started, 1),
                        **fields)

    try:
        remove_partials(run)
        remove_partials(Path(run) / BACKUP_DIR)
        update_run_info(run, status="running", pid=os.getpid(), error=None, **info)
        yield run
    except KeyboardInterrupt:
        mark("interrupted")
        raise
    except BaseException as exc:
        mark("failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        if isinstance(exc, TrainingError):
            from cnnlab.training.resume import discard

            discard(run)
        raise
    else:
        mark("completed")
    finally:
        unlock(run)


def find_resumable(output_dir, name, config_dict):
    """The newest unfinished run of `name` with the same config whose process is gone, or None."""
    return find_run(output_dir, name, config_dict, "interrupted")


def find_run(output_dir, name, config_dict, wanted):
    """The newest run of `name` under `output_dir` with the same config and status `wanted`, or None.

    An interrupted run still locked by a live process is not taken.
    """
    parent = Path(output_dir) / name
    if not parent.is_dir():
        return None
    comparable = _comparable(config_dict, wanted)
    for run in reversed(list_runs(parent)):
        if status(run) != wanted or is_locked(run):
            continue
        from cnnlab.config import read_yaml

        try:
            saved = read_yaml(run / CONFIG_FILE)
        except CnnlabError:
            continue
        if _comparable(saved, wanted) == comparable:
            return run
    return None


def _comparable(config_dict, wanted):
    """What makes two runs the same: not their provenance, how many processes trained them, nor how many
    batches went into one compiled call; and to resume a run (`wanted` "interrupted"), not which kernels
    either (the same results to float rounding), while a completed run counts only for its own kernels.
    Paths count by the file they name, however spelt (`cnnlab.config.absolute_paths`)."""
    from cnnlab.config import absolute_paths

    out = {k: v for k, v in absolute_paths(config_dict).items() if k not in ("provenance", "distribution")}
    runtime = {"fast_kernels": False, **out.get("runtime", {})}  # runs from before the key ran Keras's layers
    runtime.pop("steps_per_execution", None)
    if wanted == "interrupted":
        runtime.pop("fast_kernels")
    out["runtime"] = runtime
    return out


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


# --------------------------------------------------------------------------- the runs table (`cnnlab runs`)

RUN_COLUMNS = ("run", "name", "seed", "status", "epochs", "best_val_accuracy", "test_accuracy", "test_loss", "base")
METRIC_COLUMNS = ("epochs", "best_val_accuracy", "test_accuracy", "test_loss")
NUMERIC_COLUMNS = ("seed",) + METRIC_COLUMNS
# Config keys that do not change what a run learns: runs of one name equal but for these form a seed group.
SEED_FREE_KEYS = ("seed", "provenance", "output_dir")
SPREAD = "mean ± sample standard deviation (n-1) over the group's distinct seeds, each by its newest run"


def run_records(root="runs", sort=None, reverse=False):
    """The runs under `root` as dicts of `RUN_COLUMNS`, then one dict per seed group.

    A seed group is the completed runs of one experiment name, of two or more
    distinct seeds, whose configs are equal but for `SEED_FREE_KEYS` (and of the same
    kind: trained, fine-tuned from the same base, ensemble); an unfinished run stays
    out, its metrics being partial. A seed trained more than once counts once, by its
    newest run (see `_newest_per_seed`). Its record (``"type": "seed_group"``) holds
    the mean, sample standard deviation, min and max of each `METRIC_COLUMNS` over
    its seeds, the runs counted (``runs``, in the order of ``seeds``) and the older
    repeats left out (``repeats``); each counted run names its group.

    Args:
        root: the folder of runs.
        sort: a column of `RUN_COLUMNS` to order runs (and groups) by; default: oldest first.
        reverse: descending. Missing values (``-``) stay last either way.
    """
    runs = list_runs(root)
    if not runs:
        raise CnnlabError(f"no runs under {str(root)!r}.")
    records, groups = _records_and_groups(runs)
    return _sorted(records, sort, reverse) + _sorted(groups, sort, reverse)


def _records_and_groups(runs):
    """The records of `runs` and their seed groups."""
    records, keys = zip(*(_run_record(Path(run)) for run in runs))
    return list(records), _seed_groups(records, keys)


def _run_record(run):
    """One run's record, and the key that seed groups compare (None: the config is unreadable)."""
    import json

    from cnnlab.config import read_yaml

    info, history = run_info(run), read_history(run)
    try:
        config = read_yaml(run / CONFIG_FILE)
    except CnnlabError:
        config = {}
    val = [r[k] for r in history for k in ("val_accuracy", "val_predictions_accuracy") if isinstance(r.get(k), float)]
    metrics = read_json(run / METRICS_FILE, default={})
    tested = metrics.get("split", "test") == "test"
    record = {"type": "run", "run": str(run), "name": config.get("name"), "seed": config.get("seed"),
              "status": status(run), "epochs": None if info.get("kind") == "ensemble" else len(history),
              "best_val_accuracy": max(val) if val else None,
              "test_accuracy": metrics.get("accuracy") if tested else None,
              "test_loss": metrics.get("loss") if tested else None,
              "base": _short(info["base"]) if info.get("base") else None, "group": None}
    key = {k: v for k, v in config.items() if k not in SEED_FREE_KEYS}
    key.update(kind=info.get("kind"), base=info.get("base"))
    return record, json.dumps(key, sort_keys=True, default=str) if config else None


def _seed_groups(records, keys):
    """Group records of runs that differ only in seed; mark each counted run with its group's label."""
    members = {}
    for record, key in zip(records, keys):
        if key is not None and record["status"] == "completed":
            members.setdefault(key, []).append(record)
    groups = []
    for records_of_key in members.values():
        runs = _newest_per_seed(records_of_key)
        if len(runs) < 2:  # one seed, however often trained, has no spread over seeds
            continue
        seeds = [r["seed"] for r in runs]
        label = f"{runs[0]['name']} [seeds {','.join(map(str, seeds))}]"
        for record in runs:
            record["group"] = label
        counted = {id(r) for r in runs}
        repeats = [r["run"] for r in records_of_key if id(r) not in counted]
        groups.append({"type": "seed_group", "group": label, "name": runs[0]["name"], "runs": [r["run"] for r in runs],
                       "seeds": seeds, "repeats": repeats, "spread": SPREAD, **_statistics(runs)})
    return groups


def _newest_per_seed(records):
    """One record per distinct seed, ordered by seed: the newest run of that seed (by `created`, as `list_runs`).

    A seed trained again (``--fresh``, or the same experiment run twice) is one draw,
    not several: counting its repeats would shrink the spread toward zero. The newest
    run stands for it rather than the best, which would flatter the mean.
    """
    newest = {}
    for record in sorted(records, key=lambda r: _age(Path(r["run"]))):
        newest[record["seed"]] = record
    return sorted(newest.values(), key=lambda r: (0, r["seed"]) if isinstance(r["seed"], int) else (1, str(r["seed"])))


def seed_groups(runs):
    """The seed groups (see `run_records`) among the run folders `runs`."""
    return _records_and_groups(runs)[1]


def group_summary(group):
    """One line of a seed group's test metrics: ``test_accuracy 0.9951 ± 0.0003 (0.9947-0.9954), ...``."""
    parts = [f"{column} {mean_std(group, column)} ({group['min'][column]:.4f}-{group['max'][column]:.4f})"
             for column in ("test_accuracy", "test_loss") if group["mean"][column] is not None]
    seeds = ",".join(map(str, group["seeds"]))
    repeats = f"; {len(group['repeats'])} older runs of these seeds left out" if group.get("repeats") else ""
    return f"{', '.join(parts) or 'no test metrics'} over seeds {seeds} ({SPREAD}{repeats})"


def _statistics(runs):
    """Mean, sample standard deviation, min, max and count of each metric over `runs` (None-free)."""
    stats = {"mean": {}, "std": {}, "min": {}, "max": {}, "count": {}}
    for column in METRIC_COLUMNS:
        values = [r[column] for r in runs if isinstance(r[column], (int, float))]
        n = len(values)
        mean = sum(values) / n if n else None
        std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else None
        for name, value in zip(stats, (mean, std, min(values, default=None), max(values, default=None), n)):
            stats[name][column] = value
    return stats


def _sorted(records, column, reverse):
    """`records` by `column` (numbers numerically), missing values last whatever the direction."""
    if column is None:
        return records
    column = column.replace("-", "_")
    if column not in RUN_COLUMNS:
        from cnnlab.errors import one_of

        raise CnnlabError(one_of("--sort", RUN_COLUMNS, column))
    present = [r for r in records if _sort_value(r, column) is not None]
    missing = [r for r in records if _sort_value(r, column) is None]
    return sorted(present, key=lambda r: _sort_value(r, column), reverse=reverse) + missing


def _sort_value(record, column):
    if record["type"] == "seed_group":
        if column in METRIC_COLUMNS:
            return record["mean"][column]
        return record["group"] if column == "run" else None
    value = record[column]
    if column in NUMERIC_COLUMNS:
        return value if isinstance(value, (int, float)) else None
    return None if value is None else str(value)


def runs_table(root="runs", sort=None, reverse=False):
    """Lines of a table of the runs under `root` (see `run_records`), seed groups after them."""
    records = run_records(root, sort, reverse)
    rows = [RUN_COLUMNS] + [_cells(r) for r in records]
    from cnnlab.console import aligned

    lines = aligned(rows)
    runs = sum(1 for r in records if r["type"] == "run")
    if runs < len(records):
        lines.insert(runs + 1, f"seed groups ({SPREAD}):")
    return lines


def _cells(record):
    """A record's table cells: 4 decimals for metrics, ``-`` where missing, ``mean ± std`` for a group."""
    if record["type"] == "seed_group":
        runs = len(record["runs"]) + len(record.get("repeats", ()))
        status = f"{len(record['seeds'])} seeds" + (f" ({runs} runs)" if runs > len(record["seeds"]) else "")
        text = {"run": record["group"], "name": record["name"] or "-", "seed": ",".join(map(str, record["seeds"])),
                "status": status, "base": "-"}
        return tuple(text.get(c) or mean_std(record, c) for c in RUN_COLUMNS)
    return tuple(_cell(record[c], c) for c in RUN_COLUMNS)


def _cell(value, column):
    if value is None:
        return "-"
    if column in ("best_val_accuracy", "test_accuracy", "test_loss"):
        return f"{value:.4f}"
    return str(value)


def mean_std(record, column):
    """A seed group's ``mean ± std`` of `column` as text (1 decimal for epochs, else 4), ``-`` if none.

    A metric that only one seed of the group has (the others not evaluated) is that value and ``(1 seed)``.
    """
    mean, std = record["mean"][column], record["std"][column]
    if mean is None:
        return "-"
    digits = 1 if column == "epochs" else 4
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f} (1 seed)"
