"""`evaluate`: a run's best model on a split: loss, accuracy, top-k, per-class scores, confusion matrix."""

from pathlib import Path

import numpy as np

from cnnlab import artifacts
from cnnlab.config import build_config, read_yaml
from cnnlab.errors import CnnlabError, DataError

MAX_MISTAKES = 25


def load_run_config(run, overrides=()):
    """The resolved config a run was trained with, with optional ``--set`` overrides."""
    from cnnlab.config import apply_overrides

    data = read_yaml(Path(run) / artifacts.CONFIG_FILE)
    return build_config(apply_overrides(data, overrides), str(Path(run) / artifacts.CONFIG_FILE))


def load_model(path):
    """Load a .keras model in Keras's safe mode, with cnnlab's own layers registered."""
    import keras

    import cnnlab.models.applications  # noqa: F401  (registers BackbonePreprocessing)

    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"no model at {str(path)!r}: the run has not saved a model yet (did training finish "
                          "its first epoch?).")
    try:
        return keras.saving.load_model(path)
    except Exception as exc:
        raise CnnlabError(f"{str(path)!r} is not a loadable .keras model: {str(exc).splitlines()[0]}") from None


def _data_for(cfg, data_dir):
    """The run's data, or an image folder given by ``--data-dir`` as the test split."""
    from cnnlab.data.pipeline import load_data

    if data_dir is None:
        return load_data(cfg)
    from cnnlab.config import apply_overrides

    over = [f"data.test_path={data_dir}"] if cfg.data.dataset == "directory" else [
        "data.dataset=directory", f"data.path={data_dir}", "data.validation_split=0"]
    changed = build_config(apply_overrides(_without_val_monitors(cfg.to_dict()), over), "--data-dir")
    return load_data(changed)


def _without_val_monitors(data):
    data["callbacks"] = {"model_checkpoint": None, "reduce_lr_on_plateau": None, "early_stopping": None}
    return data


def evaluate(target=None, *, split=None, data_dir=None, root="runs", echo=print):
    """Evaluate a run (default: the latest) and write metrics.json and plots into it.

    Returns:
        The metrics dict that metrics.json holds.
    """
    run = artifacts.resolve_run(target, root)
    model_path = Path(target) if target and str(target).endswith(".keras") else run / artifacts.MODEL_FILE
    cfg = load_run_config(run)
    from cnnlab.experiment import setup

    setup(cfg)
    split = "test" if data_dir else (split or cfg.evaluate.split)
    data = _data_for(cfg, data_dir)
    model = load_model(model_path)
    _check_model_fits(model, data, run)
    probs, labels, mistakes = predict_split(model, data, split)
    result = scores(probs, labels, data.class_names, cfg.evaluate.top_k)
    result.update(split=split, model=str(model_path), data_dir=data_dir)
    artifacts.write_json(run / artifacts.METRICS_FILE, result)
    from cnnlab import plots

    plots.write_all(run, result, mistakes, data.class_names)
    echo(format_metrics(result))
    return result


def _check_model_fits(model, data, run):
    out, shape = main_output_shape(model)[-1], tuple(model.input_shape[1:])
    if out != data.classes:
        raise DataError(f"the model in {run} predicts {out} classes but the data has {data.classes} "
                        f"({', '.join(data.class_names[:10])}): evaluate it on data with the same classes.")
    if shape != tuple(data.input_shape):
        raise DataError(f"the model in {run} takes images of {shape} but the data gives {tuple(data.input_shape)}: "
                        "set data.image_size / data.color_mode to match.")


def main_output_shape(model):
    """The output shape of the main classifier (GoogLeNet's auxiliary ones come after it)."""
    shape = model.output_shape
    return shape[0] if isinstance(shape, list) else shape


def main_output(predictions):
    """The main classifier's probabilities from a model's prediction."""
    return np.asarray(predictions[0] if isinstance(predictions, (list, tuple)) else predictions)


def predict_split(model, data, split):
    """Class probabilities and true labels of a split, plus up to 25 misclassified images."""
    probs, labels, mistakes = [], [], []
    for images, onehot in data.dataset(split):
        p = main_output(model.predict_on_batch(images))
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
    return {"images": int(len(labels)), "loss": loss, "accuracy": float(np.mean(predicted == labels)),
            "top_k_accuracy": top, "macro_avg": {"precision": float(mp), "recall": float(mr), "f1": float(mf)},
            "per_class": per_class, "class_names": list(class_names),
            "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist()}


def format_metrics(result):
    """A short human-readable report of `scores`."""
    lines = [f"{result['split']}: {result['images']} images  loss {result['loss']:.4f}  "
             f"accuracy {result['accuracy']:.4f}"
             + "".join(f"  {k} {v:.4f}" for k, v in result["top_k_accuracy"].items())]
    width = max(len(n) for n in [*result["per_class"], "macro avg"]) + 2
    lines.append(f"{'class':<{width}}precision  recall     f1  support")
    for name, s in result["per_class"].items():
        lines.append(f"{name:<{width}}{s['precision']:9.3f}{s['recall']:8.3f}{s['f1']:7.3f}{s['support']:9d}")
    m = result["macro_avg"]
    lines.append(f"{'macro avg':<{width}}{m['precision']:9.3f}{m['recall']:8.3f}{m['f1']:7.3f}")
    return "\n".join(lines)
