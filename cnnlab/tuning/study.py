"""The study of an experiment: where it lives, how it samples and prunes, how much of its budget is spent.

A study is named after the experiment and kept in a database: by default the SQLite
file ``<output_dir>/<name>/tune/study.db``, beside the runs its trials make; a
``postgresql://`` URL lets processes on several machines share it (Optuna hands each
trial to one process). Every trial process beats a heartbeat into the database; a
trial whose process died (killed, the machine lost) is found stale by the next process
that starts, marked failed and queued again with the same parameters
(`optuna.storages.RetryHeartbeatStaleTrialCallback`), so its run is resumed. A trial stopped by
Ctrl-C is queued again at once (`requeue`).
"""

import os
import random
import time
import warnings
from pathlib import Path

from cnnlab import catalog
from cnnlab.errors import CnnlabError

STUDY_FOLDER = "tune"  # inside the experiment's runs folder: <output_dir>/<name>/tune/
STORAGE_FILE = "study.db"
HEARTBEAT_SECONDS = 10  # a trial's process writes that it is alive this often ...
GRACE_SECONDS = 60  # ... and a trial silent this long died: failed, and queued again
RESUMES = "resumes"  # a requeued trial's user attribute: the number of the trial it takes up
OPEN_ATTEMPTS = 5  # processes starting together race to make the tables and the study: the losers try again
MEDIAN_STARTUP_TRIALS = 3  # the median pruner prunes once this many trials have finished ...
MEDIAN_WARMUP_EPOCHS = 1  # ... and never in a trial's first epoch


def study_folder(cfg):
    """Where the study's database (by default) and its results go: ``<output_dir>/<name>/tune/``."""
    return Path(cfg.output_dir) / cfg.name / STUDY_FOLDER


def storage_url(cfg):
    """``tune.storage``, or the default SQLite file in `study_folder`."""
    if cfg.tune.storage:
        return cfg.tune.storage
    return f"sqlite:///{(study_folder(cfg) / STORAGE_FILE).resolve()}"


def shown_url(url):
    """`url` without its password, for messages and run records."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: said so by `open_study`
        return url


def metric_of(cfg):
    """The metric a study optimises: ``tune.metric``, else the checkpoint's monitor (``val_loss`` without one)."""
    checkpoint = cfg.callbacks.model_checkpoint
    return cfg.tune.metric or (checkpoint.monitor if checkpoint else "val_loss")


def direction_of(cfg):
    return cfg.tune.direction or catalog.metric_direction(metric_of(cfg))


def make_sampler(cfg, seed):
    """Optuna's sampler of ``tune.sampler`` seeded by `seed` (`sampler_seed`; the grid enumerates every choice)."""
    import optuna

    tune = cfg.tune
    if tune.sampler == "grid":
        return optuna.samplers.GridSampler(grid(tune.parameters), seed=seed)
    return {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler}[tune.sampler](seed=seed)


def sampler_seed(cfg, study):
    """The experiment's seed for a new study on this machine's own storage, so that it is reproducible; for a
    study that goes on, or one shared, the seed mixed with the trials so far and this process: a sampler that
    started again from the same seed would draw the values of the first trials again."""
    if not study.trials and not cfg.tune.storage:
        return cfg.seed
    return hash((cfg.seed, len(study.trials), os.getpid())) % 2**32


def grid(parameters):
    """The grid sampler's space: every value each parameter takes (choices as `cnnlab.tuning.trial` stores them)."""
    from cnnlab.tuning.trial import stored_choices

    return {key: stored_choices(space.values) if space.space == "choice" else
            list(range(space.low, space.high + 1, space.step)) for key, space in parameters.items()}


def make_pruner(cfg):
    """Optuna's pruner of ``tune.pruner``: it stops a trial whose epochs fall behind the others'."""
    import optuna

    name = cfg.tune.pruner
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.training.epochs)
    return optuna.pruners.NopPruner()


def open_study(cfg):
    """The experiment's study in its storage: made, or loaded to go on (the same command run again)."""
    import sqlalchemy.exc

    url = storage_url(cfg)
    if not cfg.tune.storage:
        study_folder(cfg).mkdir(parents=True, exist_ok=True)
    try:
        for attempt in range(OPEN_ATTEMPTS):
            try:
                return _open(cfg, url)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
                # another process made the tables or the study just now (PostgreSQL: a unique violation, or
                # DuplicateTable); anything else is the storage's own fault
                if attempt == OPEN_ATTEMPTS - 1 or not _raced(exc):
                    raise
                time.sleep(0.2 + random.random())
    except ImportError as exc:  # SQLAlchemy's driver for the URL's database
        driver = getattr(exc.__cause__, "name", None) or "its driver"
        raise CnnlabError(f"tune.storage {shown_url(url)!r} needs {driver}, which is not installed: pip install "
                          "'cnnlab[tune]' brings PostgreSQL's (psycopg); another database needs its SQLAlchemy "
                          "driver.") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CnnlabError(f"tune.storage {shown_url(url)!r} cannot be opened: {first}. Give an SQLAlchemy URL "
                          "of a database you can reach, e.g. sqlite:///study.db or "
                          "postgresql://user:password@host/database.") from None
    except ValueError as exc:  # the stored study optimises the other way
        raise CnnlabError(f"the study {cfg.name!r} in {shown_url(url)}: {exc}. Name the experiment differently "
                          "to start another study.") from None


def _raced(exc):
    text = str(exc).lower()
    return "unique" in text or "already exists" in text or "duplicate" in text


def _open(cfg, url):
    import optuna

    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
    study = optuna.create_study(study_name=cfg.name, storage=storage, pruner=make_pruner(cfg),
                                direction=direction_of(cfg), load_if_exists=True)
    optuna.storages.fail_stale_trials(study)  # a trial whose process died is failed and queued again now
    study.sampler = make_sampler(cfg, sampler_seed(cfg, study))
    return study


def predecessor(trial):
    """The number of the interrupted trial that `trial` (a FrozenTrial) takes up (queued again after Ctrl-C
    here, or after its process died), or None."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return retried if retried is not None else trial.user_attrs.get(RESUMES)  # Optuna's retry copies our attrs


def spent(study):
    """How much of the budget the study has used: its trials, but the ones queued and not started and the
    interrupted ones that another trial takes up (each counts once, by the last to take it up)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    taken_up = {predecessor(t) for t in trials} - {None}
    return sum(t.state != TrialState.WAITING and t.number not in taken_up for t in trials)


def requeue(study, trial_number):
    """Queue the interrupted trial `trial_number` again with its parameters (its run resumes)."""
    trial = study.get_trials(deepcopy=False)[trial_number]
    study.enqueue_trial(trial.params, user_attrs={RESUMES: trial_number})


def optimize(study, search, budget):
    """Hand out trials (`cnnlab.tuning.trial.run_trial`) until the study has spent `budget`, counting the trials
    of every process that shares it. A failed trial is recorded and the study goes on; on Ctrl-C the running
    trial is queued again (its run resumes next time) and KeyboardInterrupt is raised."""
    from cnnlab.tuning.trial import TrialFailed, run_trial

    interrupted = []

    def objective(trial):
        try:
            return run_trial(trial, search)
        except KeyboardInterrupt:
            interrupted.append(trial.number)
            trial.set_user_attr("reason", "interrupted (queued again)")
            raise

    def stop_at_budget(study, trial):  # MaxTrialsCallback, but a requeued trial counts once (`spent`)
        if spent(study) >= budget:
            study.stop()

    try:
        if budget > spent(study):
            study.optimize(objective, n_trials=budget - spent(study), catch=(TrialFailed,), callbacks=[stop_at_budget])
    except KeyboardInterrupt:
        for number in interrupted:
            requeue(study, number)
            search.echo(f"Trial {number} stopped; it is queued again, and its run resumes when the same command "
                        "runs again.")
        raise
