"""The architecture registry: ``@register_model`` on one side, `build_model` on the other.

The family modules register themselves when imported; `get_model`, `list_models`
and `build_model` import them all first (as timm's ``create_model`` does).
"""

import importlib

import keras

from cnnlab.errors import ConfigError
from cnnlab.registry import Entry, Registry

MODELS = Registry("model.architecture")
FAMILIES = ("mlp", "deep_cnn", "alexnet", "vgg", "inception", "resnet", "applications")

# ModelConfig fields a builder may or may not honour; each builder lists the ones it does.
OPTIONS = ("activation", "kernel_initializer", "batch_norm", "dropout", "kernel_regularizer",
           "head", "local_response_norm", "aux_logits", "weights")


def register_model(name, *, family, paper, options=(), **meta):
    """Register an architecture builder ``fn(x, classes, cfg) -> outputs``.

    Args:
        name: the ``model.architecture`` value.
        family: the family shown by ``cnnlab models`` (``vgg``, ``resnet``...).
        paper: the reference, shown by ``cnnlab models``.
        options: the `OPTIONS` this builder honours; setting another is an error.
    """
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"{name}: unknown options {sorted(unknown)}")
    return MODELS.register(name, family=family, paper=paper, options=tuple(options), **meta)


def _registered():
    for family in FAMILIES:
        importlib.import_module(f"cnnlab.models.{family}")
    return MODELS


def list_models():
    """Names of every registered architecture."""
    return _registered().names()


def get_model(name):
    """The registry entry of `name` (raises `ConfigError` for an unknown name)."""
    return _registered().get(name)


def build_model(cfg, input_shape, classes, *, preprocessing=None):
    """Build a Functional model for `input_shape` images and `classes` classes.

    Args:
        cfg: a `ModelConfig`.
        input_shape: ``(H, W, C)`` of the images fed to the model (raw pixels).
        classes: the number of output classes.
        preprocessing: layers applied to the raw pixels first (scaling), or None.

    Returns:
        A `keras.Model` named after the architecture, with a softmax output
        layer named ``predictions``.
    """
    entry = _with_weights(get_model(cfg.architecture), cfg)
    _check_options(cfg, entry)
    _check_names(cfg)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for layer in preprocessing or ():
        x = layer(x)
    outputs = entry.fn(x, classes, cfg)
    return keras.Model(inputs, outputs, name=cfg.architecture)


def _with_weights(entry, cfg):
    """A zoo model asked for pretrained weights is built as its keras.applications twin."""
    if not cfg.weights or "module" in entry.meta:
        return entry
    from cnnlab.models.applications import APP_OPTIONS, TWINS

    if entry.name not in TWINS:
        twins = ", ".join(sorted(TWINS)) or "none"
        raise ConfigError(f"`model.weights` is for keras.applications backbones and their zoo twins "
                          f"({twins}); '{entry.name}' has no pretrained weights. To start from a trained "
                          f"cnnlab model use `finetune.base`. Received: {cfg.weights!r}.")
    return Entry(entry.name, TWINS[entry.name], {**entry.meta, "options": APP_OPTIONS,
                                                 "module": TWINS[entry.name].module})


def _check_options(cfg, entry):
    defaults = type(cfg)()
    for option in OPTIONS:
        if option not in entry.meta["options"] and getattr(cfg, option) != getattr(defaults, option):
            honoured = ", ".join(entry.meta["options"]) or "none"
            raise ConfigError(f"`model.{option}` is not an option of '{entry.name}' "
                              f"(it honours: {honoured}). Received: {getattr(cfg, option)!r}.")


def _check_names(cfg):
    for key, getter in (("activation", keras.activations.get), ("kernel_initializer", keras.initializers.get)):
        try:
            getter(getattr(cfg, key))
        except (ValueError, TypeError):
            raise ConfigError(f"`model.{key}` must name a Keras {key.replace('kernel_', '')} "
                              f"(e.g. relu, gelu / he_normal, glorot_uniform). "
                              f"Received: {getattr(cfg, key)!r}.") from None
