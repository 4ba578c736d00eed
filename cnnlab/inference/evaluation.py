"""Evaluating a run's model on a split: its task's metrics into metrics.json, and its plots.

What `cnnlab evaluate` does, and `cnnlab train` when it scores the run it trained.
"""

from pathlib import Path

from cnnlab import files, rundir
from cnnlab.errors import CnnlabError
from cnnlab.inference.inputs import check_model_fits, folder_data
from cnnlab.inference.predictions import predict_split
from cnnlab.inference.tta import plan as tta_plan
from cnnlab.tasks import task_of


def run_evaluation(opened, *, split=None, data_dir=None, unsafe=False, tta=False, note=print, data=None,
                   model=None):
    """Evaluate the run or .keras model of `opened` (a `cnnlab.rundir.Target`), and write its metrics and plots.

    With ``data_dir``, every image of that class-sub-folder folder is the test set
    (a bare .keras model needs one); otherwise the run's own split. The run's own
    split (``evaluate.split``) writes ``metrics.json`` and ``plots/``; another split
    or a folder writes under ``evaluations/<split or folder>/``, so no evaluation
    replaces another. With ``tta`` (test-time augmentation, `cnnlab.inference.tta`) the
    probabilities are averaged over a few views of each image, and the metrics,
    marked ``"tta": true``, go to ``evaluations/<split or folder>-tta/``.

    `note` (print-like) is told the TTA's views. `data` and `model`: the run's data and model when the
    caller has them loaded already (`train`), so they are not read again.

    Returns:
        The metrics dict that metrics.json holds.
    """
    from cnnlab.session import setup

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
    from cnnlab.visual import plots

    task = task_of(cfg)
    drawing = plots.Evaluation(out, history_from=opened.folder)  # the curves, while the model predicts
    calibration = calibrate(task, opened, model, data)
    outputs, targets, kept = predict_split(model, data, split, tta=plan,
                                           keep=lambda o, t: task.keep(o, t, cfg, calibration))
    result = task.scores(outputs, targets, data.class_names, cfg, calibration)
    result.update(split=split, model=str(opened.model_path), data_dir=data_dir)
    if plan:
        result.update(tta=True, tta_views=list(plan.views), tta_shift=plan.step)
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / rundir.METRICS_FILE, result)
    drawing.finish(lambda folder: task.plots(folder, result, kept, data.class_names))
    return result


def output_folder(opened, cfg, split, data_dir, tta=False):
    """Where an evaluation's metrics go: the run itself for its own split, else ``evaluations/<what>[-tta]``."""
    own = data_dir is None and cfg is not None and split == cfg.evaluate.split and not tta
    if own or (opened.run is None and data_dir is None):
        return opened.folder
    what = f"folder-{Path(data_dir).resolve().name}" if data_dir else split
    return opened.folder / "evaluations" / (f"{what}-tta" if tta else what)


def calibrate(task, opened, model, data):
    """What the run's task chose on its validation split (multi-label: per-class thresholds), choosing and
    saving it now if the run has none yet; None for a task that chooses nothing or a model without a run."""
    calibration = task.calibrate(opened.folder)
    if calibration is None and task.calibrated and opened.run is not None and data.val is not None:
        outputs, targets, _ = predict_split(model, data, "val")
        calibration = task.calibrate(opened.folder, outputs, targets)
    return calibration
