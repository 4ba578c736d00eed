"""A run's life: made (or an interrupted one taken up), locked while a process trains it, marked as it ends.

`start_run` makes a new run folder (`cnnlab.rundir.folder.new_run_dir`) or takes up the
newest interrupted run of the same config (`find_resumable`); `running(run, ...)` holds
an exclusive lock on it while a process trains (released by the kernel however the
process ends), marks it ``running`` and, when training stops, ``completed``,
``interrupted`` or ``failed``. A ``running`` run whose lock nobody holds died without
marking itself: `status` reports it ``interrupted``.
"""

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

from cnnlab import files
from cnnlab.errors import CnnlabError, TrainingError
from cnnlab.files import remove_partials
from cnnlab.rundir.folder import (BACKUP_DIR, CONFIG_FILE, LOCK_FILE, new_run_dir, provenance, read_config, run_info,
                                  update_run_info)
from cnnlab.rundir.identity import comparable
from cnnlab.rundir.listing import list_runs

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
    wanted_config = comparable(config_dict, wanted)
    for run in reversed(list_runs(parent)):
        if status(run) != wanted or is_locked(run):
            continue
        try:
            saved = read_config(run)
        except CnnlabError:
            continue
        if comparable(saved, wanted) == wanted_config:
            return run
    return None


def discard(run):
    """Drop the run's resume state (a NaN state is nothing to go on from; a finished run needs none)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(Path(run) / BACKUP_DIR)


def runs_root(cfg, output_dir=None):
    """Where the runs of `cfg` go: ``--output-dir`` if given, else ``output_dir`` of the config."""
    return Path(output_dir or cfg.output_dir)


RUNS_FIX = "Set output_dir (or --output-dir) to a folder you can write to."


def check_run_writable(cfg, output_dir=None, fresh=False):
    """Fail before any data is read if the run of `cfg` could not be written.

    The run goes into the interrupted run `start_run` would resume (unless `fresh`), or
    into a new folder under ``<output_dir>/<name>``.
    """
    root = runs_root(cfg, output_dir)
    run = None if fresh else find_resumable(root, cfg.name, cfg.to_dict())
    if run is not None:
        files.check_writable(run, "the interrupted run", "Make it writable for you, or pass --fresh to start a "
                             "new run elsewhere (--output-dir).")
    else:
        files.check_writable(root / cfg.name, "the runs folder", RUNS_FIX)


def start_run(cfg, output_dir, fresh, echo):
    """Resume the newest interrupted run of this exact config, or make a new run folder; either locked."""
    root = runs_root(cfg, output_dir)
    run = None if fresh else find_resumable(root, cfg.name, cfg.to_dict())
    if run is not None:
        lock(run)
        echo(f"Resuming the interrupted run {run} (pass --fresh to start a new one)")
        return run
    run = new_run_dir(root, cfg.name)
    lock(run)  # before config.yaml makes it a run that another process could take up
    # how many processes trained the run is not what the run is: finetune and evaluate run it on one
    update = {"provenance": provenance(), "distribution": type(cfg.distribution)()}
    from cnnlab.config import save_config

    save_config(cfg.model_copy(update=update), run / CONFIG_FILE)
    return run


def resumable_config(cfg, output_dir=None, fresh=False):
    """`cfg` as the interrupted run it would resume was trained.

    A run from before ``data.split_seed`` drew its splits with ``seed``; when no run
    resumes with `cfg`'s own splits but such a run does, `cfg` takes its splits
    (``split_seed: null``), so the run goes on with the images it started with.
    """
    if fresh or cfg.data.split_seed is None:
        return cfg
    root = runs_root(cfg, output_dir)
    legacy = cfg.model_copy(update={"data": cfg.data.model_copy(update={"split_seed": None})})
    if find_resumable(root, cfg.name, cfg.to_dict()) is None and find_resumable(root, cfg.name, legacy.to_dict()):
        return legacy
    return cfg
