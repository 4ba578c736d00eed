"""Model heads, in one place: the main output and GoogLeNet's auxiliary ones, and where the head starts.

A model's first output is its main one; auxiliary classifiers (GoogLeNet's
``aux_logits``) come after it. Training weighs them in; everything else (evaluating,
predicting, exporting, ensembling, explaining, fine-tuning) uses the main output only.
"""

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.keras_private import producer

FEATURES = ("flatten", "avg_pool")  # what the zoo and the backbones name the layer before the classifier
DECODERS = ("fc6", "up4_transpose")  # the first layer after a segmentation network's encoder (FCN's, U-Net's)


def main_output(model):
    """The main output tensor of a functional model."""
    return model.outputs[0]


def main_output_shape(model):
    """The shape of the main output."""
    shape = model.output_shape
    return shape[0] if isinstance(shape, list) else shape


def main_probabilities(predictions):
    """The main output's values from a model's prediction (a list when the model has auxiliary outputs)."""
    return np.asarray(predictions[0] if isinstance(predictions, (list, tuple)) else predictions)


def auxiliary_outputs(model):
    """How many auxiliary outputs `model` has (GoogLeNet's classifiers; 0 for most)."""
    return len(model.outputs) - 1


def without_auxiliary(model):
    """`model` itself, or, when it has auxiliary outputs, the same layers ending in its main output alone."""
    if not auxiliary_outputs(model):
        return model
    import keras

    return keras.Model(model.inputs, main_output(model), name=model.name)


def last_weighted(model):
    """Index of the last layer with weights: the output classifier (later layers have none)."""
    for index in range(len(model.layers) - 1, -1, -1):
        if model.layers[index].weights:
            return index
    raise ConfigError(f"the model {model.name} has no layer with weights to train.")


def head_start(model):
    """Index of the first layer of the head: the classifier after the base's pooled features
    (``flatten`` or ``avg_pool``), a segmentation network's decoder (from ``fc6`` or ``up4_transpose``,
    the encoder being the base), or else the output classifier alone."""
    names = [layer.name for layer in model.layers]
    for name in FEATURES:
        if name in names:
            return names.index(name) + 1
    for name in DECODERS:
        if name in names:
            return names.index(name)
    return last_weighted(model)


def ensemble_members(model):
    """The members of an averaged ensemble and their weights, or None when `model` is not one.

    `cnnlab.commands.ensemble.combine` ends an ensemble in an ``Average`` of nested models
    (equal weights), or an ``Add`` of nested models each scaled by a ``Rescaling``
    layer whose scale is the member's weight.

    Returns:
        ``[(member model, weight), ...]`` or None.
    """
    import keras

    join, inputs = producer(main_output(model))
    kind = type(join).__name__
    if kind not in ("Average", "Add") or len(inputs) < 2:
        return None
    members = []
    for tensor in inputs:
        layer, below = producer(tensor)
        weight = 1.0 / len(inputs)
        if kind == "Add":
            if type(layer).__name__ != "Rescaling" or not below:
                return None
            weight = float(layer.scale)
            layer, _ = producer(below[0])
        if not isinstance(layer, keras.Model):
            return None
        members.append((layer, weight))
    return members
