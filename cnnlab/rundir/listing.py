"""Which folders are runs, and which run a command acts on when the user names none ("latest")."""

from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.rundir.folder import CONFIG_FILE, created, is_run


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
    return sorted(_run_folders(root), key=age_key)


def age_key(run):
    """Sort key of `run`: its creation time, then (within one second) when its config was written, then its path."""
    try:
        written = (run / CONFIG_FILE).stat().st_mtime_ns
    except OSError:
        written = 0
    return created(run), written, str(run)


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
