"""`ensemble`: several runs' class probabilities averaged on one split, and saved as one Keras model.

Members must agree on what they predict and on what they are tested: the same class
names in the same order, the same input shape, and the same images and labels in the
split. The split is compared by a fingerprint of what each member's config loads
(labels, pixels or image files), not by the config's text. ``data.split_seed`` draws the
splits a dataset has not of its own, so runs of several seeds test on the same images;
runs from before it (their seed drew the splits) test on their seed's.

``--save DIR`` makes DIR a run-like folder (`save_ensemble`), so every command that
opens a run (`evaluate`, `predict`, `export`, `report`) opens it as it opens a run;
``--save`` alone makes it a new run of the runs layout, ``runs/ensemble/<timestamp>/``,
which `cnnlab runs` lists and which is the latest run until a newer one is made.
"""

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import files, rundir
from cnnlab.errors import CnnlabError
from cnnlab.models.heads import main_output
from cnnlab.rundir import Target, open_target
from cnnlab.tasks import task_of

ENSEMBLE_NAME = "ensemble"


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: where it is, its config and class names, its loaded model."""

    target: Target
    cfg: object  # ExperimentConfig
    class_names: list
    model: object  # keras.Model

    @property
    def where(self):
        return str(self.target.run)


def ensemble(runs, *, weights=None, split="test", save=None, root="runs", unsafe=False, echo=print):
    """Average the class probabilities of `runs` (weighted by `weights`) on `split` and score them.

    Args:
        runs: two or more run folders (anything `open_target` accepts that is inside a run).
        weights: one non-negative number per run, or None for equal weights; normalised to sum 1.
        split: ``test``, ``val`` or ``train``.
        save: a new folder to save the ensemble into as one model (see `save_ensemble`); True for a new run
            folder ``<root>/ensemble/<timestamp>/``; None not to save.
        root: where the runs are when a run is not a path, and where ``save=True`` saves.
        unsafe: load models with Lambda layers (Keras ``safe_mode=False``).
        echo: a print-like function for the report.

    Returns:
        The ensemble's `scores` dict, with ``split``, ``weights`` and ``members`` (each
        member's run, weight, accuracy and loss).
    """
    from cnnlab.inference.inputs import check_model_fits
    from cnnlab.inference.predictions import predict_split

    if len(runs) < 2:
        raise CnnlabError(f"an ensemble needs at least 2 runs. Received: {len(runs)}. Name two or more run folders.")
    weights = normalized_weights(weights, len(runs))
    if save is True:
        files.check_writable(Path(root) / ENSEMBLE_NAME, "the runs folder", "Give --save a new folder you can "
                             "write to.")
    elif save is not None:
        check_new_folder(save)
    members = [open_member(run, root, unsafe) for run in runs]
    check_members_agree(members)
    bundle = common_split(members, split)
    task, cfg = task_of(members[0].cfg), members[0].cfg
    probabilities = []
    for member in members:
        check_model_fits(member.model, bundle, member.where)
        probs, targets, _ = predict_split(member.model, bundle, split)
        probabilities.append(probs)
    validation = validation_outputs(task, members, bundle, weights)
    calibrations = [task.calibrate(member.target.folder, *(validation[i] if validation else ()))
                    for i, member in enumerate(members)]  # each member's saved choice (made now if it has none)
    calibration = task.calibrate(None, *validation[-1]) if validation else None  # the average's own
    result = task.scores(np.tensordot(weights, np.stack(probabilities), axes=1), targets, bundle.class_names, cfg,
                         calibration)
    result.update(split=split, weights=list(weights), members=[
        {"run": member.where, "weight": weight,
         **task.headline(task.scores(probs, targets, bundle.class_names, cfg, member_calibration))}
        for member, weight, probs, member_calibration in zip(members, weights, probabilities, calibrations)])
    echo(format_ensemble(result, task.headline(result)))
    if save is not None:
        folder = rundir.new_run_dir(root, ENSEMBLE_NAME) if save is True else save
        result["saved"] = str(save_ensemble(members, weights, folder, result))
        if validation:
            task.calibrate(folder, *validation[-1])  # the ensemble's own choice, saved as a run's
        echo(f"Saved: {result['saved']} (a run folder: cnnlab evaluate/predict/export accept it)")
    return result


def validation_outputs(task, members, bundle, weights):
    """For a task that chooses something on the validation split (`cnnlab.tasks.base.Task.calibrated`,
    multi-label's thresholds): ``[(outputs, targets)]`` of each member on it, then of the weighted average;
    None for other tasks or data without a validation split (each member's saved choice then, or none)."""
    from cnnlab.inference.predictions import predict_split

    if not task.calibrated or bundle.val is None:
        return None
    pairs = [predict_split(member.model, bundle, "val")[:2] for member in members]
    average = np.tensordot(weights, np.stack([outputs for outputs, _ in pairs]), axes=1)
    return pairs + [(average, pairs[0][1])]


def normalized_weights(weights, count):
    """`weights` (numbers, or text such as ``"2,1"``) as `count` floats summing to 1; None: equal weights."""
    if weights is None:
        return [1.0 / count] * count
    if isinstance(weights, str):
        try:
            weights = [float(w) for w in weights.split(",")]
        except ValueError:
            raise CnnlabError(f"--weights must be {count} comma-separated numbers, one per run, such as "
                              f"{','.join(['1'] * count)}. Received: {weights!r}.") from None
    weights = [float(w) for w in weights]
    if len(weights) != count or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise CnnlabError(f"--weights must be {count} non-negative numbers (one per run, in the runs' order) "
                          f"that do not all equal 0. Received: {','.join(f'{w:g}' for w in weights)}.")
    return [w / sum(weights) for w in weights]


def check_new_folder(folder):
    """``--save`` never overwrites: the folder must be new or empty."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CnnlabError(f"--save {str(folder)!r} already exists and is not an empty folder: name a new folder "
                          "(an ensemble never overwrites a run or a file).")
    files.check_writable(folder, "--save", "Name a new folder where you can write.")


def open_member(run, root, unsafe):
    """A `Member` from a run argument; a bare .keras file is refused (its test data is unknown)."""
    target = open_target(run, root)
    if target.run is None:
        raise CnnlabError(f"{str(run)!r} is a .keras file outside a run folder: an ensemble member must be a run, "
                          "whose config says which data it is tested on.")
    class_names = target.class_names()
    if not class_names:
        raise CnnlabError(f"the run {target.run} has no {rundir.CLASSES_FILE}: it did not finish its first "
                          "epoch; train it, or leave it out of the ensemble.")
    return Member(target, target.config(), list(class_names), target.load_model(unsafe))


def check_members_agree(members):
    """Every member predicts the same classes in the same order from images of the same shape."""
    first = members[0]
    for member in members[1:]:
        if member.class_names != first.class_names:
            raise CnnlabError(f"the runs {first.where} and {member.where} have different class names or order "
                              f"({_preview(first.class_names)} vs {_preview(member.class_names)}): an ensemble "
                              "averages probabilities class by class, so its members must share their classes.")
        shapes = [tuple(m.model.input_shape[1:]) for m in (first, member)]
        if shapes[0] != shapes[1]:
            raise CnnlabError(f"the runs {first.where} and {member.where} take images of different shapes "
                              f"({shapes[0]} vs {shapes[1]}): train them with the same data.image_size and "
                              "data.color_mode.")


def _preview(names, limit=5):
    shown = ", ".join(map(str, names[:limit]))
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)} classes)"


def common_split(members, split):
    """The members' data (`DataBundle`) after checking that all of them load the same `split`.

    Members whose data are drawn alike (`cnnlab.rundir.data_key`) share one load.
    """
    from cnnlab.data.pipeline import load_data

    bundles, prints = {}, []
    for member in members:
        key = rundir.data_key(member.cfg)
        if key not in bundles:
            bundles[key] = load_data(member.cfg)
        prints.append(fingerprint(bundles[key].split(split), bundles[key].input_shape))
    first = members[0]
    for member, mark in zip(members[1:], prints[1:]):
        if mark != prints[0]:
            raise CnnlabError(f"the runs {first.where} and {member.where} have different {split} data (the images "
                              f"or labels of their {split} split differ): an ensemble scores its members on one "
                              f"split. A dataset without its own test split (data.test_split) and every "
                              f"validation split are drawn by data.split_seed (by the seed in runs from before "
                              f"it): ensemble runs of one data.split_seed, or of data with its own test split "
                              f"(data.test_path, mnist, cifar10, ...).")
    return bundles[rundir.data_key(first.cfg)]


def fingerprint(examples, input_shape):
    """A SHA-256 of a split's labels and images (pixels in memory, or the bytes of the image files)."""
    digest = hashlib.sha256(repr(tuple(input_shape)).encode())
    digest.update(np.ascontiguousarray(examples.labels, dtype=np.int64).tobytes())
    if examples.images is not None:
        digest.update(repr(examples.images.shape).encode())
        digest.update(np.ascontiguousarray(examples.images).tobytes())
    else:
        for path in examples.paths:
            digest.update(Path(str(path)).read_bytes())
    return digest.hexdigest()


def figures(headline):
    """``accuracy 0.9912  loss 0.0310``: the numbers of a task's headline (`cnnlab.tasks.base.Task.headline`)."""
    return "  ".join(f"{name} {value:.4f}" for name, value in headline.items()
                     if isinstance(value, (int, float)) and name not in ("run", "weight"))


def format_ensemble(result, headline):
    """One line per member and one for the ensemble (its `headline`): weight and the task's figures."""
    width = max(len(m["run"]) for m in result["members"]) + 2
    lines = [f"{result['split']}: {result['images']} images, {len(result['members'])} members"]
    for i, member in enumerate(result["members"]):
        lines.append(f"  member_{i}  {member['run']:<{width}}weight {member['weight']:.3f}  {figures(member)}")
    lines.append(f"  ensemble  {'':<{width}}{'':12}  {figures(headline)}")
    return "\n".join(lines)


def summary_line(result):
    """The ensemble's result in one line (``--quiet``)."""
    headline = {k: result[k] for k in result["members"][0] if k in result}
    return (f"{result['split']}: {result['images']} images, {len(result['members'])} members  "
            f"ensemble {figures(headline)}")


# --------------------------------------------------------------------------- one model, saved as a run


def combine(models, weights, input_shape):
    """One Functional model: each member wrapped as ``member_i``, their main outputs averaged.

    Each member becomes a nested model named ``member_i`` (two runs of one
    architecture would otherwise bring two layers of one name); a member with
    auxiliary outputs (GoogLeNet) contributes its main classifier. Equal weights
    join with ``keras.layers.Average``; others scale each member's probabilities with
    a ``Rescaling`` layer and add them: built-in layers only, so the model loads in
    safe mode. The joining layers compute in float32 (they cast a mixed-precision
    member's output).
    """
    import keras

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    outputs = []
    for i, model in enumerate(models):
        member = keras.Model(model.inputs, main_output(model), name=f"member_{i}")
        outputs.append(member(inputs))
    if len(set(weights)) == 1:
        joined = keras.layers.Average(dtype="float32", name="predictions")(outputs)
    else:
        scaled = [keras.layers.Rescaling(w, dtype="float32", name=f"member_{i}_weight")(out)
                  for i, (w, out) in enumerate(zip(weights, outputs))]
        joined = keras.layers.Add(dtype="float32", name="predictions")(scaled)
    return keras.Model(inputs, joined, name=ENSEMBLE_NAME)


def save_ensemble(members, weights, folder, result):
    """Write the ensemble as a run folder and return it.

    DIR holds ``model.keras`` (`combine`), ``class_names.json``, ``metrics.json`` (the
    ensemble's scores on its split), ``run.json`` (``kind: ensemble``, the members and
    their weights) and, written last so a half-written folder is never taken for a
    run, ``config.yaml``: the first member's config named ``ensemble``, its
    ``evaluate.split`` the ensemble's split, its provenance listing the members.
    """
    import yaml

    folder = Path(folder)
    check_new_folder(folder)
    model = combine([m.model for m in members], weights, members[0].model.input_shape[1:])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot create --save {str(folder)!r}: {exc.strerror or exc}.") from None
    files.save_model(model, folder / rundir.MODEL_FILE)
    files.write_json(folder / rundir.CLASSES_FILE, members[0].class_names)
    composition = {"members": [str(m.target.run.resolve()) for m in members], "weights": list(weights),
                   "split": result["split"]}
    files.write_json(folder / rundir.METRICS_FILE, {**result, "model": str(folder / rundir.MODEL_FILE)})
    rundir.update_run_info(folder, kind=ENSEMBLE_NAME, status="completed", **composition)
    config = members[0].cfg.to_dict()
    config.update(name=ENSEMBLE_NAME, evaluate={**config["evaluate"], "split": result["split"]},
                  provenance={**rundir.provenance(), ENSEMBLE_NAME: composition})
    files.write_text(folder / rundir.CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    return folder
