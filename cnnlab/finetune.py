"""`finetune`: two-phase transfer learning from a run, a .keras file or a keras.applications backbone.

Phase 1 freezes the whole base and trains the (new) head at ``training.learning_rate``
for ``finetune.head_epochs``. Phase 2 makes every layer after the first
``finetune.freeze`` layers (or after the named layer) trainable, keeps
BatchNormalization frozen (in Keras 3 a frozen BatchNormalization layer runs in
inference mode) unless ``finetune.train_batch_norm``, recompiles at the low
``finetune.learning_rate`` and trains on, its epochs counted on from phase 1.
Both phases write one history.csv (with a ``phase`` column) and one best model.
"""

import difflib
import os
from pathlib import Path

from cnnlab import artifacts
from cnnlab.config import apply_overrides, build_config, load_config, option_overrides, read_yaml
from cnnlab.errors import ConfigError, did_you_mean

PHASE1_WEIGHTS = "phase1.weights.h5"


# --------------------------------------------------------------------------- what to fine-tune


def resolve_config(target, overrides=(), root="runs", **updates):
    """The fine-tuning config: an experiment file as written, or a run's config with the run as base."""
    if target is not None and Path(target).is_file() and str(target).endswith((".yaml", ".yml")):
        return load_config(target, overrides, **updates)
    run = artifacts.resolve_run(target, root)
    data = read_yaml(run / artifacts.CONFIG_FILE)
    data.pop("provenance", None)
    data["name"] = f"{data.get('name', run.parent.name)}-finetune"
    data.setdefault("finetune", {})["base"] = str(run.resolve())
    data = apply_overrides(data, [*overrides, *option_overrides(updates)])
    return build_config(data, str(run / artifacts.CONFIG_FILE))


def backbone_scaling(cfg):
    """A keras.applications base gets its own preprocessing (``scaling: backbone``) unless the
    experiment chose a scaling itself."""
    arch = cfg.finetune.base if cfg.finetune.base is not None else cfg.model.architecture
    pretrained = cfg.finetune.base is not None or cfg.model.weights
    if "scaling" in cfg.data.model_fields_set or not pretrained or not _is_backbone(arch):
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"scaling": "backbone"})})


def base_model(cfg, data):
    """The model to fine-tune, its head fitted to `data`; and a description of where it came from."""
    from cnnlab.experiment import build
    from cnnlab.models.registry import list_models

    base = cfg.finetune.base
    if base is None:
        if not cfg.model.weights:
            raise ConfigError("fine-tuning needs something pretrained: set finetune.base (a run folder, a .keras "
                              "file or a keras.applications name) or model.weights (imagenet or a weights file).")
        return build(cfg, data), f"{cfg.model.architecture} with weights {cfg.model.weights}"
    path = Path(base)
    if path.exists():
        return _loaded_base(path, data), str(path)
    if not _is_backbone(base):
        names = [n for n in list_models() if _is_backbone(n)]
        raise ConfigError(f"`finetune.base` must be a run folder, a .keras file or a keras.applications name "
                          f"(e.g. mobilenet_v2, resnet50). Received: {base!r} (no such file or folder)."
                          f"{did_you_mean(base, names)}")
    model_cfg = cfg.model.model_copy(update={"architecture": base, "weights": cfg.model.weights or "imagenet"})
    return build(cfg.model_copy(update={"model": model_cfg}), data), f"{base} with weights {model_cfg.weights}"


def _is_backbone(name):
    from cnnlab.models.applications import TWINS
    from cnnlab.models.registry import MODELS, list_models

    return name in list_models() and (MODELS.get(name).meta["family"] == "keras.applications" or name in TWINS)


def _loaded_base(path, data):
    """Load a run's (or a file's) model; replace its head if the classes differ."""
    from cnnlab.evaluate import check_input_shape, load_model

    run = artifacts.resolve_run(path) if path.is_dir() else None
    model = load_model(run / artifacts.MODEL_FILE if run else path)
    if len(model.outputs) > 1:  # GoogLeNet's auxiliary heads are not fine-tuned
        import keras

        model = keras.Model(model.inputs, model.outputs[0], name=model.name)
    check_input_shape(model, data, run or path)
    names = artifacts.read_json((run or path.parent) / artifacts.CLASSES_FILE)
    if model.output_shape[-1] != data.classes or (names is not None and list(names) != list(data.class_names)):
        model = replace_head(model, data.classes)
    return model


FEATURES = ("flatten", "avg_pool")  # what the zoo and the backbones name the layer before the classifier


def last_weighted(model):
    """Index of the last layer with weights: the output classifier (later layers have none)."""
    for index in range(len(model.layers) - 1, -1, -1):
        if model.layers[index].weights:
            return index
    raise ConfigError(f"the model {model.name} has no layer with weights to train.")


def head_start(model):
    """Index of the first layer of the head: the classifier after the base's pooled features
    (``flatten`` or ``avg_pool``), or else the output classifier alone."""
    names = [layer.name for layer in model.layers]
    for name in FEATURES:
        if name in names:
            return names.index(name) + 1
    return last_weighted(model)


def replace_head(model, classes):
    """A new output Dense for `classes`, re-applying the weightless layers after it.

    The rest of the head (e.g. the dense layers of VGG or the book's CNN) keeps its
    weights as a starting point; phase 1 trains it.
    """
    import keras

    start = last_weighted(model)
    old = model.layers[start]
    if not isinstance(old, keras.layers.Dense):
        raise ConfigError(f"cannot give {model.name} a new head: its last layer with weights, {old.name}, "
                          "is not a Dense classifier.")
    x = keras.layers.Dense(classes, activation=old.activation, name=old.name, dtype=old.dtype_policy.name,
                           kernel_initializer="glorot_uniform")(old.input)
    for layer in model.layers[start + 1:]:
        x = layer.__class__.from_config(layer.get_config())(x)
    return keras.Model(model.inputs, x, name=model.name)


# --------------------------------------------------------------------------- freezing


def freeze_index(model, freeze):
    """The index of the first layer phase 2 trains: after `freeze` layers, or after the named layer."""
    names = [layer.name for layer in model.layers]
    if isinstance(freeze, int):
        if freeze >= len(names):
            raise ConfigError(f"`finetune.freeze` {freeze} is beyond the model's {len(names)} layers: give 0 to "
                              f"{len(names) - 1}, or a layer name (`cnnlab check` lists them).")
        return freeze
    if freeze not in names:
        near = difflib.get_close_matches(freeze, names, n=5, cutoff=0.4)
        raise ConfigError(f"`finetune.freeze`: the model has no layer named {freeze!r}."
                          + (f" Nearest: {', '.join(near)}." if near else " `cnnlab check` lists the layers."))
    return names.index(freeze) + 1


def freeze_base(model):
    """Phase 1: everything but the head frozen."""
    start = head_start(model)
    for index, layer in enumerate(model.layers):
        layer.trainable = index >= start


def unfreeze_after(model, first, train_batch_norm=False):
    """Phase 2: layers from index `first` on trainable (BatchNormalization only if asked); the rest frozen."""
    import keras

    start = head_start(model)
    for index, layer in enumerate(model.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start or (index >= first and (train_batch_norm or not is_bn))


def parameter_counts(model):
    """``(trainable, frozen)`` parameter counts."""
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return trainable, model.count_params() - trainable


# --------------------------------------------------------------------------- the two phases


def finetune(target=None, *, overrides=(), freeze=None, epochs=None, head_epochs=None, learning_rate=None,
             root="runs", output_dir=None, fresh=False, echo=print, verbose="auto"):
    """Fine-tune in two phases into a new run folder that records its base; return the run."""
    from cnnlab.data.pipeline import load_data
    from cnnlab.experiment import describe, finish, running, setup, start_run, steps_per_epoch

    cfg = backbone_scaling(resolve_config(target, overrides, root, **{
        "finetune.freeze": freeze, "finetune.epochs": epochs, "finetune.head_epochs": head_epochs,
        "finetune.learning_rate": learning_rate}))
    setup(cfg)
    data = load_data(cfg)
    describe(data, echo)
    model, origin = base_model(cfg, data)
    first = freeze_index(model, cfg.finetune.freeze)  # a bad --freeze fails before any training
    run = start_run(cfg, Path(output_dir or cfg.output_dir), fresh, echo)
    artifacts.write_json(run / artifacts.CLASSES_FILE, data.class_names)
    artifacts.update_run_info(run, status="running", pid=os.getpid(), kind="finetune", base=origin)
    echo(f"Run: {run}\nBase: {origin}")
    ft, steps = cfg.finetune, steps_per_epoch(cfg, data)
    with running(run):
        if ft.head_epochs:
            _phase1(model, data, cfg, run, steps, echo, verbose)
        if ft.epochs:
            unfreeze_after(model, first, ft.train_batch_norm)
            _report(model, 2, f"layers {first}.. trainable, BatchNormalization "
                              f"{'trainable' if ft.train_batch_norm else 'frozen'}, learning rate {ft.learning_rate}",
                    echo)
            _fit_phase(model, data, cfg, run, steps, phase=2, start=ft.head_epochs,
                       learning_rate=ft.learning_rate, verbose=verbose)
        finish(run, model, cfg)
    return run


def _phase1(model, data, cfg, run, steps, echo, verbose):
    path = Path(run) / PHASE1_WEIGHTS
    freeze_base(model)
    _report(model, 1, f"base frozen, head trained at {cfg.training.learning_rate}", echo)
    if artifacts.run_info(run).get("phase_done", 0) >= 1 and path.is_file():
        model.load_weights(path)  # a resumed run: phase 1 finished before the interruption
        echo("Phase 1 already done: resuming phase 2")
        return
    _fit_phase(model, data, cfg, run, steps, phase=1, start=0, learning_rate=None, verbose=verbose)
    partial = path.with_name(".partial." + path.name)
    model.save_weights(partial)
    os.replace(partial, path)
    artifacts.update_run_info(run, phase_done=1)


def _fit_phase(model, data, cfg, run, steps, *, phase, start, learning_rate, verbose):
    from cnnlab.training.fit import compile_model, fit

    span = cfg.finetune.head_epochs if phase == 1 else cfg.finetune.epochs
    compile_model(model, cfg, data.classes, steps, learning_rate=learning_rate, epochs=span)
    fit(model, data, cfg, run, epochs=start + span, initial_epoch=start, phase=phase,
        steps_per_epoch=cfg.training.steps_per_epoch, verbose=verbose)


def _report(model, phase, what, echo):
    trainable, frozen = parameter_counts(model)
    echo(f"Phase {phase}: {what}; {trainable:,} trainable and {frozen:,} frozen parameters")
