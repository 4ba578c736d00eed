"""`finetune`: two-phase transfer learning from a run, a .keras file or a keras.applications backbone.

Phase 1 freezes the whole base and trains the (new) head at ``training.learning_rate``
for ``finetune.head_epochs``. Phase 2 makes every layer after the first
``finetune.freeze`` layers (or after the named layer) trainable, keeps
BatchNormalization frozen (in Keras 3 a frozen BatchNormalization layer runs in
inference mode) unless ``finetune.train_batch_norm``, recompiles at the low
``finetune.learning_rate`` (under ``finetune.lr_schedule`` if set, e.g. one cycle; with
``finetune.lr_mult`` the earlier layers learn more slowly: discriminative rates) and
trains on, its epochs counted on from phase 1.
Both phases write one history.csv (with a ``phase`` column) and one best model.

Nothing here imports Keras at import time (`cnnlab.models` imports Keras): the run's
backend (``runtime.backend``) is chosen first.
"""

import difflib
from pathlib import Path

from cnnlab import files, rundir, tracking
from cnnlab.catalog import APPLICATIONS, is_backbone
from cnnlab.config import apply_overrides, build_config, load_config, option_overrides, read_yaml
from cnnlab.errors import ConfigError, did_you_mean
from cnnlab.rundir import Target, open_target

# --------------------------------------------------------------------------- what to fine-tune

FINETUNE_SUFFIX = "-finetune"


def resolve_config(target, overrides=(), root="runs", echo=None, **updates):
    """The fine-tuning config: an experiment file as written, or a run's config with the run as base.

    Either way the run is named ``<name>-finetune`` (`finetune_name`), beside its base's runs.

    An interrupted fine-tune stands for its base, so the same command resumes it
    rather than fine-tuning the fine-tune. `echo` (print-like, or None) is told which run is the base.
    """
    if target is not None and Path(target).is_file() and str(target).endswith((".yaml", ".yml")):
        cfg = load_config(target, overrides, check_paths=True, **updates)
        return cfg.model_copy(update={"name": finetune_name(cfg.name)})
    opened = open_target(target, root)
    run = opened.run
    if run is not None and rundir.run_info(run).get("kind") == "ensemble":
        raise ConfigError(f"{run} is an ensemble (cnnlab ensemble --save): fine-tune one of its members instead.")
    if run is None:
        raise ConfigError(f"`cnnlab finetune` takes an experiment file or a run folder; to start from the "
                          f".keras file {target!r}, set finetune.base to it in an experiment file.")
    if rundir.run_info(run).get("kind") == "finetune" and rundir.status(run) == "interrupted":
        base = read_yaml(run / rundir.CONFIG_FILE).get("finetune", {}).get("base")
        if base and Path(base).is_dir():
            run = rundir.resolve_run(base)
            opened = Target(run, run / rundir.MODEL_FILE, f"the base of the interrupted fine-tune {opened.run}")
    if echo is not None:
        echo(opened.describe("Base run"))
    data = rundir.read_config(run)
    data.pop("provenance", None)
    data["name"] = finetune_name(data.get("name", run.parent.name))
    data.setdefault("finetune", {})["base"] = str(run.resolve())
    overrides = [*overrides, *option_overrides(updates)]  # a bad --freeze is the option's error, not the run's
    return build_config(apply_overrides(data, overrides), str(run / rundir.CONFIG_FILE), overrides)


def finetune_name(name):
    """A fine-tune's run name: ``<name>-finetune``; an experiment named so already (a fine-tuning recipe such
    as ``mnist-5to9-finetune``) keeps its name."""
    return name if name.endswith(FINETUNE_SUFFIX) else f"{name}{FINETUNE_SUFFIX}"


def backbone_scaling(cfg):
    """A keras.applications base gets its own preprocessing (``scaling: backbone``) unless the
    experiment chose a scaling itself."""
    arch = cfg.finetune.base if cfg.finetune.base is not None else cfg.model.architecture
    pretrained = cfg.finetune.base is not None or cfg.model.weights
    if "scaling" in cfg.data.model_fields_set or not pretrained or not is_backbone(arch):
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"scaling": "backbone"})})


def base_model(cfg, data, unsafe=False):
    """The model to fine-tune, its head fitted to `data`; and a description of where it came from."""
    from cnnlab.models.assemble import build

    base = cfg.finetune.base
    if base is None:
        if not cfg.model.weights:
            raise ConfigError("fine-tuning needs something pretrained: set finetune.base (a run folder, a .keras "
                              "file or a keras.applications name) or model.weights (imagenet or a weights file).")
        return build(cfg, data), f"{cfg.model.architecture} with weights {cfg.model.weights}"
    path = Path(base)
    if path.exists():
        return _loaded_base(path, data, unsafe), str(path)
    if not is_backbone(base):
        raise ConfigError(f"`finetune.base` must be a run folder, a .keras file or a keras.applications name "
                          f"(e.g. mobilenet_v2, resnet50). Received: {base!r} (no such file or folder)."
                          f"{did_you_mean(base, APPLICATIONS)}")
    model_cfg = cfg.model.model_copy(update={"architecture": base, "weights": cfg.model.weights or "imagenet"})
    return build(cfg.model_copy(update={"model": model_cfg}), data), f"{base} with weights {model_cfg.weights}"


def _loaded_base(path, data, unsafe):
    """Load a run's (or a file's) model; replace its head if the classes differ."""
    from cnnlab.inference.inputs import check_input_shape
    from cnnlab.models.heads import without_auxiliary

    target = open_target(path)
    model = target.load_model(unsafe)
    model = without_auxiliary(model)  # GoogLeNet's auxiliary heads are not fine-tuned
    check_input_shape(model, data, target.run or path)
    names = target.class_names()
    if model.output_shape[-1] != data.classes or (names is not None and list(names) != list(data.class_names)):
        model = replace_head(model, data.classes)
    return model


def replace_head(model, classes):
    """A new output layer for `classes` (a Dense, or U-Net's 1x1 convolution), re-applying the weightless
    layers after it.

    The rest of the head (e.g. the dense layers of VGG or the book's CNN) keeps its
    weights as a starting point; phase 1 trains it.
    """
    import keras

    from cnnlab.models.heads import last_weighted

    start = last_weighted(model)
    old = model.layers[start]
    if isinstance(old, keras.layers.Dense):
        new = keras.layers.Dense(classes, activation=old.activation, name=old.name, dtype=old.dtype_policy.name,
                                 kernel_initializer="glorot_uniform")
    elif type(old) is keras.layers.Conv2D and old.kernel_size == (1, 1):  # U-Net's scores per pixel
        new = keras.layers.Conv2D(classes, 1, name=old.name, dtype=old.dtype_policy.name)
    else:
        raise ConfigError(f"cannot give {model.name} a new head for {classes} classes: its last layer with "
                          f"weights, {old.name}, is not a Dense classifier or a 1x1 convolution scoring each "
                          "pixel (an FCN's class scores run through its skips and upsamplings). Fine-tune on "
                          "data with the base's classes, or train this architecture from scratch.")
    x = new(old.input)
    for layer in model.layers[start + 1:]:
        x = layer.__class__.from_config(layer.get_config())(x)
    return keras.Model(model.inputs, x, name=model.name)


# --------------------------------------------------------------------------- freezing


def freeze_index(model, freeze, echo=print):
    """The index of the first layer phase 2 trains: after `freeze` layers, or after the named layer.

    A number at or beyond the base's layers freezes the whole base (phase 2 then
    trains the head at the low rate) and says so.
    """
    from cnnlab.models.heads import head_start

    names = [layer.name for layer in model.layers]
    head = head_start(model)
    if isinstance(freeze, int):
        if freeze >= head:
            echo(f"Note: --freeze {freeze} covers the whole base ({head} layers before the head): phase 2 "
                 "trains the head only, at finetune.learning_rate (`cnnlab check --layers` lists the layers).")
        return min(freeze, head)
    if freeze.lstrip("-").isdigit():
        raise ConfigError(f"`finetune.freeze` must be a number of layers (0 or more) or a layer name. "
                          f"Received: {freeze!r}.")
    if freeze not in names:
        near = difflib.get_close_matches(freeze, names, n=5, cutoff=0.4)
        raise ConfigError(f"`finetune.freeze`: the model has no layer named {freeze!r}."
                          + (f" Nearest: {', '.join(near)}." if near else " `cnnlab check --layers` lists them."))
    return names.index(freeze) + 1


def freeze_base(model):
    """Phase 1: everything but the head frozen."""
    from cnnlab.models.heads import head_start

    start = head_start(model)
    for index, layer in enumerate(model.layers):
        layer.trainable = index >= start


def unfreeze_after(model, first, train_batch_norm=False):
    """Phase 2: layers from index `first` on trainable (BatchNormalization only if asked); the rest frozen."""
    import keras

    from cnnlab.models.heads import head_start

    start = head_start(model)
    for index, layer in enumerate(model.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start or (index >= first and (train_batch_norm or not is_bn))


def rate_multipliers(model, first, lr_mult):
    """Discriminative rates for phase 2: ``{variable path: factor}``; None when ``lr_mult`` is 1 or no base
    layer trains.

    The trainable layers from index `first` up to the head learn at rates rising
    geometrically, layer by layer, from ``1 / lr_mult`` of ``finetune.learning_rate``
    to the full rate, which the head gets (fastai's ``slice(lr / lr_mult, lr)``, by layer
    rather than by layer group).
    """
    from cnnlab.models.heads import head_start

    start = head_start(model)
    layers = [layer for layer in model.layers[first:start] if layer.trainable_weights]
    if lr_mult == 1.0 or not layers:
        return None
    factors = {}
    for position, layer in enumerate(layers):
        factor = lr_mult ** (position / len(layers) - 1)  # 1 / lr_mult for the first, towards 1 at the head
        factors.update({weight.path: factor for weight in layer.trainable_weights})
    return factors


def parameter_counts(model):
    """``(trainable, frozen)`` parameter counts."""
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return trainable, model.count_params() - trainable


# --------------------------------------------------------------------------- the two phases


def finetune(target=None, *, overrides=(), freeze=None, epochs=None, head_epochs=None, learning_rate=None,
             root="runs", output_dir=None, fresh=False, unsafe=False, echo=print, verbose="auto"):
    """Fine-tune in two phases into a new run folder that records its base; return the run.

    Re-running the same command after an interruption resumes the run, in the phase it was in.
    """
    from cnnlab.data.pipeline import load_data
    from cnnlab.rundir import check_run_writable, start_run
    from cnnlab.session import device, setup

    cfg = backbone_scaling(resolve_config(target, overrides, root, echo, **{
        "finetune.freeze": freeze, "finetune.epochs": epochs, "finetune.head_epochs": head_epochs,
        "finetune.learning_rate": learning_rate}))
    check_run_writable(cfg, output_dir, fresh)
    setup(cfg, backend=True)
    from cnnlab.training.fit import keep_final_model, preflight  # Keras, once the backend is chosen

    data = load_data(cfg)
    data.describe(echo)
    model, origin = base_model(cfg, data, unsafe)
    first = freeze_index(model, cfg.finetune.freeze, echo)  # a bad --freeze fails before any training
    preflight(cfg, data)
    run = start_run(cfg, output_dir, fresh, echo)
    track = tracking.tracker(cfg, run, echo)
    with tracking.lifetime(track), rundir.running(run, kind="finetune", base=origin, device=device()):
        files.write_json(run / rundir.CLASSES_FILE, data.class_names)
        echo(f"Run: {run}\nBase: {origin}")
        _phases(model, data, cfg, run, first, data.steps_per_epoch(cfg.training.steps_per_epoch), echo, verbose,
                track)
        keep_final_model(run, model, cfg)
    rundir.discard(run)
    return run


def _phases(model, data, cfg, run, first, steps, echo, verbose, track=None):
    """Phase 1 (base frozen, head trained), then phase 2 (layers from `first` on), each resumable."""
    from cnnlab.training import resume

    ft = cfg.finetune
    state = resume.load(run)
    if state is not None:
        echo(f"Going on after epoch {state['epoch']} (phase {state['phase']})")
    if ft.head_epochs and (state is None or state["phase"] == 1):
        freeze_base(model)
        _report(model, 1, f"base frozen, head trained at {cfg.training.learning_rate}", echo)
        state = _fit_phase(model, data, cfg, run, steps, phase=1, state=state, verbose=verbose, track=track)
    if ft.epochs:
        unfreeze_after(model, first, ft.train_batch_norm)
        multipliers = rate_multipliers(model, first, ft.lr_mult)
        rate = f"learning rate {ft.learning_rate}" + (f" ({ft.lr_schedule.name})" if ft.lr_schedule else "") + (
            f", the first trainable layer's {ft.lr_mult:g}x lower" if multipliers else "")
        _report(model, 2, f"layers {first}.. trainable, BatchNormalization "
                          f"{'trainable' if ft.train_batch_norm else 'frozen'}, {rate}", echo)
        _fit_phase(model, data, cfg, run, steps, phase=2, state=state, verbose=verbose, multipliers=multipliers,
                   track=track)


def _fit_phase(model, data, cfg, run, steps, *, phase, state, verbose, multipliers=None, track=None):
    from cnnlab.training.fit import compile_model, fit

    ft = cfg.finetune
    start, span = (0, ft.head_epochs) if phase == 1 else (ft.head_epochs, ft.epochs)
    if phase == 1:
        compile_model(model, cfg, data.classes, steps, epochs=span, labels=data.train.labels)
    else:
        compile_model(model, cfg, data.classes, steps, learning_rate=ft.learning_rate, schedule=ft.lr_schedule,
                      epochs=span, multipliers=multipliers, labels=data.train.labels)
        if ft.lr_schedule is not None:  # the schedule sets phase 2's rate: no plateau callback beside it
            cfg = cfg.model_copy(update={"callbacks": cfg.callbacks.model_copy(update={"reduce_lr_on_plateau": None})})
    return fit(model, data, cfg, run, epochs=start + span, initial_epoch=start, phase=phase, state=state,
               steps_per_epoch=cfg.training.steps_per_epoch, verbose=verbose, tracker=track)


def _report(model, phase, what, echo):
    trainable, frozen = parameter_counts(model)
    echo(f"Phase {phase}: {what}; {trainable:,} trainable and {frozen:,} frozen parameters")
