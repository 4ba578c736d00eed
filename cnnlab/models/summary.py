"""Parameter and multiply-add counts, for ``cnnlab models``."""

import keras
import numpy as np
from keras import layers

from cnnlab.config import ModelConfig
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_model, get_model, list_models

COLUMNS = (("name", 20), ("family", 18), ("parameters", 13), ("mult-adds", 11))


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


def _row(cells):
    return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


def model_rows(input_shape, classes, family=None):
    """Yield the lines of a table: name, family, parameters, multiply-adds and paper, one model at a time."""
    yield _row([name for name, _ in COLUMNS]) + "  paper"
    for name in list_models():
        entry = get_model(name)
        if family and entry.meta["family"] != family:
            continue
        try:
            model = build_model(ModelConfig(architecture=name), input_shape, classes)
            cells = [f"{model.count_params():,}", f"{multiply_adds(model) / 1e6:,.1f}M"]
        except CnnlabError as exc:
            cells = ["-", f"({str(exc)[:60]})"]
        keras.backend.clear_session()
        yield _row([name, entry.meta["family"], *cells]) + f"  {entry.meta['paper']}"
