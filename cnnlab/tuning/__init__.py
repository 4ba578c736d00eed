"""Hyperparameter search on Optuna (`cnnlab tune`): the study, its trials, what it leaves behind.

- `cnnlab.tuning.study`: the study of an experiment (its storage, sampler, pruner, budget);
- `cnnlab.tuning.trial`: one trial, an ordinary run trained by ``cnnlab train`` in a fresh process,
  its epochs reported to the pruner;
- `cnnlab.tuning.results`: the table of trials, the best trial's experiment, importances and plots.

The search space is part of the config (``tune:``, `cnnlab.config.TuneConfig`), checked with the
rest of it before anything runs.
"""
