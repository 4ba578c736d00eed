"""The dataset's health (`cnnlab doctor`), on the splits exactly as an experiment carves them.

- `cnnlab.health.images`: each image's problems (cleanvision): exact and near duplicates, within a
  split and across splits (leakage), blurry, dark, light, low-information and odd-sized images;
- `cnnlab.health.labels`: likely label errors by confident learning (cleanlab) on out-of-sample
  probabilities: a run's model on the splits it did not train on, or a K-fold cross-validated model;
- `cnnlab.health.findings`: what it found, as a terminal summary, ``doctor.csv``, ``doctor.html`` and
  ``exclude.txt`` (which ``data.exclude`` reads).
"""
