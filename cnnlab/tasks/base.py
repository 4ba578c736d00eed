"""The task seam: what one kind of problem means to every command.

A run's task (``task:`` in its experiment file, `task_of`) answers every question on
which classification, multi-label classification and segmentation differ. The
commands ask it and never test its name:

- the data: how labels are read (`Task.read_labels`, `Task.folder_layout`), fitted to the
  images' size (`Task.fit_labels`) and what a batch of them becomes for the loss (`Task.targets`);
- training: its loss, metrics and class weights (and its own training, if not Keras's fit);
- evaluation: the scores of a split's outputs (`Task.scores`), their summary, the
  figures a run stands by (`Task.headline`), which images to show (`Task.keep`) and
  the plots (`Task.plots`);
- predict: the rows of the images (`Task.predictions`) and how they are written;
- export: how far an artifact's outputs agree with the Keras model's (`Task.agreement`);
- report: the task's own sections of the page (`Task.report`).

Drawn for what comes next as well: targets are whatever the source yields (one label,
several, a mask; boxes or a sequence later) mapped by the task, never assumed to be
one label per image outside it; a task whose training is not a plain ``fit`` (two
networks, a custom step) sets `Task.fit`, which `cnnlab.training.fit.fit` then runs instead.
"""

from pathlib import Path

from cnnlab.registry import Registry

TASKS = Registry("task")


def register_task(name):
    """Class decorator: register a `Task` subclass under `name` (one instance serves every command)."""

    def decorator(cls):
        TASKS.add(name, cls())
        return cls

    return decorator


def task_of(cfg):
    """The task of a config (None: a bare .keras model, which is classified)."""
    import cnnlab.tasks  # noqa: F401  (registers the tasks)

    return TASKS.get(cfg.task if cfg is not None else "classification").fn


class Task:
    """One kind of problem; subclasses fill in every method (see the module's docstring)."""

    name = None
    activation = None  # the output layer's activation
    calibrated = False  # whether the task chooses something on the validation split (multilabel: thresholds)
    checks_labels = False  # whether `label_issues` finds likely label errors (cnnlab doctor)

    # ------------------------------------------------------------------ data and training

    spatial_labels = False  # labels that are images too (masks), which geometric augmentation moves
    folder_layout = "classes"  # what `data.dataset: directory` holds for it (`cnnlab.data.folders.FOLDER_SCANS`)

    def read_labels(self, y, images, key):
        """A source's labels `y` for the array `images` ``(N, H, W[, C])`` as the task holds them (or a
        `DataError` naming `key`)."""
        raise NotImplementedError

    def fit_labels(self, labels, shape):
        """Labels as the data holds them (one example's, or a batch's), brought to the model's input `shape`
        (TensorFlow ops): the labels themselves, unless they are images too (segmentation's masks)."""
        return labels

    def class_names(self, train, test, names, source, data=None):
        """The class names of the labels `train` and `test` (as `read_labels` gave them), `names` if given
        (`data`: the `DataConfig`, for what else the task reads of it, or None)."""
        raise NotImplementedError

    def stratify(self, labels):
        """What to stratify a split of `labels` by, or None to draw it at random."""
        raise NotImplementedError

    def targets(self, labels, classes):
        """A batch of labels as the loss takes them (TensorFlow ops, inside the data pipeline)."""
        raise NotImplementedError

    def loss(self, cfg, training, labels=None):
        """The Keras loss of the experiment `cfg` with its `TrainingConfig` `training` (phase 2's may differ;
        `labels`: the training labels, for balanced weights)."""
        raise NotImplementedError

    def metrics(self, classes, cfg):
        """The Keras metrics training logs (the main output's)."""
        raise NotImplementedError

    def class_weight(self, cfg, labels, class_names):
        """``training.class_weight`` as Keras's ``class_weight`` argument, or None; checks it against the data."""
        raise NotImplementedError

    def finish_model(self, model, cfg, data):
        """The model the experiment trains: `model` (the architecture, its scaling first), or the task's
        own ending after it (segmentation's correction of a balanced loss); `data`: the `DataBundle`."""
        return model

    fit = None  # a task whose training is not Keras's fit: a function with `cnnlab.training.fit.fit`'s arguments

    # ------------------------------------------------------------------ evaluation

    def calibrate(self, folder, outputs=None, targets=None):
        """What the task chose on the validation split (its `calibration`), saved in `folder`: the saved one,
        or, given the validation split's `outputs` and `targets`, chosen now and saved (not saved when `folder`
        is None: an unsaved ensemble's); None if none."""
        return None

    def scores(self, outputs, targets, class_names, cfg, calibration=None):
        """The metrics.json of a split: `outputs` the model's main outputs, `targets` what the data gives."""
        raise NotImplementedError

    def summary(self, result):
        """The lines `evaluate` prints for `scores`' result."""
        raise NotImplementedError

    def headline(self, result):
        """The few figures that stand for a result (an ensemble's member lines)."""
        raise NotImplementedError

    def cards(self, result):
        """The report's headline cards of `scores`' result: ``[(name, value, "percent" | "number" | "count")]``."""
        raise NotImplementedError

    def keep(self, outputs, targets, cfg, calibration=None):
        """Indices, within a batch, of the images an evaluation shows (in its plots), in order of preference
        (`cfg`: the run's config, None for a bare model)."""
        raise NotImplementedError

    def plots(self, folder, result, kept, class_names):
        """Draw an evaluation's own plots into `folder` (the learning curves are every task's, drawn apart);
        `kept`: the images `keep` chose, as ``(image, output, target)``."""
        raise NotImplementedError

    def label_issues(self, labels, probabilities):
        """Likely label errors among `labels` (as the data holds them) given out-of-sample `probabilities`, by
        confident learning (cleanlab): ``[(index, label quality 0..1, suggested label)]``, the likeliest error
        first; None for a task cleanlab does not check here."""
        return None

    def label_text(self, label, class_names):
        """One label as a person reads it (a class name, names separated by spaces)."""
        return str(label)

    # ------------------------------------------------------------------ predict, export, report

    output_folder = False  # predict's --output: one .csv/.json file, or (True) a folder of files per image

    def condense(self, outputs):
        """What predict keeps of a batch of the model's outputs, one item per image (all of it, by default)."""
        return list(outputs)

    def predictions(self, found, outputs, problems, class_names, calibration=None, **options):
        """`predict`'s result for the files `found` (`outputs` and `problems` by file index), with the CLI's
        `options`: an object with ``rows``, ``predicted``, ``bad``, ``csv_text()``, ``json_text()`` and
        ``table_lines()``."""
        raise NotImplementedError

    def agreement(self, expected, got, cfg, calibration=None):
        """``(agreeing, compared)``: how many of a batch's outputs (`got`) agree with `expected` (the Keras
        model's outputs, or the targets), of how many compared (images, labels or pixels); `cfg`: the run's config
        (None for a bare model)."""
        raise NotImplementedError

    agreement_name = None  # what `agreement` counts, for the export's line

    def report(self, page, model, cfg, data, split, outputs, targets, echo):
        """Add the task's sections (figures and notes) to a report `page` (`cnnlab.commands.report.RunReport`)."""
        raise NotImplementedError


class PredictedFiles:
    """What every task's `Task.predictions` result shares: ``rows`` in the order of the files, each with
    an ``error`` (None for a file the model predicted)."""

    rows: list

    @property
    def predicted(self):
        """How many files were predicted."""
        return sum(row.error is None for row in self.rows)

    @property
    def bad(self):
        """The rows of the files that could not be predicted."""
        return [row for row in self.rows if row.error is not None]

    def write(self, output):
        """Write the rows to the file `output` atomically: CSV or JSON by its suffix."""
        from cnnlab import files

        files.write_text(output, self.json_text() if Path(output).suffix.lower() == ".json" else self.csv_text())
