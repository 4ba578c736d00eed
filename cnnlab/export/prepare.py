"""The export copy: the same function as the trained model, in the shape every converter takes.

Verified on TF 2.21 / Keras 3.15, each of these would otherwise break an export:

- a mixed-precision model converts to TFLite with TensorFlow "select" ops the LiteRT
  interpreter refuses, and its bfloat16 ONNX graph does not load: the copy is float32;
- a ``Normalization`` layer (``data.scaling: standardize``) becomes an ONNX graph with two
  extra required inputs (its mean and variance): the copy holds the equal ``Rescaling``;
- ONNX export of a freshly loaded model needs the model to have been called once;
- a model with auxiliary outputs (GoogLeNet) exports only its main classifier;
- a model rebuilt from another's ``inputs`` holds its one input as a list, and its SavedModel's
  ``serve`` then wants a list of one batch: the copy takes the batch itself.

The trained model itself is left untouched.
"""

import numpy as np

from cnnlab.keras_private import flatten_layers
from cnnlab.models.heads import auxiliary_outputs, without_auxiliary
from cnnlab.precision import float32_policy


def export_copy(model):
    """A float32 clone of `model` with the same weights, Normalization as Rescaling, called once.

    Returns:
        ``(copy, notes)``: the notes say which of the changes above were made.
    """
    import keras

    notes = [f"float32 copy of a {policy} model" for policy in sorted(policies(model) - {"float32"})]
    with float32_policy():
        replaced = []

        def clone_layer(layer):
            if isinstance(layer, keras.layers.Normalization):
                notes.append(f"Normalization layer '{layer.name}' exported as the equal Rescaling")
                return normalization_as_rescaling(layer)
            new = layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
            replaced.append((layer, new))
            return new

        copy = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
        for old, new in replaced:
            new.set_weights(old.get_weights())
        if auxiliary_outputs(copy):
            notes.append(f"main output only ({auxiliary_outputs(copy)} auxiliary outputs left out)")
            copy = without_auxiliary(copy)
        if isinstance(copy.input, (list, tuple)) and len(copy.inputs) == 1:
            copy = keras.Model(copy.inputs[0], copy.outputs[0] if len(copy.outputs) == 1 else copy.outputs,
                               name=copy.name)
        copy(np.zeros((1, *model.input_shape[1:]), np.float32))  # ONNX export needs a called model
    return copy, notes


def policies(model):
    """The names of the dtype policies of every layer in `model` (nested models included)."""
    return {layer.dtype_policy.name for layer in flatten_layers(model, include_self=False)}


def normalization_as_rescaling(layer):
    """``Rescaling(scale=1/sd, offset=-mean/sd)``, equal to a (non-inverted) ``Normalization`` layer.

    Normalization computes ``(x - mean) / max(sqrt(variance), epsilon)``.
    """
    import keras

    if getattr(layer, "invert", False):
        raise NotImplementedError("an inverted Normalization layer cannot be exported as Rescaling")
    sd = np.maximum(np.sqrt(np.asarray(layer.variance, np.float64)), keras.config.epsilon())
    scale = 1.0 / sd
    offset = -np.asarray(layer.mean, np.float64) * scale
    return keras.layers.Rescaling(scale=scale.astype(np.float32), offset=offset.astype(np.float32),
                                  name=layer.name, dtype="float32")


