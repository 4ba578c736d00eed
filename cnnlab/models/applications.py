"""Every ``keras.applications`` backbone, registered under a snake_case name.

The names (``mobilenet_v2``, ``resnet50v2``, ``efficientnet_b0``, ``convnext_tiny``...)
are listed in `cnnlab.catalog.APPLICATIONS`; a test compares that list with what
`discover` finds in the installed Keras, so an upgrade that adds a backbone is noticed.
Each gets a new head for the data's classes: global average pooling, dropout, softmax. ``weights`` is
``imagenet`` (Keras's own downloader and cache) or a local weights file.
A backbone whose twin is in the zoo (``vgg16``, ``resnet50``...) is reached
through the zoo name with ``weights: imagenet``.
"""

import inspect
import os

import keras
from keras import layers

from cnnlab.keras_private import application_module
from cnnlab import catalog
from cnnlab.errors import ConfigError
from cnnlab.models.blocks import pool_features, predictions
from cnnlab.models.registry import register_model, register_pretrained

TWINS = {}  # zoo name (vgg16, resnet50...) -> its keras.applications builder, used with model.weights


@keras.saving.register_keras_serializable(package="cnnlab")
class BackbonePreprocessing(layers.Layer):
    """A backbone's own ``preprocess_input`` as a layer, so saved models take raw pixels."""

    def __init__(self, module, **kwargs):
        super().__init__(**kwargs)
        self.module = module

    def call(self, inputs):
        return preprocess_input(self.module)(keras.ops.cast(inputs, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "module": self.module}


def _name(module, cls):
    low, key = cls.lower(), module.replace("_", "")
    if low == key:
        return module
    if low.startswith(key):
        rest = low[len(key):]
        return module + rest if rest[0].isdigit() else f"{module}_{rest}"
    return low


def discover():
    """Yield ``(name, module, constructor)`` for every backbone the installed Keras has."""
    for cls in sorted(dir(keras.applications)):
        fn = getattr(keras.applications, cls)
        if cls[:1].isupper() and inspect.isfunction(fn):
            module = fn.__module__.rsplit(".", 1)[-1]  # its module's last name: mobilenet_v3
            yield _name(module, cls), module, fn


def preprocess_input(module):
    """The ``preprocess_input`` of a keras.applications module (some are not exported by name)."""
    public = getattr(keras.applications, module, None)
    if public is None:
        public = application_module(module)
    return public.preprocess_input


def _resolve_weights(weights):
    if weights in (None, "imagenet"):
        return weights
    if not os.path.isfile(weights):
        raise ConfigError(f"`model.weights` must be null, imagenet or an existing weights file. "
                          f"Received: {weights!r} (no such file).")
    return weights


def _builder(module, constructor):
    def build(x, classes, cfg):
        weights = _resolve_weights(cfg.weights)
        x = _fit_input(x, weights, constructor)
        try:
            base = constructor(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                               input_tensor=x)
        except ValueError as exc:
            raise ConfigError(f"keras.applications.{constructor.__name__} cannot take input "
                              f"{tuple(x.shape[1:])}: {exc}") from None
        except Exception as exc:  # keras.utils.get_file raises a bare Exception when offline
            if weights != "imagenet":
                raise
            raise ConfigError(_download_failed(constructor, exc)) from None
        if weights not in (None, "imagenet"):
            try:
                base.load_weights(weights, skip_mismatch=False)
            except Exception as exc:  # Keras raises several types for a wrong file
                raise ConfigError(f"`model.weights` {weights!r} does not fit {constructor.__name__} "
                                  f"without its top: {exc}".splitlines()[0]) from None
        y = pool_features(base.output, "gap")  # as Keras's own top: global average pooling
        if cfg.dropout:
            y = layers.Dropout(cfg.dropout, name="head_dropout")(y)
        return predictions(y, classes, cfg)

    build.module = module
    build.__doc__ = f"keras.applications.{constructor.__name__} without its top, plus a new head."
    return build


def _download_failed(constructor, exc):
    """One line for ImageNet weights Keras could not download: the file, Keras's cache, the alternative."""
    import re

    found = re.search(r"(https?://\S+?)(?::\s|\s|$)", str(exc))
    url = found.group(1) if found else None
    filename = url.rsplit("/", 1)[-1] if url else "<weights file>.h5"
    cache = os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "models")
    return (f"`model.weights: imagenet`: Keras could not download the ImageNet weights of "
            f"{constructor.__name__} ({url or str(exc).splitlines()[0]}). Put {filename} in {cache}/ "
            f"(Keras's cache), or set `model.weights: /path/to/{filename}` to a local weights file.")


def _fit_input(x, weights, constructor):
    """Grayscale becomes RGB (ImageNet weights and the backbones' own normalisation want 3
    channels); tiny images are upsampled to the smallest size the backbone accepts
    (75 px for Inception and Xception, else 32)."""
    if x.shape[-1] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    smallest = 75 if constructor.__name__ in ("InceptionV3", "InceptionResNetV2", "Xception") else 32
    if min(x.shape[1:3]) < smallest:
        x = layers.Resizing(max(smallest, x.shape[1]), max(smallest, x.shape[2]), name="upsample")(x)
    return x


def _register_all():
    """Every catalogued backbone builds pretrained models; those not in the zoo are architectures too."""
    for name in sorted(catalog.APPLICATIONS):
        module, constructor = catalog.APPLICATIONS[name]
        builder = _builder(module, getattr(keras.applications, constructor))
        register_pretrained(name)(builder)
        if catalog.ARCHITECTURES[name].family == "keras.applications":
            register_model(name, module=module)(builder)
        else:
            TWINS[name] = builder


_register_all()


def preprocessing_module(cfg):
    """The keras.applications module whose ``preprocess_input`` fits ``cfg`` (a ModelConfig), or None."""
    return catalog.backbone_module(cfg.architecture, cfg.weights)
