"""Grad-CAM heat-maps (Selvaraju et al. 2017), after keras-io's ``grad_cam`` example.

Where the model looked to make a prediction: the gradient of the class's logit with
respect to the last convolutional feature map, averaged over space, weights that map's
channels. The model is left as it is: keras-io sets the last layer's activation to
None to get logits, which would change a model the caller shares; here a sub-model
returns the feature map and the softmax layer's *input*, and the logits are computed
from that with the layer's own weights.

A saved ensemble (`cnnlab.commands.ensemble.combine`) has no feature map of its own: its
members have. `grad_cam` gives an `EnsembleGradCam` for it, which averages the
members' heat-maps as the ensemble averages their probabilities.
"""

import numpy as np

from cnnlab.backend import gradients_unavailable
from cnnlab.keras_private import producer
from cnnlab.errors import CnnlabError
from cnnlab.models.anatomy import CONVOLUTIONS, DROPOUTS
from cnnlab.models.heads import ensemble_members, main_output

CONV_TYPES = CONVOLUTIONS
# Layers between the last convolution and the classifier that Grad-CAM looks through (finer maps).
PASSED = ("MaxPooling2D", "AveragePooling2D", *DROPOUTS)
NO_CONV = "no convolutional layer: Grad-CAM needs a convolutional feature map (this model is a dense network)"
ENSEMBLE = ("an averaged ensemble: its members hold the feature maps; explain it with "
            "cnnlab.visual.gradcam.grad_cam(model)")


def grad_cam(model):
    """The Grad-CAM of `model`: an `EnsembleGradCam` when it averages members, else a `GradCam`."""
    members = ensemble_members(model)
    return EnsembleGradCam(model, members) if members else GradCam(model)


def has_conv(layer):
    """Whether `layer` is, or (a nested model such as a keras.applications base) holds, a convolution."""
    if type(layer).__name__ in CONV_TYPES:
        return True
    return any(has_conv(inner) for inner in getattr(layer, "layers", ()))


def last_conv_output(model):
    """The last convolutional feature map on the way to the main output, or None when there is none.

    Walks back from the main output through the layer graph, past the classifier,
    dropout, flatten or global pooling and any spatial pooling after the last
    convolution, to the first tensor shaped ``(batch, H, W, C)`` made by a
    convolution, its normalisation or activation, or a block's merge. A nested
    keras.applications base counts as one layer: its output is the feature map.

    Returns:
        ``(layer, tensor)`` or None.
    """
    if not any(has_conv(layer) for layer in model.layers):
        return None
    tensor = main_output(model)
    layer, inputs = producer(tensor)
    while len(tensor.shape) != 4 or type(layer).__name__ in PASSED:
        if not inputs:  # reached the input without meeting a feature map
            return None
        tensor = inputs[0]
        layer, inputs = producer(tensor)
    return (layer, tensor) if _conv_upstream(tensor) else None


def _conv_upstream(tensor):
    """Whether a convolution made `tensor` or lies before it (not just the scaled input image)."""
    while True:
        layer, inputs = producer(tensor)
        if has_conv(layer):
            return True
        if not inputs:
            return False
        tensor = inputs[0]


def _logits_head(model):
    """The tensor to read from the sub-model and how to turn it into class logits.

    The main output's softmax is undone without touching the model: for a ``Dense``
    layer with a softmax, its input times its kernel plus its bias; for a softmax
    ``Activation`` layer, its input; otherwise the log of the probabilities.
    """
    import keras
    from keras import ops

    output = main_output(model)
    layer, inputs = producer(output)
    activation = getattr(layer, "activation", None)
    if inputs and activation is keras.activations.softmax:
        if isinstance(layer, keras.layers.Dense):
            def dense_logits(x):
                logits = ops.matmul(ops.cast(x, layer.kernel.dtype), layer.kernel)
                return logits + layer.bias if layer.bias is not None else logits

            return inputs[0], dense_logits
        if isinstance(layer, keras.layers.Activation):
            return inputs[0], lambda x: x
    return output, lambda p: ops.log(ops.clip(ops.cast(p, "float32"), 1e-7, 1.0))


class GradCam:
    """Grad-CAM for one model: find its last convolutional feature map once, then explain batches.

    Attributes:
        layer: the layer whose output is explained (None: the model has no convolution).
    """

    def __init__(self, model):
        import keras

        found = last_conv_output(model)
        self.layer = found[0] if found else None
        self._model = None
        self.unavailable = None if found else (ENSEMBLE if ensemble_members(model) else NO_CONV)
        self.note = ""
        elsewhere = gradients_unavailable("Grad-CAM") if found else None
        if elsewhere:
            self.unavailable = elsewhere
        elif found:
            head, self._to_logits = _logits_head(model)
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # a bare tensor: no structure warning
            self._model = keras.Model(inputs, [found[1], head])

    @property
    def available(self):
        return self._model is not None

    @property
    def layer_name(self):
        return self.layer.name if self.layer is not None else None

    @property
    def layer_names(self):
        return [self.layer.name] if self.layer is not None else []

    @property
    def description(self):
        return f"Layer {self.layer_name}"

    def heatmaps(self, images, classes=None):
        """Heat-maps of `images` for `classes` (default: the predicted ones).

        Args:
            images: ``(N, H, W, C)`` pixels as the model takes them.
            classes: N class indices, or None.

        Returns:
            ``(N, h, w)`` float32 in 0..1 at the feature map's resolution, each map
            divided by its maximum (all zeros where no location speaks for the class).
        """
        import tensorflow as tf

        if not self.available:
            raise CnnlabError(self.unavailable)
        images = tf.convert_to_tensor(np.asarray(images, dtype="float32"))
        with tf.GradientTape() as tape:
            features, head = self._model(images, training=False)
            logits = tf.cast(self._to_logits(head), "float32")
            if classes is None:
                classes = tf.argmax(logits, axis=-1)
            score = tf.gather(logits, tf.convert_to_tensor(classes, dtype="int64"), axis=1, batch_dims=1)
        grads = tf.cast(tape.gradient(score, features), "float32")  # N x h x w x C
        weights = tf.reduce_mean(grads, axis=(1, 2))  # N x C: each channel's importance
        cams = tf.nn.relu(tf.einsum("nhwc,nc->nhw", tf.cast(features, "float32"), weights))
        peak = tf.reduce_max(cams, axis=(1, 2), keepdims=True)
        cams = tf.math.divide_no_nan(cams, peak)
        return np.nan_to_num(cams.numpy()).astype("float32")


class EnsembleGradCam:
    """Grad-CAM of an averaged ensemble: its members' heat-maps, weighted as the ensemble weights them.

    Each member explains the ensemble's class (default: the ensemble's prediction) at
    its own last convolutional feature map (`grad_cam` of the member, so a nested
    ensemble is looked into as well). The maps, each 0..1, are resized to the finest
    member's resolution, averaged with the ensemble's weights renormalised over the
    members that have a feature map, and divided by their maximum. A member without
    one (a dense network) or of weight 0 is left out and named in `note`.

    Attributes:
        members: ``(name, explainer, weight)`` of every member, as the ensemble weights them.
        note: a sentence naming the members left out, or "".
    """

    def __init__(self, model, members):
        self._model = model
        self.members = [(member.name, grad_cam(member), weight) for member, weight in members]
        used = [(name, cam, weight) for name, cam, weight in self.members if cam.available and weight > 0]
        total = sum(weight for *_, weight in used)
        self._used = [(name, cam, weight / total) for name, cam, weight in used]
        kept = {name for name, *_ in used}
        left = [f"{name} ({_left_out_because(cam)})" for name, cam, _ in self.members if name not in kept]
        self.unavailable = None if used else f"no member of this ensemble can be explained: {'; '.join(left)}"
        self.note = f"Left out: {'; '.join(left)}." if used and left else ""

    @property
    def available(self):
        return bool(self._used)

    @property
    def layer_names(self):
        """``member_i/<layer>`` of every member explained (``member_i/member_j/<layer>`` inside a nested ensemble)."""
        return [f"{name}/{inner}" for name, cam, _ in self._used for inner in cam.layer_names]

    @property
    def layer_name(self):
        return ", ".join(self.layer_names) or None

    @property
    def description(self):
        parts = "; ".join(f"{name} weight {weight:.3f}: {', '.join(cam.layer_names)}"
                          for name, cam, weight in self._used)
        return (f"The ensemble's members, each explaining the ensemble's class at its own last convolutional "
                f"layer, their maps averaged with the ensemble's weights ({parts})")

    def heatmaps(self, images, classes=None):
        """Heat-maps of `images` for `classes` (default: the ensemble's predictions), as `GradCam.heatmaps`.

        Returns:
            ``(N, h, w)`` float32 in 0..1, ``h x w`` the finest member map's resolution.
        """
        import keras
        import tensorflow as tf

        if not self.available:
            raise CnnlabError(self.unavailable)
        images = np.asarray(images, dtype="float32")
        if classes is None:
            classes = keras.ops.convert_to_numpy(self._model(images, training=False)).argmax(axis=-1)
        maps = [(cam.heatmaps(images, classes), weight) for _, cam, weight in self._used]
        size = max((m.shape[1:] for m, _ in maps), key=lambda hw: hw[0] * hw[1])
        total = sum(weight * tf.image.resize(m[..., None], size, "bilinear")[..., 0] for m, weight in maps)
        peak = tf.reduce_max(total, axis=(1, 2), keepdims=True)
        return np.nan_to_num(tf.math.divide_no_nan(total, peak).numpy()).astype("float32")


def _left_out_because(cam):
    if cam.available:
        return "weight 0"
    return "a dense network: no convolutional layer" if cam.unavailable == NO_CONV else cam.unavailable


def overlay(image, heatmap, alpha=0.45, colormap="jet", min_size=96):
    """`heatmap` (0..1, any size) resized over `image` (0..255 pixels) in a matplotlib colormap.

    A small image (MNIST's 28 pixels, digits' 8) is first enlarged by a whole factor,
    pixels kept sharp, to at least `min_size`, so the heat-map is drawn smoothly over it.

    Returns:
        ``(H * k, W * k, 3)`` uint8 RGB, ``k`` that whole factor (1 for an image of `min_size` or more).
    """
    from matplotlib import colormaps
    from PIL import Image

    image = np.clip(np.asarray(image, dtype="float32"), 0, 255)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    factor = max(1, -(-min_size // max(image.shape[:2])))
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    height, width = image.shape[:2]
    heat = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize((width, height), Image.BILINEAR)
    colored = colormaps[colormap](np.asarray(heat) / 255.0)[..., :3] * 255
    return np.uint8(np.clip((1 - alpha) * image + alpha * colored, 0, 255))
