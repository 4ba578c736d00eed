"""Pixel scaling, done by the model's first layer so a saved model takes raw 0..255 pixels."""

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

SCALINGS = Registry("data.scaling")


@SCALINGS.register("unit")
def unit(model_cfg, stats):
    """0..255 -> 0..1."""
    from keras import layers

    return [layers.Rescaling(1.0 / 255, name="scaling")]


@SCALINGS.register("symmetric")
def symmetric(model_cfg, stats):
    """0..255 -> -1..1."""
    from keras import layers

    return [layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scaling")]


@SCALINGS.register("standardize", needs_stats=True)
def standardize(model_cfg, stats):
    """Per-channel z-score with the training set's mean and variance."""
    from keras import layers

    return [layers.Normalization(mean=stats["mean"], variance=stats["variance"], name="scaling")]


@SCALINGS.register("none")
def none(model_cfg, stats):
    """Raw pixels."""
    return []


@SCALINGS.register("backbone")
def backbone(model_cfg, stats):
    """The keras.applications backbone's own ``preprocess_input``."""
    from cnnlab.models.applications import BackbonePreprocessing, preprocessing_module

    module = preprocessing_module(model_cfg)
    if module is None:
        raise ConfigError("`data.scaling: backbone` applies a keras.applications backbone's own preprocessing, "
                          f"but '{model_cfg.architecture}' is not one (nor a zoo twin with model.weights): "
                          "use unit, symmetric, standardize or none.")
    return [BackbonePreprocessing(module, name="scaling")]


def scaling_layers(name, model_cfg, stats=None):
    """The layers that scale raw pixels for `model_cfg` under ``data.scaling: name``."""
    return SCALINGS.get(name).fn(model_cfg, stats)


def needs_stats(name):
    """Whether the scaling needs the training set's mean and variance."""
    return SCALINGS.get(name).meta.get("needs_stats", False)


def channel_stats(batches, limit=10000):
    """Per-channel mean and variance of up to `limit` images from an iterable of batches."""
    total, sums, squares = 0, 0.0, 0.0
    for images in batches:
        images = np.asarray(images, dtype=np.float64)
        pixels = images.reshape(-1, images.shape[-1])
        sums = sums + pixels.sum(axis=0)
        squares = squares + (pixels ** 2).sum(axis=0)
        total += len(pixels)
        if total >= limit * images.shape[1] * images.shape[2]:
            break
    mean = sums / total
    return {"mean": mean.tolist(), "variance": np.maximum(squares / total - mean ** 2, 1e-12).tolist()}
