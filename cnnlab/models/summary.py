"""Parameter and multiply-add counts, for ``cnnlab models``."""

import numpy as np
from keras import layers

from cnnlab.config import ModelConfig
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_model, get_model, list_models


def multiply_adds(model):
    """Multiply-adds of one forward pass of one image through the convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)):
            out = np.prod([d for d in layer.output.shape[1:-1]], dtype=np.int64)
            kernels = layer.get_weights()[0].size if not isinstance(layer, layers.SeparableConv2D) else None
            if isinstance(layer, layers.SeparableConv2D):
                depthwise, pointwise = layer.get_weights()[:2]
                total += out * (depthwise.size + pointwise.size)
            elif isinstance(layer, layers.Dense):
                total += out * kernels  # out is 1 for a Dense on a flat vector
            else:
                total += out * kernels
    return int(total)


def model_table(input_shape, classes, family=None):
    """A text table: name, family, parameters, multiply-adds and paper of every architecture."""
    rows = []
    for name in list_models():
        entry = get_model(name)
        if family and entry.meta["family"] != family:
            continue
        try:
            model = build_model(ModelConfig(architecture=name), input_shape, classes)
            params, macs = f"{model.count_params():,}", f"{multiply_adds(model) / 1e6:,.1f}M"
        except CnnlabError as exc:
            params, macs = "-", str(exc)[:40]
        rows.append((name, entry.meta["family"], params, macs, entry.meta["paper"]))
    header = ("name", "family", "parameters", "mult-adds", "paper")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  paper"]
    lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              + f"  {r[4]}" for r in rows]
    return "\n".join(lines)
