"""The runs table of `cnnlab runs`: one record per run, then one per seed group (mean and spread)."""

from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.files import read_json
from cnnlab.rundir.folder import CONFIG_FILE, METRICS_FILE, read_history, run_info
from cnnlab.rundir.identity import seed_group_key
from cnnlab.rundir.lifecycle import status
from cnnlab.rundir.listing import age_key, list_runs


def _short(base):
    """A base run's ``<name>/<timestamp>``; other bases as they are."""
    parts = Path(base).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else base


RUN_COLUMNS = ("run", "name", "seed", "status", "epochs", "best_val_accuracy", "test_accuracy", "test_loss",
               "test_score", "base", "trial")  # trial: <study>#<number> of a run a `cnnlab tune` trial trained

METRIC_COLUMNS = ("epochs", "best_val_accuracy", "test_accuracy", "test_loss", "test_score")  # test_score: the
# task's headline figure (`cnnlab.catalog.TASK_SCORES`): accuracy, mean average precision, mean IoU

NUMERIC_COLUMNS = ("seed",) + METRIC_COLUMNS


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
              "test_score": _score(config, metrics) if tested else None,
              "base": _short(info["base"]) if info.get("base") else None, "trial": _trial(info), "group": None}
    return record, seed_group_key(config, info)


def _trial(info):
    """``<study>#<number>`` of a run that a `cnnlab tune` trial trained, else None."""
    tune = info.get("tune")
    return f"{tune.get('study')}#{tune.get('trial')}" if isinstance(tune, dict) else None


def _score(config, metrics):
    """The run's task's headline figure (`cnnlab.catalog.TASK_SCORES`) in its metrics.json, or None."""
    from cnnlab.catalog import TASK_SCORES

    value = metrics.get(TASK_SCORES.get(config.get("task") or "classification"))
    return value if isinstance(value, (int, float)) else None


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
    for record in sorted(records, key=lambda r: age_key(Path(r["run"]))):
        newest[record["seed"]] = record
    return sorted(newest.values(), key=lambda r: (0, r["seed"]) if isinstance(r["seed"], int) else (1, str(r["seed"])))


def seed_groups(runs):
    """The seed groups (see `run_records`) among the run folders `runs`."""
    return _records_and_groups(runs)[1]


def group_summary(group):
    """One line of a seed group's test metrics: ``test_accuracy 0.9951 ± 0.0003 (0.9947-0.9954), ...``."""
    parts = [f"{column} {mean_std(group, column)} ({group['min'][column]:.4f}-{group['max'][column]:.4f})"
             for column in ("test_accuracy", "test_loss", "test_score") if group["mean"][column] is not None]
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
                "status": status, "base": "-", "trial": "-"}
        return tuple(text.get(c) or mean_std(record, c) for c in RUN_COLUMNS)
    return tuple(_cell(record[c], c) for c in RUN_COLUMNS)


def _cell(value, column):
    if value is None:
        return "-"
    if column in METRIC_COLUMNS[1:]:
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
