"""Multi-label classification: any number of labels per image (none too), a sigmoid per class.

Labels are multi-hot rows (a CSV's space-separated label names, or an npz's ``y`` of
shape ``(N, C)``); the loss is binary cross-entropy, with per-class positive weights
for ``training.class_weight: balanced``. Each class has its own decision threshold,
chosen on the validation split to maximise that class's F1 (`choose_thresholds`),
saved with the run (``thresholds.json``) and used by evaluate, predict and export.
Metrics: mean average precision (macro) and per-class AP, micro and macro F1 and
exact match (every label of an image right).
"""

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cnnlab.console import aligned
from cnnlab.errors import DataError
from cnnlab.tasks.base import PredictedFiles, Task, register_task

THRESHOLDS_FILE = "thresholds.json"
DEFAULT_THRESHOLD = 0.5  # a class's threshold when no validation split chose one


@register_task("multilabel")
class Multilabel(Task):
    """Several labels per image."""

    name = "multilabel"
    activation = "sigmoid"
    calibrated = True  # per-class thresholds, chosen on the validation split
    agreement_name = "label-set"

    # ------------------------------------------------------------------ data

    def read_labels(self, y, images, key):
        """Multi-hot rows ``(N, C)`` of 0 and 1 (C >= 1), one per image."""
        y, n = np.asarray(y), len(images)
        if y.ndim != 2 or len(y) != n or not np.isin(y, (0, 1)).all():
            shown = f"shape {y.shape}" if y.ndim != 2 or len(y) != n else "values other than 0 and 1"
            raise DataError(f"{key} must hold multi-hot rows, one per image: shape ({n}, classes), 0 or 1 for "
                            f"each class (task: multilabel). Received {shown}.")
        return y.astype(np.uint8)

    def class_names(self, train, test, names, source, data=None):
        classes = train.shape[1]
        if test is not None and test.shape[1] != classes:
            raise DataError(f"{source}: y_test has {test.shape[1]} classes but y_train {classes}: they must match.")
        names = [str(c) for c in (names if names is not None else range(classes))]
        if len(names) != classes:
            raise DataError(f"{source}: the labels have {classes} classes but {len(names)} class names are given.")
        return names

    def stratify(self, labels):
        """Multi-hot rows are not one class to stratify by: splits are drawn at random (seeded)."""
        return None

    checks_labels = True

    def label_issues(self, labels, probabilities):
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        given = [np.flatnonzero(row).tolist() for row in np.asarray(labels)]
        # one process: cleanlab's pool forks this process, whose TensorFlow threads a fork can deadlock
        order = find_label_issues(given, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = get_label_quality_scores(given, probabilities)
        return [(int(i), float(quality[i]), (probabilities[i] >= DEFAULT_THRESHOLD).astype(np.uint8)) for i in order]

    def label_text(self, label, class_names):
        return " ".join(str(class_names[c]) for c in np.flatnonzero(label)) or "(none)"

    def targets(self, labels, classes):
        import tensorflow as tf

        return tf.cast(labels, tf.float32)

    # ------------------------------------------------------------------ training

    def loss(self, cfg, training, labels=None):
        import keras

        if training.class_weight != "balanced" or labels is None:
            return keras.losses.BinaryCrossentropy()
        from cnnlab.training.losses import WeightedBinaryCrossentropy

        return WeightedBinaryCrossentropy(positive_weights(labels).tolist())

    def metrics(self, classes, cfg):
        import keras

        from cnnlab.catalog import TASK_METRICS

        pr_auc, f1 = TASK_METRICS[self.name]  # the names the config's monitors are checked against
        return [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=classes, name=pr_auc),
                keras.metrics.F1Score(average="micro", threshold=DEFAULT_THRESHOLD, name=f1)]

    def class_weight(self, cfg, labels, class_names):
        return None  # balanced weights are the loss's positive weights (Keras's class_weight takes one class)

    # ------------------------------------------------------------------ evaluation

    def calibrate(self, folder, outputs=None, targets=None):
        """The run's per-class thresholds: saved ones, or chosen now on validation `outputs` and saved (only
        chosen, when `folder` is None)."""
        from cnnlab import files

        path = Path(folder) / THRESHOLDS_FILE if folder is not None else None
        saved = files.read_json(path) if path is not None else None
        if saved is not None:
            return saved
        if outputs is None:
            return None
        thresholds = [float(t) for t in choose_thresholds(outputs, targets)]
        if path is not None:
            files.write_json(path, thresholds)
        return thresholds

    def scores(self, outputs, targets, class_names, cfg, calibration=None):
        return scores(outputs, targets, class_names, calibration)

    def summary(self, result):
        return format_metrics(result)

    def headline(self, result):
        return {"mean_average_precision": result["mean_average_precision"], "exact_match": result["exact_match"],
                "loss": result["loss"]}

    def cards(self, result):
        return [("mAP", result.get("mean_average_precision"), "percent"),
                ("exact match", result.get("exact_match"), "percent"), ("F1 micro", result.get("f1_micro"), "number"),
                ("F1 macro", result.get("f1_macro"), "number"), ("loss", result.get("loss"), "number"),
                ("images", result.get("images"), "count")]

    def keep(self, outputs, targets, cfg, calibration=None):
        """The images whose label set is wrong, most wrong labels first."""
        wrong = (decide(outputs, calibration) != targets).sum(axis=1)
        order = np.argsort(-wrong, kind="stable")
        return order[wrong[order] > 0]

    def plots(self, folder, result, kept, class_names):
        from cnnlab.visual import plots

        plots.pr_curves(result["pr_curves"], class_names, folder / "pr_curves.png")
        thresholds = np.asarray(result["thresholds"])
        items = [(image, label_text(target, class_names), label_text(output >= thresholds, class_names, output))
                 for image, output, target in kept]
        if items:
            plots.labelled_grid([image for image, *_ in items], [f"true: {t}\npredicted: {p}" for _, t, p in items],
                                folder / "mistakes.png")

    # ------------------------------------------------------------------ predict, export, report

    def predictions(self, found, outputs, problems, class_names, calibration=None, **options):
        thresholds = thresholds_of(calibration, len(class_names))
        rows = []
        for index, path in enumerate(found):
            p = outputs.get(index)
            if p is None:
                rows.append(Row(path, error=problems[index]))
                continue
            chosen = np.flatnonzero(p >= thresholds)
            chosen = chosen[np.argsort(-p[chosen], kind="stable")]
            rows.append(Row(path, tuple((int(c), float(p[c])) for c in chosen), tuple(float(v) for v in p)))
        return Predictions(rows, class_names, options.get("all_probs", False))

    def agreement(self, expected, got, cfg, calibration=None):
        """Images whose label set (each class at its threshold) is the same, of the batch."""
        same = (decide(expected, calibration) == decide(got, calibration)).all(axis=1)
        return int(same.sum()), len(got)

    def report(self, page, model, cfg, data, split, outputs, targets, echo):
        from cnnlab.visual import plots

        page.figures["pr-curves"] = plots.png(plots.pr_curves, page.metrics["pr_curves"], data.class_names)


def decide(outputs, calibration=None):
    """Multi-hot decisions: each class's probability at its threshold (a hard 0/1 target stays itself)."""
    outputs = np.asarray(outputs)
    thresholds = thresholds_of(calibration, outputs.shape[-1])
    return (outputs >= thresholds).astype(np.uint8)


def thresholds_of(calibration, classes):
    """Each class's decision threshold: the run's (`Multilabel.calibrate`), else `DEFAULT_THRESHOLD`."""
    return np.asarray(calibration if calibration is not None else [DEFAULT_THRESHOLD] * classes, np.float64)


def positive_weights(labels):
    """Per-class weights of the positive term: negatives / positives, as scikit-learn's "balanced" weighs a
    binary class (a class without positives gets 1)."""
    labels = np.asarray(labels, np.float64)
    positives = labels.sum(axis=0)
    return np.where(positives > 0, (len(labels) - positives) / np.maximum(positives, 1), 1.0)


def choose_thresholds(outputs, targets):
    """Per class, the threshold among the validation probabilities that maximises F1 (0.5 without positives).

    Ties keep the threshold nearest 0.5.
    """
    from sklearn.metrics import precision_recall_curve

    out = []
    for c in range(outputs.shape[1]):
        if targets[:, c].sum() == 0:
            out.append(DEFAULT_THRESHOLD)
            continue
        precision, recall, thresholds = precision_recall_curve(targets[:, c], outputs[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        chosen = thresholds[best[np.argmin(np.abs(thresholds[best] - DEFAULT_THRESHOLD))]]
        out.append(float(np.clip(chosen, 1e-6, 1.0)))  # above 0: a 0 target never passes
    return out


def scores(outputs, targets, class_names, calibration=None):
    """mAP (macro over classes with positives), per-class AP, micro/macro F1, exact match, loss, thresholds."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, precision_recall_fscore_support

    targets = np.asarray(targets).astype(np.uint8)
    thresholds = thresholds_of(calibration, len(class_names)).tolist()
    predicted = decide(outputs, thresholds)
    p = np.clip(outputs, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    present = targets.sum(axis=0) > 0
    ap = [float(average_precision_score(targets[:, c], outputs[:, c])) if present[c] else None
          for c in range(len(class_names))]
    pr, rc, f1, support = precision_recall_fscore_support(targets, predicted, average=None, zero_division=0)
    micro = precision_recall_fscore_support(targets, predicted, average="micro", zero_division=0)
    curves = {}
    for c, name in enumerate(class_names):
        if present[c]:
            precision, recall, _ = precision_recall_curve(targets[:, c], outputs[:, c])
            step = max(1, len(recall) // 200)  # at most ~200 points a class in metrics.json
            curves[name] = {"recall": recall[::step].round(4).tolist(),
                            "precision": precision[::step].round(4).tolist()}
    per_class = {name: {"average_precision": ap[c], "precision": float(pr[c]), "recall": float(rc[c]),
                        "f1": float(f1[c]), "threshold": float(thresholds[c]), "support": int(support[c])}
                 for c, name in enumerate(class_names)}
    known = [v for v in ap if v is not None]
    return {"images": len(targets), "loss": loss,
            "mean_average_precision": float(np.mean(known)) if known else None,
            "average_precision": {name: ap[c] for c, name in enumerate(class_names)},
            "f1_micro": float(micro[2]), "f1_macro": float(np.mean(f1)),
            "exact_match": float(np.mean((predicted == targets).all(axis=1))),
            "thresholds": [float(t) for t in thresholds], "per_class": per_class, "class_names": list(class_names),
            "pr_curves": curves}


def format_metrics(result):
    """A short human-readable report of `scores`."""
    m = result["mean_average_precision"]
    lines = [f"{result['split']}: {result['images']} images  loss {result['loss']:.4f}  "
             f"mAP {m:.4f}  exact match {result['exact_match']:.4f}  F1 micro {result['f1_micro']:.4f}  "
             f"macro {result['f1_macro']:.4f}" if m is not None else
             f"{result['split']}: {result['images']} images  loss {result['loss']:.4f}  (no positive labels)"]
    rows = [("class", "AP", "precision", "recall", "f1", "threshold", "support")]
    for name, s in result["per_class"].items():
        ap = "-" if s["average_precision"] is None else f"{s['average_precision']:.3f}"
        rows.append((name, ap, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
                     f"{s['threshold']:.3f}", str(s["support"])))
    return "\n".join(lines + aligned(rows, right=(1, 2, 3, 4, 5, 6)))


def label_text(row, class_names, probabilities=None):
    """``"3 7"`` (or ``"3 (0.98) 7 (0.91)"`` with `probabilities`); ``"none"`` for an empty set."""
    chosen = np.flatnonzero(np.asarray(row))
    if probabilities is not None:
        return " ".join(f"{class_names[c]} ({probabilities[c]:.2f})" for c in chosen) or "none"
    return " ".join(class_names[c] for c in chosen) or "none"


# --------------------------------------------------------------------------- predict's rows


@dataclass(frozen=True)
class Row:
    """One file's prediction: the labels above their thresholds (label, probability), every probability, or
    an error."""

    path: str
    labels: tuple = ()
    probabilities: Optional[tuple] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class Predictions(PredictedFiles):
    """The rows of one `predict` call of a multi-label run."""

    rows: list
    class_names: list
    all_probs: bool = False

    def csv_text(self):
        """path, labels (space-separated), probabilities (of those labels), [prob_<class>...], error."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        every = [f"prob_{name}" for name in self.class_names] if self.all_probs else []
        writer.writerow(["path", "labels", "probabilities", *every, "error"])
        for row in self.rows:
            labels = " ".join(self.class_names[c] for c, _ in row.labels)
            probs = " ".join(f"{p:.6f}" for _, p in row.labels)
            cells = ([round(p, 6) for p in row.probabilities] if row.probabilities else
                     [""] * len(self.class_names)) if self.all_probs else []
            writer.writerow([row.path, labels, probs, *cells, row.error or ""])
        return buffer.getvalue()

    def json_text(self):
        records = []
        for row in self.rows:
            record = {"path": row.path,
                      "labels": [{"label": self.class_names[c], "probability": p} for c, p in row.labels]}
            if self.all_probs:
                record["probabilities"] = (dict(zip(self.class_names, row.probabilities))
                                           if row.probabilities else None)
            record["error"] = row.error
            records.append(record)
        return json.dumps(records, indent=2) + "\n"

    def table_lines(self):
        """path, the labels above their thresholds as ``3 0.982, 7 0.910`` (``-`` for none), error (when any)."""
        has_errors = bool(self.bad)
        cells = [["path", "labels"] + (list(self.class_names) if self.all_probs else [])
                 + (["error"] if has_errors else [])]
        for row in self.rows:
            labels = ", ".join(f"{self.class_names[c]} {p:.3f}" for c, p in row.labels)
            every = ([f"{p:.3f}" for p in row.probabilities] if row.probabilities else
                     [""] * len(self.class_names)) if self.all_probs else []
            cells.append([row.path, labels or ("" if row.error else "-"), *every]
                         + ([row.error or ""] if has_errors else []))
        return aligned(cells)
