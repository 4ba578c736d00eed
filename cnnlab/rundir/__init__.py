"""The run: ``<output_dir>/<name>/<timestamp>/``, its files, its life, its identity, and which run a command means.

- `cnnlab.rundir.folder`: the files a run holds, making its folder, its records (run.json, history);
- `cnnlab.rundir.lifecycle`: starting or taking up a run, its lock, its status as training ends;
- `cnnlab.rundir.identity`: which runs are the same run (resume, seeds, seed groups, workers, splits);
- `cnnlab.rundir.listing`: which folders are runs, and the latest;
- `cnnlab.rundir.targets`: what a command's TARGET means (`open_target`, `is_target`);
- `cnnlab.rundir.table`: the runs table and seed groups of `cnnlab runs`.

Commands use the names below, as ``rundir.CONFIG_FILE``, ``rundir.open_target(...)``.
"""

from cnnlab.rundir.folder import (BACKUP_DIR, CLASSES_FILE, CONFIG_FILE, HISTORY_FILE, LOCK_FILE, METRICS_FILE,
                                  MODEL_FILE, RUN_FILE, created, is_run, kept_row, new_run_dir, provenance,
                                  read_config, read_history, run_info, update_run_info)
from cnnlab.rundir.identity import SEED_FREE_KEYS, comparable, data_key, job_fingerprint, seed_group_key
from cnnlab.rundir.lifecycle import (UNFINISHED, check_run_writable, discard, find_resumable, find_run, is_locked,
                                     lock, resumable_config, running, runs_root, start_run, status, unlock)
from cnnlab.rundir.listing import has_runs, latest_run, list_runs, pick_run, resolve_run, runs_here
from cnnlab.rundir.table import (METRIC_COLUMNS, RUN_COLUMNS, SPREAD, group_summary, mean_std, run_records,
                                 runs_table, seed_groups)
from cnnlab.rundir.targets import Target, is_target, load_model, load_run_config, open_target

__all__ = [
    "BACKUP_DIR", "CLASSES_FILE", "CONFIG_FILE", "HISTORY_FILE", "LOCK_FILE", "METRICS_FILE", "MODEL_FILE",
    "RUN_FILE", "created", "is_run", "kept_row", "new_run_dir", "provenance", "read_config", "read_history", "run_info",
    "update_run_info",
    "SEED_FREE_KEYS", "comparable", "data_key", "job_fingerprint", "seed_group_key",
    "UNFINISHED", "check_run_writable", "discard", "find_resumable", "find_run", "is_locked", "lock", "running",
    "resumable_config", "runs_root", "start_run", "status", "unlock",
    "has_runs", "latest_run", "list_runs", "pick_run", "resolve_run", "runs_here",
    "METRIC_COLUMNS", "RUN_COLUMNS", "SPREAD", "group_summary", "mean_std", "run_records", "runs_table",
    "seed_groups",
    "Target", "is_target", "load_model", "load_run_config", "open_target",
]
