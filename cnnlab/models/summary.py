"""Parameter and multiply-add counts of the architectures, by building them.

Building the whole zoo takes minutes, so ``cnnlab models --params`` reads the counts
at the default shape from `cnnlab.catalog.PARAMETER_COUNTS` and builds only for
another ``--input-shape`` or ``--classes``. The multiply-adds are counted by
TensorFlow's profiler (`cnnlab.benchmarking.flops`, the figure `cnnlab benchmark`
reports too). This module counts, and writes that table again when an architecture
changes::

    python -m cnnlab.models.summary   # prints PARAMETER_COUNTS for cnnlab/catalog.py
"""

import keras

from cnnlab import catalog
from cnnlab.benchmarking.flops import count_operations
from cnnlab.config import ModelConfig
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_model


def count(name, input_shape, classes):
    """``(parameters, multiply-adds)`` of `name` built with the model section's defaults.

    Raises:
        CnnlabError: the architecture cannot take `input_shape` images.
    """
    try:
        model = build_model(ModelConfig(architecture=name), input_shape, classes)
        return model.count_params(), count_operations(model, input_shape).multiply_adds
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
        lines.append(f'    "{name}": {cell},')  # as the file writes its strings
    return "\n".join([*lines, "}"])


if __name__ == "__main__":
    print(table_source())
