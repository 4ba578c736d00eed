"""One trial: the experiment with the values the sampler drew, trained as an ordinary run in a fresh process.

The trial's experiment file (``tune/trials/trial-<n>.yaml``) is the experiment with the
drawn values set and the ``tune`` section left out; ``cnnlab train`` trains it in a new
process (so memory does not grow across trials), into an ordinary run that `cnnlab runs`,
`report` and `evaluate` see. This process reads the run's ``history.csv`` as its epochs
end, reports the metric to the pruner, and stops the training (as Ctrl-C does) when the
pruner says so. The trial's value is the metric at the epoch whose model the run keeps
(the checkpoint's best; the last epoch without a checkpoint).
"""

import math
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnlab import files, rundir
from cnnlab.config import absolute_paths, set_key
from cnnlab.processes import end_with_parent, exit_reason

TRIALS_FOLDER = "trials"
POLL_SECONDS = 0.2
STOP_SECONDS = 60  # how long a pruned or interrupted trial's training may take to save its epoch and stop
SCALARS = (bool, int, float, str, type(None))  # what Optuna stores as a choice itself
SHOWN = ("Run: ", "Epoch ", "Error: ", "Warning: ", "test: ")  # the lines of a trial's training passed on


class TrialFailed(Exception):
    """The trial's training failed (its ``Error:`` line, or how it ended); the study goes on."""


@dataclass
class Search:
    """What every trial of one study shares: the experiment (a plain dict, the ``tune`` section out), the
    parameters' spaces, the metric, the checkpoint that picks the kept epoch, the study's folder."""

    base: dict
    parameters: dict  # dotted key -> its space (`cnnlab.config.ParameterSpace`)
    metric: str
    direction: str
    folder: Path
    study: str  # the study's name and storage, recorded in each trial's run
    storage: str
    echo: object = print


def stored_choices(values):
    """A choice's values as Optuna stores them: scalars themselves, lists and mappings as their YAML text."""
    return [v if isinstance(v, SCALARS) else yaml.safe_dump(v, default_flow_style=True).strip() for v in values]


def suggest(trial, parameters):
    """``{dotted key: value}`` drawn by the Optuna `trial` from each space (a requeued trial: its own values)."""
    values = {}
    for key, space in parameters.items():
        if space.space in ("uniform", "loguniform"):
            values[key] = trial.suggest_float(key, space.low, space.high, log=space.space == "loguniform")
        elif space.space == "int":
            values[key] = trial.suggest_int(key, space.low, space.high, step=space.step, log=space.log)
        else:
            stored = stored_choices(space.values)
            values[key] = space.values[stored.index(trial.suggest_categorical(key, stored))]
    return values


def trial_config(search, values):
    """The trial's experiment: the study's with `values` set (paths absolute, so it runs from anywhere)."""
    data = yaml.safe_load(yaml.safe_dump(search.base))  # a deep copy
    for key, value in values.items():
        set_key(data, key.split("."), value)
    return absolute_paths(data)


def run_trial(trial, search):
    """Train the Optuna `trial` and return its value; raises `optuna.TrialPruned` or `TrialFailed`."""
    import optuna

    values = suggest(trial, search.parameters)
    path = search.folder / TRIALS_FOLDER / f"trial-{trial.number:04d}.yaml"
    config = trial_config(search, values)
    text = yaml.safe_dump(config, sort_keys=False)
    files.write_text(path, text)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
    search.echo(f"Trial {trial.number}: {shown}")
    trial.set_user_attr("config", str(path))
    trial.set_user_attr("experiment", text)  # the study's own copy: best.yaml is written from it on any machine
    watch = Watch(trial, search)
    try:
        code = watch.train(path)
    finally:
        if watch.run is not None:
            trial.set_user_attr("run", str(watch.run))
            trial.set_user_attr("epochs", len(watch.rows))
    if watch.pruned:
        rundir.update_run_info(watch.run, status="pruned", tune=watch.record())
        search.echo(f"  Pruned after epoch {len(watch.rows)}: its {search.metric} fell behind the other trials'.")
        raise optuna.TrialPruned(f"pruned after epoch {len(watch.rows)}")
    if watch.run is not None:
        rundir.update_run_info(watch.run, tune=watch.record())
    try:
        if code != 0:
            raise TrialFailed(watch.error or _ending(code))
        return objective_value(watch.rows, search.metric, config)
    except TrialFailed as exc:
        trial.set_user_attr("reason", str(exc))
        raise


class Watch:
    """One trial's ``cnnlab train`` process: its output passed on, its epochs reported to the pruner."""

    def __init__(self, trial, search):
        self.trial, self.search = trial, search
        self.run, self.rows, self.error, self.pruned = None, [], None, False

    def train(self, path):
        """Run the training to its end (or until pruned); its exit code."""
        # its own session: Ctrl-C reaches this process only, which stops the training with one SIGTERM
        proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=end_with_parent,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        try:
            while proc.poll() is None:
                self._read(lines)
                if self._report() and not self.pruned:
                    self.pruned = True
                    proc.terminate()  # training stops as on Ctrl-C: the epoch it finished is kept
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:  # Ctrl-C or kill: the training stops as on Ctrl-C, its finished epochs kept
            proc.terminate()
            _wait(proc)
            raise
        finally:
            if proc.poll() is None:
                _wait(proc)
        self._read(lines, until_closed=True)
        self._report()
        return proc.returncode

    def _read(self, lines, until_closed=False):
        while True:
            try:
                line = lines.get(timeout=5 if until_closed else 0)
            except queue.Empty:
                return
            if line is None:
                return
            line = line.rstrip("\n")
            if line.startswith(SHOWN) and not self.pruned:
                self.search.echo(f"  {line}")
            if line.startswith("Run: ") and self.run is None:
                self.run = Path(line.removeprefix("Run: ").split(" (")[0]).resolve()
            elif line.startswith("Error: "):
                self.error = line.removeprefix("Error: ")

    def _report(self):
        """Report the epochs that ended since the last call; whether the pruner says stop."""
        if self.run is None:
            return False
        rows = rundir.read_history(self.run)
        prune = False
        for epoch, row in enumerate(rows[len(self.rows):], start=len(self.rows)):
            value = _number(row.get(self.search.metric))
            if value is not None and math.isfinite(value):
                self.trial.report(value, epoch)
                prune = prune or bool(self.trial.should_prune())
        self.rows = rows
        return prune

    def record(self):
        """What the run's run.json says of the trial it was."""
        return {"study": self.search.study, "trial": self.trial.number, "storage": self.search.storage,
                "parameters": dict(self.trial.params)}


def _pump(stream, lines):
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait(proc):
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def objective_value(rows, metric, config):
    """The `metric` at the epoch the run keeps (its `config`, a plain dict): the checkpoint's best by its monitor,
    else (no checkpoint, or one that saves every epoch) the last."""
    if not rows:
        raise TrialFailed("the training ended before its first epoch")
    value = _number(rundir.kept_row(rows, config).get(metric))
    if value is None or not math.isfinite(value):
        raise TrialFailed(f"the run logged no finite {metric} (history.csv has {', '.join(rows[0])})")
    return value


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _ending(code):
    return f"training ended with {exit_reason(code)}"


def _short(value):
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
