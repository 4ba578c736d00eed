"""Single-label classification: one class per image, softmax over the classes, categorical cross-entropy.

Its metrics (accuracy, top-k, per-class precision/recall/F1, the confusion matrix),
its plots (curves, confusion matrix, misclassified images), its predictions (the top-k
classes of each image), its export check (top-1 agreement) and its report (confusion
matrix, confident mistakes, Grad-CAM).
"""

import csv
import io
import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cnnlab.console import aligned
from cnnlab.errors import ConfigError, DataError
from cnnlab.tasks.base import PredictedFiles, Task, register_task

LOSSES = {"auto": "CategoricalCrossentropy", "categorical_crossentropy": "CategoricalCrossentropy",
          "categorical_focal_crossentropy": "CategoricalFocalCrossentropy"}  # training.loss -> keras.losses


@register_task("classification")
class Classification(Task):
    """Single-label classification (the default task)."""

    name = "classification"
    activation = "softmax"
    agreement_name = "top-1"

    def read_labels(self, y, images, key):
        return read_labels(y, len(images), key)

    def class_names(self, train, test, names, source, data=None):
        return class_names(train, test, names, source)

    def stratify(self, labels):
        return labels

    checks_labels = True

    def label_issues(self, labels, probabilities):
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        labels = np.asarray(labels, int)
        # one process: cleanlab's pool forks this process, whose TensorFlow threads a fork can deadlock
        order = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
        quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
        return [(int(i), float(quality[i]), int(probabilities[i].argmax())) for i in order]

    def label_text(self, label, class_names):
        return str(class_names[int(label)])

    def targets(self, labels, classes):
        from cnnlab.data.ops import one_hot

        return one_hot(labels, classes)

    def loss(self, cfg, training, labels=None):
        import keras

        return getattr(keras.losses, LOSSES[training.loss])(label_smoothing=training.label_smoothing)

    def metrics(self, classes, cfg):
        return keras_metrics(classes, cfg.evaluate.top_k)

    def class_weight(self, cfg, labels, class_names):
        return class_weight(cfg, labels, class_names)

    def scores(self, outputs, targets, class_names, cfg, calibration=None):
        return scores(outputs, labels_of(targets), class_names, cfg.evaluate.top_k if cfg else [1, 5])

    def summary(self, result):
        return format_metrics(result)

    def headline(self, result):
        return {"accuracy": result["accuracy"], "loss": result["loss"], "top_k_accuracy": result["top_k_accuracy"]}

    def cards(self, result):
        macro = result.get("macro_avg", {})
        return [("accuracy", result.get("accuracy"), "percent"),
                *((f"{k.replace('top', 'top-')} accuracy", v, "percent")
                  for k, v in result.get("top_k_accuracy", {}).items()),
                ("loss", result.get("loss"), "number"), ("macro precision", macro.get("precision"), "number"),
                ("macro recall", macro.get("recall"), "number"), ("macro F1", macro.get("f1"), "number"),
                ("images", result.get("images"), "count")]

    def keep(self, outputs, targets, cfg, calibration=None):
        """The misclassified images, in order."""
        return np.flatnonzero(outputs.argmax(axis=1) != labels_of(targets))

    def plots(self, folder, result, kept, class_names):
        draw_plots(folder, result, kept, class_names)

    def predictions(self, found, outputs, problems, class_names, calibration=None, top_k=3, all_probs=False):
        """`predict`'s rows of the files `found`: `outputs` and `problems` by file index."""
        return Predictions(make_rows(found, outputs, problems, top_k, all_probs), class_names, top_k, all_probs)

    def agreement(self, expected, got, cfg, calibration=None):
        """Images whose top-1 class is the same, of the batch."""
        return int(np.sum(got.argmax(axis=1) == expected.argmax(axis=1))), len(got)

    def report(self, page, model, cfg, data, split, outputs, targets, echo):
        report_sections(page, model, data, split, outputs, labels_of(targets), echo)


def read_labels(y, n, key):
    """Class indices 0..K-1 (one-hot rows become indices), one per image."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)  # one-hot
    y = y.reshape(-1)
    if len(y) != n:
        raise DataError(f"{key} has {len(y)} labels for {n} images: they must match.")
    whole = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all())
    if not whole or (len(y) and y.min() < 0):
        shown = f"values from {y.min()} to {y.max()}" if whole else f"dtype {y.dtype}"
        raise DataError(f"{key} must hold class indices 0..K-1 (or one-hot rows). Received {shown}.")
    return y.astype(np.int64)


def class_names(train, test, names, source):
    """The class names of class-index labels; every class is in the training labels and there are at least two."""
    classes = int(train.max()) + 1
    if test is not None and test.max() >= classes:
        raise DataError(f"{source}: y_test has label {test.max()} but y_train's labels go up to "
                        f"{classes - 1}: every test class must be a training class.")
    present = len(np.unique(train))
    if present < 2:
        raise DataError(f"{source}: y_train holds {present} class: a classifier needs at least 2 classes.")
    names = [str(c) for c in (names if names is not None else range(classes))]
    if len(names) < classes:
        raise DataError(f"{source}: labels go up to {classes - 1} but only {len(names)} class names are given.")
    return names


def labels_of(targets):
    """Class indices of one-hot targets (a batch or a split)."""
    return np.asarray(targets).argmax(axis=-1)


def scores(probs, labels, class_names, top_k):
    """Loss, accuracy, top-k accuracy, per-class precision/recall/F1 and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    classes = np.arange(len(class_names))
    predicted = probs.argmax(axis=1)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
    top = {f"top{k}": float(top_k_accuracy_score(labels, probs, k=k, labels=classes))
           for k in top_k if 1 < k < len(class_names)}
    p, r, f, s = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    per_class = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, name in enumerate(class_names)}
    mp, mr, mf, _ = precision_recall_fscore_support(labels, predicted, labels=classes, average="macro",
                                                    zero_division=0)
    return {"images": len(labels), "loss": loss, "accuracy": float(np.mean(predicted == labels)),
            "top_k_accuracy": top, "macro_avg": {"precision": float(mp), "recall": float(mr), "f1": float(mf)},
            "per_class": per_class, "class_names": list(class_names),
            "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist()}


def format_metrics(result):
    """A short human-readable report of `scores`."""
    split = f"{result['split']} (TTA)" if result.get("tta") else result["split"]
    lines = [f"{split}: {result['images']} images  loss {result['loss']:.4f}  "
             f"accuracy {result['accuracy']:.4f}"
             + "".join(f"  {k} {v:.4f}" for k, v in result["top_k_accuracy"].items())]
    width = max(len(n) for n in [*result["per_class"], "macro avg"]) + 2
    lines.append(f"{'class':<{width}}precision  recall     f1  support")
    for name, s in result["per_class"].items():
        lines.append(f"{name:<{width}}{s['precision']:9.3f}{s['recall']:8.3f}{s['f1']:7.3f}{s['support']:9d}")
    m = result["macro_avg"]
    lines.append(f"{'macro avg':<{width}}{m['precision']:9.3f}{m['recall']:8.3f}{m['f1']:7.3f}")
    return "\n".join(lines)


def keras_metrics(classes, top_k):
    """Accuracy plus top-k accuracy for each k in `top_k` below the class count."""
    import keras

    out = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    out += [keras.metrics.TopKCategoricalAccuracy(k, name=f"top{k}_accuracy") for k in top_k if 1 < k < classes]
    return out


def class_weight(cfg, labels, class_names):
    """``training.class_weight`` as Keras's ``{index: weight}``; ``balanced`` as scikit-learn computes it."""
    import numpy as np

    spec = cfg.training.class_weight
    if spec is None:
        return None
    classes = np.arange(len(class_names))
    if spec == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(labels)
        weights = compute_class_weight("balanced", classes=present, y=labels)
        return {int(c): float(w) for c, w in zip(present, weights)}
    out = {int(c): 1.0 for c in classes}
    for key, weight in spec.items():
        index = class_names.index(str(key)) if str(key) in class_names else key
        if not isinstance(index, int) or index not in out:
            raise ConfigError(f"training.class_weight: {key!r} is not a class. Classes: {', '.join(class_names)}.")
        out[index] = float(weight)
    return out


# --------------------------------------------------------------------------- evaluate's plots and the report's sections


def draw_plots(folder, result, kept, class_names):
    """The confusion matrix and the misclassified images (`kept`: ``(image, probabilities, one-hot)``)."""
    from cnnlab.visual import plots

    plots.confusion(np.array(result["confusion_matrix"]), class_names, folder / "confusion_matrix.png")
    mistakes = [(image, int(target.argmax()), int(probs.argmax()), float(probs.max())) for image, probs, target in kept]
    if mistakes:
        plots.mistakes_grid(mistakes, class_names, folder / "mistakes.png")


def report_sections(page, model, data, split, probs, labels, echo):
    """The report's confusion matrix, most confident mistakes and Grad-CAM heat-maps over them."""
    from cnnlab.inference.predictions import images_at
    from cnnlab.visual import plots

    page.figures["confusion"] = plots.png(plots.confusion, np.array(page.metrics["confusion_matrix"]),
                                          data.class_names)
    worst = confident_mistakes(probs, labels, MISTAKES)
    images = images_at(data, split, worst)
    mistakes = [(images[i], int(labels[j]), int(probs[j].argmax()), float(probs[j].max())) for i, j in enumerate(worst)]
    if mistakes:
        page.figures["mistakes"] = plots.png(plots.mistakes_grid, mistakes, data.class_names)
    else:
        page.notes["mistakes"] = f"No mistakes: every image of the {split} split is classified correctly."
    explained = mistakes[:GRADCAM] or least_confident(probs, labels, data, split, GRADCAM)
    gradcam_section(page, model, explained, data.class_names, echo, mistakes=bool(mistakes))


MISTAKES = 16  # the most confident mistakes shown
GRADCAM = 8  # ... of which this many get a heat-map


def confident_mistakes(probs, labels, count):
    """Indices of up to `count` misclassified examples, the most confident first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:count].tolist()


def least_confident(probs, labels, data, split, count):
    """``(image, true, predicted, confidence)`` of the `count` least confident examples."""
    order = np.argsort(probs.max(axis=1), kind="stable")[:count].tolist()
    from cnnlab.inference.predictions import images_at

    images = images_at(data, split, order)
    return [(images[i], int(labels[j]), int(probs[j].argmax()), float(probs[j].max())) for i, j in enumerate(order)]


def gradcam_section(out, model, examples, class_names, echo, mistakes=True):
    """Grad-CAM heat-maps over `examples` (mistakes, or else the least confident answers), or why there are none."""
    from cnnlab.visual import plots
    from cnnlab.visual.gradcam import grad_cam, overlay

    cam = grad_cam(model)
    if not cam.available:
        out.notes["gradcam"] = cam.unavailable + "."
        return
    if not examples:
        out.notes["gradcam"] = "No images to explain."
        return
    images = np.stack([e[0] for e in examples])
    cam.heatmaps(images[:1])  # the first call traces the graph: not part of the timing
    import time

    started = time.perf_counter()
    maps = cam.heatmaps(images, [e[2] for e in examples])
    per_image = (time.perf_counter() - started) / len(examples)
    items = [(image, overlay(image, heat), *rest) for (image, *rest), heat in zip(examples, maps)]
    out.figures["gradcam"] = plots.png(plots.gradcam_grid, items, class_names, layer_name=cam.layer_name)
    which = ("the most confident mistakes: where the model looked for the class it wrongly predicted" if mistakes
             else "no mistakes, so the least confident answers: where the model looked for the class it predicted")
    out.notes["gradcam"] = (f"Heat-maps over {which}. {cam.description} "
                            f"({maps.shape[1]}x{maps.shape[2]} map), {per_image * 1000:.0f} ms an image."
                            + (f" {cam.note}" if cam.note else ""))
    echo(f"Grad-CAM: {len(examples)} images, layer {cam.layer_name}, {per_image * 1000:.0f} ms an image")


# --------------------------------------------------------------------------- predict's rows


@dataclass(frozen=True)
class Row:
    """One file's prediction: the top classes (label, probability), every class's probability, or an error."""

    path: str
    top: tuple = ()
    probabilities: Optional[tuple] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class Predictions(PredictedFiles):
    """The rows of one `predict` call, in the order of the files, and what they mean."""

    rows: list
    class_names: list
    top_k: int
    all_probs: bool = False

    def columns(self):
        """The CSV header: path, ``top<i>_label`` and ``top<i>_prob``, optionally ``prob_<class>``, error."""
        top = [f"top{i}_{what}" for i in range(1, self.top_k + 1) for what in ("label", "prob")]
        every = [f"prob_{name}" for name in self.class_names] if self.all_probs else []
        return ["path", *top, *every, "error"]

    def csv_text(self):
        """The rows as CSV text, one line per file, probabilities rounded to 6 decimals."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns())
        for row in self.rows:
            top = [v for c, p in row.top for v in (self.class_names[c], round(p, 6))]
            top += [""] * (2 * self.top_k - len(top))
            every = ([round(p, 6) for p in row.probabilities] if row.probabilities else
                     [""] * len(self.class_names)) if self.all_probs else []
            writer.writerow([row.path, *top, *every, row.error or ""])
        return buffer.getvalue()

    def json_records(self):
        """The rows as JSON-ready dicts: path, top (label, probability), [probabilities], error."""
        records = []
        for row in self.rows:
            record = {"path": row.path,
                      "top": [{"label": self.class_names[c], "probability": p} for c, p in row.top]}
            if self.all_probs:
                record["probabilities"] = (dict(zip(self.class_names, row.probabilities))
                                           if row.probabilities else None)
            record["error"] = row.error
            records.append(record)
        return records

    def json_text(self):
        return json.dumps(self.json_records(), indent=2) + "\n"

    def table_lines(self):
        """An aligned table: path, ``top1 .. topk`` as ``label  0.982``, [every class], error (when any)."""
        heads = ["path", *(f"top{i}" for i in range(1, self.top_k + 1))]
        heads += list(self.class_names) if self.all_probs else []
        has_errors = bool(self.bad)
        cells = [heads + (["error"] if has_errors else [])]
        for row in self.rows:
            top = [f"{self.class_names[c]} {p:.3f}" for c, p in row.top] or [""] * self.top_k
            every = ([f"{p:.3f}" for p in row.probabilities] if row.probabilities else
                     [""] * len(self.class_names)) if self.all_probs else []
            cells.append([row.path, *top, *every] + ([row.error or ""] if has_errors else []))
        return aligned(cells)


def make_rows(found, probs, problems, k, all_probs):
    """One `Row` per file, in order: the top `k` classes by probability, or the file's problem (`problems`)."""
    rows = []
    for index, path in enumerate(found):
        p = probs.get(index)
        if p is None:
            rows.append(Row(path, error=problems[index]))
            continue
        best = np.argsort(-p, kind="stable")[:k]  # ties keep class order
        rows.append(Row(path, tuple((int(c), float(p[c])) for c in best),
                        tuple(float(v) for v in p) if all_probs else None))
    return rows
