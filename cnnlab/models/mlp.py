"""Perceptrons: softmax regression (``slp``) and a multi-layer perceptron (``mlp``)."""

from keras import layers

from cnnlab.models.blocks import dense_act, predictions
from cnnlab.models.registry import register_model


@register_model("slp")
def slp(x, classes, cfg):
    """A single dense softmax layer on the flattened pixels."""
    x = layers.Flatten(name="flatten")(x)
    return predictions(x, classes, cfg)


MLP_UNITS = (256, 128)


@register_model("mlp")
def mlp(x, classes, cfg):
    """Flatten, two hidden dense layers (256, 128), dropout after each, softmax."""
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(MLP_UNITS, start=1):
        x = dense_act(x, units, cfg, f"fc{i}", dropout=cfg.dropout)
    return predictions(x, classes, cfg)
