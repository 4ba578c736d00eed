"""Parameter and multiply-add counts of the architectures, by building them.

Building the whole zoo takes minutes, so ``cnnlab models --params`` reads the counts
at the default shape from `cnnlab.catalog.PARAMETER_COUNTS` and builds only for
another ``--input-shape`` or ``--classes``. This module counts, and writes that
table again when an architecture changes::

    python -m cnnlab.models.summary   # prints PARAMETER_COUNTS for cnnlab/catalog.py
"""

import keras
import numpy as np
from keras import layers

from cnnlab import catalog
from cnnlab.config import ModelConfig
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_model


def multiply_adds(model):
    """Multiply-adds of one forward pass of one image through the convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)):
            continue
        positions = int(np.prod(layer.output.shape[1:-1]))  # output pixels; 1 for a Dense on a vector
        kernels = layer.get_weights()[:2] if isinstance(layer, layers.SeparableConv2D) else layer.get_weights()[:1]
        total += positions * sum(k.size for k in kernels)
    return total


def count(name, input_shape, classes):
    """``(parameters, multiply-adds)`` of `name` built with the model section's defaults.

    Raises:
        CnnlabError: the architecture cannot take `input_shape` images.
    """
    try:
        model = build_model(ModelConfig(architecture=name), input_shape, classes)
        return model.count_params(), multiply_adds(model)
    finally:
        keras.backend.clear_session()


def counts(names, input_shape, classes):
    """``{name: (parameters, multiply-adds) or the reason it does not build}``, building each model."""
    result = {}
    for name in names:
        try:
            result[name] = count(name, input_shape, classes)
        except CnnlabError as exc:
            result[name] = str(exc)
    return result


def table_source(input_shape=catalog.COUNTS_SHAPE, classes=catalog.COUNTS_CLASSES):
    """The Python text of `catalog.PARAMETER_COUNTS` (None where the shape does not build, and for the
    networks that are no classifiers)."""
    lines = ["PARAMETER_COUNTS = {"]
    classifiers = [name for name, spec in catalog.ARCHITECTURES.items() if "classification" in spec.tasks]
    found = counts(classifiers, input_shape, classes)
    for name in catalog.ARCHITECTURES:
        value = found.get(name)
        cell = f"({value[0]:_}, {value[1]:_})" if isinstance(value, tuple) else "None"
        lines.append(f"    {name!r}: {cell},")
    return "\n".join([*lines, "}"])


if __name__ == "__main__":
    print(table_source())
