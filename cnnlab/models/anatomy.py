"""A built model's anatomy: its layers in order, their receptive fields, its first filters, its feature maps.

What ``cnnlab visualize`` and the report draw is read here, for any functional model
cnnlab trains: a zoo network, a keras.applications base nested as one layer, a
GoogLeNet with auxiliary heads (only the way to the main output counts), a saved
ensemble (its first member stands for it), in float32 or bfloat16.

Receptive field and jump (Araujo et al. 2019, "Computing receptive fields of
convolutional neural networks"): an input pixel sees itself (field 1, jump 1); a
layer of kernel ``k``, stride ``s`` and dilation ``d`` sees ``field + (d(k-1)) * jump``
input pixels and moves ``jump * s`` of them per output step. Two stacked 3x3
convolutions see 5x5 with 2 x 9 weights per channel pair, three see 7x7 with 27.
Upsampling divides the jump; a merge takes its widest input; a global pooling,
flatten or dense layer sees the whole image (field None).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cnnlab.keras_private import producer
from cnnlab.models.heads import ensemble_members, main_output

INITIAL_FILE = "initial_filters.npz"  # in a run: the first layer's weights before training
PASS_THROUGH = ("Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "ActivityRegularization",
                "ZeroPadding2D", "Cropping2D")  # no block ends at these
WHOLE_IMAGE = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense", "Reshape")
UPSAMPLING = ("UpSampling2D", "Conv2DTranspose")


@dataclass(frozen=True)
class LayerRow:
    """One layer of the table: where it sits, what it makes, and what an output unit of it sees.

    Attributes:
        path: the layer's name, prefixed by the nested models holding it (``mobilenetv2/Conv1``).
        kind: the layer's class name.
        shape: its output shape without the batch axis.
        params: its weights' count (a nested model's row: all of its layers').
        window: ``"3x3 /1"`` (kernel and stride) for convolutions and pooling, else "".
        field: the receptive field in input pixels (one side), None for the whole image.
        jump: input pixels between two neighbouring outputs, None for the whole image.
        depth: how many nested models hold the layer.
    """

    path: str
    kind: str
    shape: tuple
    params: int
    window: str
    field: Optional[float]
    jump: Optional[float]
    depth: int = 0


def main_model(model):
    """The model whose inside is shown: an averaged ensemble's first member, else `model`."""
    members = ensemble_members(model)
    return members[0][0] if members else model


def ordered_layers(model):
    """``[(layer, depth, path)]`` in the order the data flows, nested models' layers after their own row."""
    import keras

    found = []
    for layer in model.layers:
        found.append((layer, 0, layer.name))
        if isinstance(layer, keras.Model):
            found.extend((inner, depth + 1, f"{layer.name}/{path}") for inner, depth, path in ordered_layers(layer))
    return found


def _window(layer):
    """``(kernel, stride, dilation)`` along the height of a convolution or pooling layer, else None."""
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if kernel is None or type(layer).__name__.startswith("Global"):
        return None
    strides = getattr(layer, "strides", None) or kernel
    dilation = getattr(layer, "dilation_rate", 1)
    first = lambda value: value[0] if isinstance(value, (tuple, list)) else value  # noqa: E731
    return first(kernel), first(strides), first(dilation)


def _upsampling(layer):
    size = getattr(layer, "size", None) or getattr(layer, "strides", None)
    return size[0] if isinstance(size, (tuple, list)) else size


def _field_after(layer, fields):
    """``(field, jump)`` of `layer`'s output from its inputs' (None: the whole image)."""
    if any(f is None for f, _ in fields):
        return None, None
    field, jump = max(fields)  # a merge: its widest input
    kind = type(layer).__name__
    if kind in WHOLE_IMAGE:
        return None, None
    if kind in UPSAMPLING:
        factor = _upsampling(layer) or 1
        kernel = getattr(layer, "kernel_size", (1,))[0]
        return field + (max(1, -(-kernel // factor)) - 1) * jump, jump / factor
    window = _window(layer)
    if window is None:
        return field, jump
    kernel, stride, dilation = window
    return field + dilation * (kernel - 1) * jump, jump * stride


def receptive_fields(model):
    """``{id(layer): (field, jump)}`` for every layer on the way from the input to any output, nested too."""
    found = {}
    memo = {}

    def of(tensor):
        key = id(tensor)
        if key not in memo:
            layer, inputs = producer(tensor)
            memo[key] = _nested(layer, inputs) if _is_model(layer) else (
                _field_after(layer, [of(t) for t in inputs]) if inputs else (1, 1))
            found.setdefault(id(layer), memo[key])
        return memo[key]

    def _nested(inner, inputs):
        given = of(inputs[0])
        for key, value in receptive_fields_from(inner, given).items():
            found.setdefault(key, value)
        return found[id(_output_layer(inner))]

    for tensor in model.outputs:
        of(tensor)
    return found


def receptive_fields_from(model, given):
    """`receptive_fields` of a nested `model` whose input already has the field and jump `given`."""
    fields = receptive_fields(model)
    field, jump = given
    if field is None:
        return {key: (None, None) for key in fields}
    return {key: (None, None) if f is None else (field + (f - 1) * jump, j * jump) for key, (f, j) in fields.items()}


def _is_model(layer):
    import keras

    return isinstance(layer, keras.Model)


def _output_layer(model):
    return producer(model.outputs[0])[0]


def layer_table(model):
    """`LayerRow` for every layer of `model` (nested ones too), in the order the data flows."""
    fields = receptive_fields(model)
    rows = []
    for layer, depth, path in ordered_layers(model):
        if type(layer).__name__ == "InputLayer" and depth:
            continue  # a nested model's input: its row above says it all
        field, jump = fields.get(id(layer), (None, None))
        window = _window(layer)
        shape = output_shape(layer)
        rows.append(LayerRow(path=path, kind=type(layer).__name__, shape=shape, params=int(layer.count_params()),
                             window=f"{window[0]}x{window[0]} /{window[1]}" if window else "",
                             field=field, jump=jump, depth=depth))
    return rows


def output_shape(layer):
    try:
        output = layer.output
    except (AttributeError, ValueError):  # a layer never called
        return ()
    output = output[0] if isinstance(output, (list, tuple)) else output
    return tuple(output.shape[1:])


TABLE_COLUMNS = ("layer", "type", "output shape", "parameters", "window", "receptive field", "jump")
# what the terminal's compact table keeps: the layers that change what a unit sees, and the first and last
CHANGES_FIELD = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "MaxPooling2D",
                 "AveragePooling2D", "UpSampling2D", "Functional", "Dense")


def table_cells(row):
    """`row` as the text cells of `TABLE_COLUMNS` (a field or jump of the whole image: ``all``)."""
    return (row.path, row.kind,
            "x".join(str(v) for v in row.shape), row.params, row.window, _pixels(row.field), _pixels(row.jump))


def _pixels(value):
    if value is None:
        return "all"
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def table_lines(rows, compact=False):
    """The layer table as aligned text lines; `compact`: the layers in `CHANGES_FIELD` only, and a summary."""
    shown = [r for r in rows if r.kind in CHANGES_FIELD] if compact else rows
    cells = [TABLE_COLUMNS, *(tuple(map(str, table_cells(r))) for r in shown)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
             for line in cells]
    if compact:
        lines.append(f"({len(shown)} of {len(rows)} layers: those that change what a unit sees; "
                     "layers.csv has every one)")
    return lines


# --------------------------------------------------------------------------- the first layer's weights


@dataclass(frozen=True)
class FirstWeights:
    """The weights the image meets first: a convolution's kernels or a dense layer's columns.

    Attributes:
        layer: the layer's path (see `LayerRow.path`).
        kind: ``"conv"`` (kernel ``(kh, kw, in, out)``) or ``"dense"`` (kernel ``(H*W*C, units)``).
        kernel: float32 weights.
    """

    layer: str
    kind: str
    kernel: np.ndarray

    def as_images(self, image_shape):
        """``(filters, h, w, c)`` float32: each filter (or unit's weights) as a small image."""
        if self.kind == "conv":
            return np.transpose(self.kernel, (3, 0, 1, 2))
        height, width, channels = image_shape
        return self.kernel.T.reshape(-1, height, width, channels)


def first_weights(model):
    """The first convolution's `FirstWeights`, else the first dense layer's (an MLP), else None."""
    candidates = [(layer, path) for layer, _, path in ordered_layers(main_model(model)) if layer.weights]
    for kinds, kind in ((("Conv2D",), "conv"), (("Dense",), "dense")):
        for layer, path in candidates:
            if type(layer).__name__ in kinds:
                kernel = np.asarray(layer.kernel.numpy(), dtype="float32")
                if kind == "conv" or kernel.ndim == 2:
                    return FirstWeights(path, kind, kernel)
    return None


def save_initial(model, run):
    """Keep `model`'s first weights in `run` before training (a few kB; an earlier record is kept)."""
    path = Path(run) / INITIAL_FILE
    found = first_weights(model)
    if found is None or path.exists():
        return
    from cnnlab.files import save_arrays

    save_arrays(path, {"layer": np.array(found.layer), "kind": np.array(found.kind), "kernel": found.kernel})


def read_initial(run):
    """The `FirstWeights` `save_initial` kept in `run`, or None (a run from before cnnlab kept them)."""
    if run is None or not (Path(run) / INITIAL_FILE).is_file():
        return None
    with np.load(Path(run) / INITIAL_FILE) as data:
        return FirstWeights(str(data["layer"]), str(data["kind"]), data["kernel"])


# --------------------------------------------------------------------------- feature maps


def block_ends(model, limit=8):
    """The layers whose outputs end the convolutional blocks on the way to the main output.

    A block is a run of layers at one spatial size after the first convolution; its
    end is its last layer that is no pass-through (dropout, noise, padding). Maps of
    one pixel are left out. At most `limit`,
    evenly spread, the last block always among them.
    """
    model = main_model(model)
    on_path = _ancestors(model, main_output(model))
    ends, size, seen_conv = [], None, False
    for layer, _, path in ordered_layers(model):
        if _is_model(layer) or id(layer) not in on_path:
            continue
        seen_conv = seen_conv or type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
        shape = output_shape(layer)
        if not seen_conv or len(shape) != 3 or shape[0] * shape[1] == 1 or type(layer).__name__ in PASS_THROUGH:
            continue
        if shape[:2] != size:
            ends.append((layer, path))
            size = shape[:2]
        else:
            ends[-1] = (layer, path)
    if len(ends) > limit:
        picks = np.unique(np.linspace(0, len(ends) - 1, limit).round().astype(int))
        ends = [ends[i] for i in picks]
    return ends


def _upstream(tensors):
    """``(layer, its input tensors)`` for every tensor `tensors` come from (themselves too), each once."""
    stack, seen = list(tensors), set()
    while stack:
        tensor = stack.pop()
        if id(tensor) not in seen:
            seen.add(id(tensor))
            layer, inputs = producer(tensor)
            yield layer, inputs
            stack.extend(inputs)


def _ancestors(model, tensor):
    """``{id(layer)}`` of every layer (nested ones too) that `tensor` of `model` depends on."""
    found = set()
    for layer, _ in _upstream([tensor]):
        found.add(id(layer))
        if _is_model(layer):
            found |= _ancestors(layer, layer.outputs[0])
    return found


class Tap:
    """The outputs of chosen layers of a model, nested ones too, for a batch of images.

    A layer inside a nested model (a keras.applications base) is read by a sub-model of
    that nested model, fed what the outer model gives it, so no graph is rebuilt.
    Differentiable with TensorFlow (gradient ascent on the input goes through it).
    """

    def __init__(self, model, layers):
        import keras

        self._wanted = {id(layer) for layer in layers}
        self._top = [layer for layer in model.layers if id(layer) in self._wanted and not _is_model(layer)]
        self._nested = [(layer, Tap(layer, layers)) for layer in model.layers
                        if _is_model(layer) and self._holds(layer)]
        outputs = [layer.output for layer in self._top] + [_called_on(model, inner) for inner, _ in self._nested]
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self._model = keras.Model(inputs, outputs)

    def _holds(self, model):
        return any(id(layer) in self._wanted for layer, _, _ in ordered_layers(model))

    def __call__(self, images):
        """``{id(layer): output tensor}`` of every chosen layer for `images`."""
        values = self._model(images, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        result = {id(layer): value for layer, value in zip(self._top, values)}
        for (_, tap), value in zip(self._nested, values[len(self._top):]):
            result.update(tap(value))
        return result


def _called_on(model, inner):
    """The tensor of `model` that the nested model `inner` is called on."""
    for layer, inputs in _upstream(model.outputs):
        if layer is inner:
            return inputs[0]
    raise ValueError(f"{inner.name} is not on the way to {model.name}'s outputs")
