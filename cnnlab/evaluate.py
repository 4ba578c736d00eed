"""`evaluate`: a run's best model on a split: loss, accuracy, top-k, per-class scores, confusion matrix."""

import math
from pathlib import Path

import numpy as np

from cnnlab import artifacts, files
from cnnlab.errors import CnnlabError, DataError
from cnnlab.target import open_target
from cnnlab.tta import plan as tta_plan

MAX_MISTAKES = 25


def folder_data(data_dir, model, class_names, batch_size=64, on_bad_image="error"):
    """Every image of a class-sub-folder folder as the test split, fitted to the model's input."""
    from cnnlab.data.folders import scan_folder
    from cnnlab.data.pipeline import DataBundle
    from cnnlab.data.sources import Examples

    scan = scan_folder(data_dir, on_bad_image=on_bad_image, key="--data-dir", class_names=class_names)
    examples = Examples(labels=scan.labels, paths=scan.paths)
    return DataBundle(train=examples, val=None, test=examples, class_names=list(scan.class_names),
                      input_shape=tuple(model.input_shape[1:]), batch_size=batch_size, seed=0)


def evaluate(target=None, *, split=None, data_dir=None, root="runs", unsafe=False, tta=False, echo=print,
             note=None, data=None, model=None):
    """Evaluate a run (default: the latest) or a .keras model, and write its metrics and plots.

    With ``data_dir``, every image of that class-sub-folder folder is the test set
    (a bare .keras model needs one); otherwise the run's own split. The run's own
    split (``evaluate.split``) writes ``metrics.json`` and ``plots/``; another split
    or a folder writes under ``evaluations/<split or folder>/``, so no evaluation
    replaces another. With ``tta`` (test-time augmentation, `cnnlab.tta`) the
    probabilities are averaged over a few views of each image, and the metrics,
    marked ``"tta": true``, go to ``evaluations/<split or folder>-tta/``.

    `echo` (print-like) is told the metrics; `note` (default: `echo`) which run is evaluated.
    `data` and `model`: the run's data and model when the caller has them loaded already (`train`), so
    they are not read again.

    Returns:
        The metrics dict that metrics.json holds.
    """
    from cnnlab.experiment import setup

    note = echo if note is None else note
    opened = open_target(target, root, note=note)
    if opened.run is None and data_dir is None:
        raise CnnlabError(f"{str(opened.model_path)!r} is not inside a run folder: give --data-dir, a folder of "
                          "class sub-folders to evaluate it on.")
    cfg = opened.config()
    own_split = "test" if data_dir else split or cfg.evaluate.split
    files.check_writable(output_folder(opened, cfg, own_split, data_dir, tta), "the evaluation's folder",
                         "Make the run writable for you, or evaluate a copy of it (cp -r) in a folder you own.")
    if cfg:
        setup(cfg)
    model = opened.load_model(unsafe) if model is None else model
    if data_dir:
        split = "test"
        data = folder_data(data_dir, model, opened.class_names(), cfg.data.batch_size if cfg else 64)
    else:
        from cnnlab.data.pipeline import load_data

        split = split or cfg.evaluate.split
        data = load_data(cfg) if data is None else data
    check_model_fits(model, data, opened.run or opened.model_path)
    plan = tta_plan(cfg, tuple(model.input_shape[1:])) if tta else None
    for line in plan.notes() if plan else ():
        note(line)  # on stderr under --json, as the run's line
    out = output_folder(opened, cfg, split, data_dir, tta=bool(plan))
    from cnnlab import plots

    drawing = plots.Evaluation(out, history_from=opened.folder)  # the curves, while the model predicts
    probs, labels, mistakes = predict_split(model, data, split, tta=plan)
    result = scores(probs, labels, data.class_names, cfg.evaluate.top_k if cfg else [1, 5])
    result.update(split=split, model=str(opened.model_path), data_dir=data_dir)
    if plan:
        result.update(tta=True, tta_views=list(plan.views), tta_shift=plan.step)
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / artifacts.METRICS_FILE, result)
    drawing.finish(result, mistakes, data.class_names)
    echo(format_metrics(result))
    return result


def output_folder(opened, cfg, split, data_dir, tta=False):
    """Where an evaluation's metrics go: the run itself for its own split, else ``evaluations/<what>[-tta]``."""
    own = data_dir is None and cfg is not None and split == cfg.evaluate.split and not tta
    if own or (opened.run is None and data_dir is None):
        return opened.folder
    what = f"folder-{Path(data_dir).resolve().name}" if data_dir else split
    return opened.folder / "evaluations" / (f"{what}-tta" if tta else what)


def check_input_shape(model, data, where):
    """A model whose input differs from the data's images is an error saying what to set."""
    shape = tuple(model.input_shape[1:])
    if shape != tuple(data.input_shape):
        raise DataError(f"the model in {where} takes images of {shape} but the data gives "
                        f"{tuple(data.input_shape)}: set data.image_size to {list(shape[:2])} and "
                        f"data.color_mode to {'grayscale' if shape[-1] == 1 else 'rgb'}.")


def check_model_fits(model, data, where):
    """A model must take the data's images and predict its classes (evaluate, export, ensemble, report)."""
    check_input_shape(model, data, where)
    out = main_output_shape(model)[-1]
    if out != data.classes:
        raise DataError(f"the model in {where} predicts {out} classes but the data has {data.classes} "
                        f"({', '.join(data.class_names[:10])}): use data with the same classes.")


def main_output_shape(model):
    """The output shape of the main classifier (GoogLeNet's auxiliary ones come after it)."""
    shape = model.output_shape
    return shape[0] if isinstance(shape, list) else shape


def main_output(predictions):
    """The main classifier's probabilities from a model's prediction."""
    return np.asarray(predictions[0] if isinstance(predictions, (list, tuple)) else predictions)


def predict_batch(model, images, tta=None):
    """The main classifier's probabilities for a batch; with a `cnnlab.tta.Plan`, averaged over its views."""
    batch = images if tta is None else tta.expand(images)
    # NumPy in: tf.data's tensors are TensorFlow's, and the model may run on another backend (JAX)
    probs = main_output(model.predict_on_batch(np.asarray(batch))).astype(np.float32)
    return probs if tta is None else tta.average(probs)


INFERENCE_BYTES = 16 * 2**20  # the images of one prediction batch at most, as float32


def inference_batch(data, tta=None):
    """Images per prediction batch: the training batch, or up to 1,024 small images (fewer calls run faster).

    Predicting MNIST's test set in batches of 1,024 rather than 64 takes 1.2 s instead of
    1.7 s on 2 cores; large images keep the training batch, which is known to fit.
    """
    views = len(tta.views) if tta is not None else 1
    return max(data.batch_size, min(1024, INFERENCE_BYTES // (4 * math.prod(data.input_shape) * views)))


def predict_split(model, data, split, tta=None):
    """Class probabilities and true labels of a split, plus up to 25 misclassified images.

    ``tta``: a `cnnlab.tta.Plan` to average each image's views, or None.
    """
    probs, labels, mistakes = [], [], []
    for images, onehot in data.dataset(split, batch_size=inference_batch(data, tta)):
        p = predict_batch(model, images, tta)
        y = np.argmax(np.asarray(onehot), axis=1)
        wrong = np.flatnonzero(p.argmax(axis=1) != y)
        for i in wrong[: MAX_MISTAKES - len(mistakes)]:
            mistakes.append((np.asarray(images[i]), int(y[i]), int(p[i].argmax()), float(p[i].max())))
        probs.append(p)
        labels.append(y)
    return np.concatenate(probs), np.concatenate(labels), mistakes


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
