"""Tracking runs where a team looks: MLflow (``tracking: {mlflow: {uri, experiment}}`` or ``--track mlflow``).

A run that trains with tracking has one MLflow run: the resolved config as parameters
(dotted keys), every epoch's metrics (step = the epoch's number), the final evaluation
(``<split>_<metric>``), tags (task, architecture, git commit, cnnlab version, the run
folder) and, at the end, the run's model, config, history, metrics and plots as
artifacts. The MLflow run's id is kept in the run's ``run.json``, so a resumed run goes
on logging into it; a tune trial's MLflow run is a child of its study's
(``tracking.mlflow.parent_run``).

Tracking never stops training nor loses a run: the first failure (server down, a
refused value) is one ``Warning:`` line, and the run goes on untracked.
"""

import contextlib
import os
from pathlib import Path

from cnnlab import rundir

MLFLOW_RUN_KEY = "mlflow_run_id"  # in run.json
# MLflow's HTTP client retries for minutes by default; a tracking server that is down costs seconds here.
MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
ARTIFACTS = ("model.keras", "config.yaml", "history.csv", "metrics.json", "class_names.json", "thresholds.json",
             "plots", "report.html")
STUDY_ARTIFACTS = (".csv", ".html", ".yaml", ".png", ".json")  # a study's results (its database stays out)


class Tracker:
    """What training tells a tracker; this one tracks nothing (no ``tracking:`` section)."""

    id = None  # the tracked run's id
    def epoch(self, epoch, logs):
        """The metrics `logs` of the epoch numbered `epoch` (1 for the first)."""

    def result(self, metrics, split):
        """The evaluation's metrics.json of `split`."""

    def end(self, status):
        """Training ended: ``FINISHED``, ``FAILED`` or ``KILLED`` (interrupted: a resume goes on)."""


@contextlib.contextmanager
def lifetime(tracker_):
    """End `tracker_`'s run as the block ends: ``FINISHED``; ``KILLED`` on Ctrl-C or exit (a resume goes on in
    it); ``FAILED`` on an error."""
    try:
        yield tracker_
    except (KeyboardInterrupt, SystemExit):
        tracker_.end("KILLED")
        raise
    except BaseException:
        tracker_.end("FAILED")
        raise
    tracker_.end("FINISHED")


def tracker(cfg, run, echo=print):
    """The `Tracker` of the experiment `cfg` for the run folder `run` (started, or taken up on resume)."""
    settings = cfg.tracking.mlflow
    if settings is None:
        return Tracker()
    run = Path(run)
    return MlflowTracker(settings, cfg.name, echo, run_name=f"{cfg.name}/{run.name}", tags=tags(cfg, run, settings),
                         params=parameters(cfg.to_dict()), artifacts=lambda: [run / name for name in ARTIFACTS],
                         known=rundir.run_info(run).get(MLFLOW_RUN_KEY),
                         remember=lambda run_id: rundir.update_run_info(run, **{MLFLOW_RUN_KEY: run_id}))


def study_tracker(cfg, study, folder, echo=print):
    """The `Tracker` of a tune study: one MLflow run (its id kept in the study, so every process and every
    restart shares it) whose children are the trials' runs; its artifacts the study's results in `folder`."""
    settings = cfg.tracking.mlflow
    if settings is None:
        return Tracker()
    return MlflowTracker(settings, cfg.name, echo, run_name=f"{cfg.name}/tune",
                         tags={"task": cfg.task, "architecture": cfg.model.architecture, "cnnlab_study": cfg.name},
                         params={f"tune.{k}": str(v) for k, v in cfg.tune.model_dump(mode="json").items()},
                         artifacts=lambda: sorted(p for p in Path(folder).iterdir() if p.suffix in STUDY_ARTIFACTS),
                         known=study.user_attrs.get(MLFLOW_RUN_KEY),
                         remember=lambda run_id: study.set_user_attr(MLFLOW_RUN_KEY, run_id))


class MlflowTracker(Tracker):
    """One MLflow run, through `mlflow.MlflowClient` (no global state): made, or taken up (`known`, its id);
    `artifacts`: a function listing the files and folders logged when it finishes."""

    def __init__(self, settings, experiment, echo, *, run_name, tags, params, artifacts, known, remember):
        self.echo, self.artifacts, self.client, self.run_id = echo, artifacts, None, known
        self._guarded(self._start, settings, settings.experiment or experiment, run_name, tags, params, remember)

    @property
    def id(self):
        """The MLflow run's id (None: not tracked, or tracking stopped)."""
        return self.run_id if self.client is not None else None

    def _start(self, settings, experiment, run_name, tags_, params, remember):
        for key, value in MLFLOW_HTTP.items():
            os.environ.setdefault(key, value)
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=settings.uri)
        if self.run_id is not None:  # a resumed run goes on in its MLflow run
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags_).info.run_id
        remember(self.run_id)
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])  # MLflow batches them
        self.echo(f"MLflow: run {self.run_id} in experiment {experiment!r} ({self.client.tracking_uri})")

    def epoch(self, epoch, logs):
        self._guarded(self._log_metrics, dict(logs), epoch)

    def result(self, metrics, split):
        flat = {f"{split}_{k}": v for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._guarded(self._log_metrics, flat, None)

    def end(self, status):
        self._guarded(self._end, status)

    def _log_metrics(self, values, step):
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step or 0) for k, v in values.items()
                   if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def _end(self, status):
        try:
            for path in self.artifacts() if status == "FINISHED" else ():
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
                elif path.is_file():
                    self.client.log_artifact(self.run_id, str(path))
        finally:  # a failed upload still ends the MLflow run (not left RUNNING)
            self.client.set_terminated(self.run_id, status=status)

    def _guarded(self, function, *args):
        """Call `function`; on the first failure warn once and track nothing more."""
        if self.client is None and function != self._start:
            return
        try:
            function(*args)
        except Exception as exc:  # MLflow raises many types (HTTP, REST, value errors)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.echo(f"Warning: MLflow tracking stopped ({first[:300]}); the run goes on, untracked.")
            self.client = None


def tags(cfg, run, settings):
    """The MLflow run's tags: what a team filters runs by."""
    from cnnlab import __version__

    provenance = rundir.read_config(run).get("provenance") or {}
    found = {"task": cfg.task, "architecture": cfg.model.architecture, "cnnlab_version": __version__,
             "cnnlab_run": str(run.resolve()), "mlflow.source.git.commit": provenance.get("git_commit"),
             "mlflow.parentRunId": settings.parent_run}
    return {k: str(v) for k, v in found.items() if v is not None}


def parameters(config, prefix=""):
    """The config as flat ``{dotted key: text}`` (provenance and the search left out)."""
    flat = {}
    for key, value in config.items():
        if not prefix and key in ("provenance", "tune", "tracking"):
            continue
        if isinstance(value, dict) and value:
            flat.update(parameters(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:6000]
    return flat


def epoch_callback(tracker_):
    """A Keras callback that hands every epoch's logs to `tracker_` (not mlflow.keras's callback: that one logs
    through MLflow's global active run and raises when the server is down; this one warns once and goes on)."""
    import keras

    class TrackEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tracker_.epoch(epoch + 1, logs or {})

    return TrackEpochs()
