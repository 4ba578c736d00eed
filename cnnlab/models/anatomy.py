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
CONVOLUTIONS = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
DROPOUTS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout",
            "GaussianNoise")  # layers that act while training only
PASS_THROUGH = (*DROPOUTS, "ActivityRegularization", "ZeroPadding2D", "Cropping2D")  # no block ends at these
FIRST_UNITS = 64  # a dense first layer: the units kept and drawn
GLOBAL = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")  # a unit of these sees the whole image
RESIZING = ("UpSampling2D", "Resizing")  # these scale the map by their output's size over their input's


@dataclass(frozen=True)
class LayerRow:
    """One layer of the table: where it sits, what it makes, and what an output unit of it sees.

    Attributes:
        path: the layer's name, prefixed by the nested models holding it (``mobilenetv2/Conv1``).
        kind: the layer's class name.
        shape: its output shape without the batch axis.
        params: its weights' count (a nested model's row: all of its layers').
        window: ``"3x3 /1"`` (kernel and stride) for convolutions and pooling, else "".
        field: the receptive field in input pixels, ``(height, width)``; None for the whole image.
        jump: input pixels between two neighbouring outputs, ``(down, across)``; None for the whole image.
        depth: how many nested models hold the layer.
    """

    path: str
    kind: str
    shape: tuple
    params: int
    window: str
    field: Optional[tuple]
    jump: Optional[tuple]
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


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _window(layer):
    """``((kernel, stride, dilation) down, (...) across)`` of a convolution or pooling layer, else None."""
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if kernel is None or type(layer).__name__.startswith("Global"):
        return None
    strides = getattr(layer, "strides", None) or kernel
    return tuple(zip(_pair(kernel), _pair(strides), _pair(getattr(layer, "dilation_rate", 1))))


def _spatial(tensor):
    """``(H, W)`` of a ``(batch, H, W, C)`` tensor, else None."""
    return tuple(tensor.shape[1:3]) if len(tensor.shape) == 4 else None


def _field_after(layer, inputs, fields, output):
    """The ``((field, jump) down, (field, jump) across)`` of `layer`'s `output` from its `inputs`' `fields`
    (None: a unit sees the whole image).

    A merge takes its widest spatial input; an input of one pixel (squeeze-and-excitation's scale, a global
    context) is broadcast over the map and left out. A dense layer on a map (ConvNeXt's pointwise
    convolutions) works on each pixel; one on a vector, like flatten and global pooling, sees everything.
    """
    spatial = [f for t, f in zip(inputs, fields) if _spatial(t) not in (None, (1, 1))] or fields
    kind = type(layer).__name__
    if any(f is None for f in spatial) or kind in GLOBAL or _spatial(output) is None:
        return None
    here = tuple(max(axis) for axis in zip(*spatial))  # per axis: the widest field (and its jump)
    if kind in RESIZING or kind == "Conv2DTranspose":
        return _upsampled(layer, inputs[0], output, here)
    window = _window(layer)
    if window is None:
        return here
    return tuple((field + dilation * (kernel - 1) * jump, jump * stride)
                 for (field, jump), (kernel, stride, dilation) in zip(here, window))


def _upsampled(layer, given, output, here):
    """Fields after an upsampling: the jump divided by the factor; a transposed convolution's kernel, or a
    bilinear interpolation's neighbour, widens the field."""
    out = []
    for (field, jump), before, after, axis in zip(here, _spatial(given), _spatial(output), range(2)):
        factor = after / before
        if type(layer).__name__ == "Conv2DTranspose":
            taps = -(-_pair(layer.kernel_size)[axis] // _pair(layer.strides)[axis])  # inputs one output mixes
        else:
            taps = 1 if getattr(layer, "interpolation", "nearest") == "nearest" else 2
        out.append((field + (taps - 1) * jump, jump / factor))
    return tuple(out)


def _post_order(tensors):
    """Every tensor `tensors` come from, each after the tensors it is computed from (no recursion: a
    network of a thousand layers is as easy as one of ten)."""
    order, seen, stack = [], set(), [(tensor, False) for tensor in tensors]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
        elif id(tensor) not in seen:
            seen.add(id(tensor))
            stack.append((tensor, True))
            stack.extend((t, False) for t in producer(tensor)[1] if id(t) not in seen)
    return order


def receptive_fields(model, given=((1, 1), (1, 1))):
    """``{id(layer): fields}`` (see `_field_after`) of every layer on the way to any output, nested ones too;
    `given`: the fields of the model's input (a nested model's: what its outer model feeds it)."""
    found, fields = {}, {}
    for tensor in _post_order(model.outputs):
        layer, inputs = producer(tensor)
        if not inputs:  # the model's input
            value = given
        elif _is_model(layer):
            inner = receptive_fields(layer, fields[id(inputs[0])])
            found.update({key: v for key, v in inner.items() if key not in found})
            value = inner[id(_output_layer(layer))]
        else:
            value = _field_after(layer, inputs, [fields[id(t)] for t in inputs], tensor)
        fields[id(tensor)] = value
        found.setdefault(id(layer), value)
    return found


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
        value = fields.get(id(layer))
        window = _window(layer)
        rows.append(LayerRow(path=path, kind=type(layer).__name__, shape=output_shape(layer),
                             params=int(layer.count_params()),
                             window=f"{window[0][0]}x{window[1][0]} /{_one(*(w[1] for w in window))}" if window else "",
                             field=value and tuple(f for f, _ in value), jump=value and tuple(j for _, j in value),
                             depth=depth))
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
CHANGES_FIELD = (*CONVOLUTIONS, "MaxPooling2D",
                 "AveragePooling2D", "UpSampling2D", "Functional", "Dense")


def table_cells(row):
    """`row` as the text cells of `TABLE_COLUMNS` (a field or jump of the whole image: ``all``)."""
    return (row.path, row.kind,
            "x".join(str(v) for v in row.shape), row.params, row.window, _pixels(row.field), _pixels(row.jump))


def _pixels(value):
    """A field or jump as text: ``all`` (the whole image), ``5``, or ``1x7`` where the axes differ."""
    if value is None:
        return "all"
    return _one(*(str(int(v)) if float(v).is_integer() else f"{v:.2f}" for v in value))


def _one(down, across):
    return str(down) if down == across else f"{down}x{across}"


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
        return self.kernel.T.reshape(-1, *image_shape)


def first_weights(model):
    """The first 2-D convolution's `FirstWeights`, else (an MLP) the first `FIRST_UNITS` units of a first dense
    layer that takes the whole image flattened, else None."""
    inner = main_model(model)
    pixels = int(np.prod(inner.inputs[0].shape[1:]))
    layers = [(layer, path) for layer, _, path in ordered_layers(inner)]
    for layer, path in layers:
        if type(layer).__name__ == "Conv2D":
            return FirstWeights(path, "conv", np.asarray(layer.kernel.numpy(), dtype="float32"))
    for layer, path in layers:
        if type(layer).__name__ == "Dense":
            kernel = np.asarray(layer.kernel.numpy(), dtype="float32")
            return FirstWeights(path, "dense", kernel[:, :FIRST_UNITS]) if kernel.shape[0] == pixels else None
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
        seen_conv = seen_conv or type(layer).__name__ in CONVOLUTIONS
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


def _ancestors(model, tensor):
    """``{id(layer)}`` of every layer (nested ones too) that `tensor` of `model` depends on."""
    found = set()
    for layer, _ in map(producer, _post_order([tensor])):
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
    for layer, inputs in map(producer, _post_order(model.outputs)):
        if layer is inner:
            return inputs[0]
    raise ValueError(f"{inner.name} is not on the way to {model.name}'s outputs")
