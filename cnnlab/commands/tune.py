"""`tune`: search an experiment's settings with Optuna, each trial an ordinary run.

``tune:`` in the experiment names the search (`cnnlab.config.TuneConfig`); the study
(`cnnlab.tuning.study`) hands out trials until ``tune.trials`` have been spent, in this
process and in any other sharing its storage; each trial (`cnnlab.tuning.trial`) trains
in a fresh process and reports its epochs to the pruner. A failed trial is recorded with
its reason and the study goes on; Ctrl-C stops the trial (its run keeps its epochs), queues
it again, and the same command resumes the study and that run. At the end, and on Ctrl-C,
the study's results are written (`cnnlab.tuning.results`).
"""

import logging


from cnnlab import tracking
from cnnlab.errors import CnnlabError
from cnnlab.tuning.study import (direction_of, metric_of, open_study, optimize, shown_url, spent, storage_url,
                                 study_folder)


def tune(cfg, *, echo=print):
    """Run the search `cfg.tune` of the experiment `cfg` (an `ExperimentConfig`) to its budget.

    Returns:
        The path of the best trial's experiment (``best.yaml``), or None if no trial finished.

    Raises:
        CnnlabError: no parameters to search, or a storage that cannot be opened.
        KeyboardInterrupt: on Ctrl-C, after the trial has stopped, been queued again, and the
            results have been written.
    """
    import optuna

    from cnnlab.tuning.results import write_results
    from cnnlab.tuning.trial import Search

    if cfg.tune is None or not cfg.tune.parameters:
        raise CnnlabError("the experiment has no tune.parameters to search: add a tune: section naming at least "
                          "one dotted key and its space, e.g. tune: {parameters: {training.learning_rate: "
                          "{space: loguniform, low: 1.0e-4, high: 0.1}}}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.ERROR)  # a failed trial is reported by cnnlab, once
    study = open_study(cfg)
    folder = study_folder(cfg)
    metric, budget = metric_of(cfg), cfg.tune.trials
    track = tracking.study_tracker(cfg, study, folder, echo)
    search = Search(base=base_experiment(cfg, parent_run=track.id), parameters=cfg.tune.parameters, metric=metric,
                    direction=direction_of(cfg), folder=folder, study=cfg.name,
                    storage=shown_url(storage_url(cfg)), echo=echo)
    echo(f"Study {cfg.name!r} in {search.storage}: {search.direction} {metric}, {spent(study)} of {budget} "
         f"trials done ({cfg.tune.sampler} sampler, {cfg.tune.pruner} pruner)")
    with tracking.lifetime(track):
        try:
            optimize(study, search, budget)
        finally:  # at the end, and on Ctrl-C
            best = write_results(study, folder, metric, echo)
        if best is not None:
            track.result({metric: study.best_value}, "best")
    return best


def base_experiment(cfg, parent_run=None):
    """The experiment every trial starts from, as plain data: the resolved config but its search and provenance;
    tracked as a child of the MLflow run `parent_run` (the study's), if given."""
    base = cfg.trial_base()  # a fresh dict (model_dump copies)
    if parent_run is not None:
        base["tracking"]["mlflow"]["parent_run"] = parent_run
    return base
