"""The architecture registry: ``@register_model`` on one side, `build_model` on the other.

The families register their builders when `cnnlab.models` is imported (its
``__init__`` imports them in a fixed order), so whichever ``cnnlab.models`` module
is imported first, the registry is the same. This module imports no family. What
an architecture is (family, paper, options) is written once, in `cnnlab.catalog`.
"""

import re

import keras

from cnnlab import catalog
from cnnlab.config import model_problem, unknown_architecture
from cnnlab.errors import ConfigError
from cnnlab.models.blocks import OUTPUT_ACTIVATION
from cnnlab.registry import Registry

MODELS = Registry("model.architecture")
PRETRAINED = Registry("model.weights")  # builders that load pretrained weights, by architecture name


def register_model(name, **meta):
    """Register an architecture builder ``fn(x, classes, cfg) -> outputs`` under `name`.

    The entry's metadata is the catalog's (``family``, ``paper``, ``options``) plus `meta`; with
    ``pretrained_body=fn(model, weights)``, ``model.weights`` is loaded into the built model by that function.
    """
    spec = catalog.ARCHITECTURES.get(name)
    if spec is None:
        raise ValueError(f"model.architecture: '{name}' is not in cnnlab.catalog.ARCHITECTURES; add it there first.")
    return MODELS.register(name, family=spec.family, paper=spec.paper, options=spec.options, **meta)


def register_pretrained(name):
    """Register the builder used for `name` when ``model.weights`` is set."""
    return PRETRAINED.register(name)


def list_models():
    """Names of every registered architecture."""
    return MODELS.names()


def get_model(name):
    """The registry entry of `name` (raises `ConfigError` naming the closest names if unknown)."""
    if name not in MODELS:
        raise ConfigError(unknown_architecture(name))
    return MODELS.get(name)


def build_model(cfg, input_shape, classes, *, preprocessing=None, output_activation="softmax"):
    """Build a Functional model for `input_shape` images and `classes` classes.

    Args:
        cfg: a `ModelConfig`.
        input_shape: ``(H, W, C)`` of the images fed to the model (raw pixels).
        classes: the number of output classes.
        preprocessing: layers applied to the raw pixels first (scaling), or None.
        output_activation: the output layer's activation: the task's (`cnnlab.tasks.base.Task.activation`).

    Returns:
        A `keras.Model` named after the architecture, with an output layer named ``predictions``.
    """
    entry = get_model(cfg.architecture)
    check_model_config(cfg)
    loads_body = "pretrained_body" in entry.meta  # a network over a backbone's body loads its weights after
    builder = PRETRAINED.get(cfg.architecture).fn if cfg.weights and not loads_body else entry.fn
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for layer in preprocessing or ():
        x = layer(x)
    activation = OUTPUT_ACTIVATION.set(output_activation)
    try:
        outputs = builder(x, classes, cfg)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"`model.architecture` {cfg.architecture!r} cannot take images of "
                          f"{tuple(input_shape)}: {_first_line(exc)}. Use a larger data.image_size "
                          "or another architecture.") from None
    finally:
        OUTPUT_ACTIVATION.reset(activation)
    model = keras.Model(inputs, outputs, name=cfg.architecture)
    if cfg.weights and loads_body:
        entry.meta["pretrained_body"](model, cfg.weights)
    return model


def _first_line(exc):
    """The informative line of a multi-line Keras message, without TensorFlow's node details."""
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and not line.strip().startswith("Exception encountered")]
    line = re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else type(exc).__name__)  # Keras's bold
    return line.split(" for '{{node")[0].rstrip(".")[:200]


def check_model_config(cfg):
    """The model section's rules, checked when the config loads and again here (Python callers),
    then the names as Keras itself resolves them."""
    problem = model_problem(cfg)
    if problem:
        raise ConfigError(problem)
    # Resolving the initializer draws a default seed, as it always has: keep it, so a seed gives the same weights.
    for key, getter in (("activation", keras.activations.get), ("kernel_initializer", keras.initializers.get)):
        try:
            getter(getattr(cfg, key))
        except (ValueError, TypeError):
            raise ConfigError(f"`model.{key}` must name a Keras {key.replace('kernel_', '')}. "
                              f"Received: {getattr(cfg, key)!r}.") from None
