"""Building blocks shared by every family; layer names are given by place."""

import contextvars

import keras
from keras import layers


def conv_kwargs(cfg):
    """Initializer and regularizer keyword arguments for Conv2D/Dense from a ModelConfig."""
    reg = cfg.kernel_regularizer
    return {
        "kernel_initializer": cfg.kernel_initializer,
        "kernel_regularizer": keras.regularizers.L1L2(reg.l1, reg.l2) if reg else None,
    }


def conv_bn_act(x, filters, kernel_size, cfg, name, *, strides=1, padding="same", activation=True,
                batch_norm=None, use_bias=None, conv_suffix="_conv"):
    """Conv2D, then BatchNormalization (default: ``cfg.batch_norm``), then the activation.

    Layers are named ``{name}{conv_suffix}``, ``{name}_bn`` and ``{name}_{activation}``
    (Keras's ResNet names: ``conv2_block1_1_conv``; VGG's pass ``conv_suffix=""``:
    ``block1_conv1``). The convolution has a bias unless BatchNormalization follows,
    or as `use_bias` says. Without BatchNormalization the activation is the
    convolution's own (one fused op, the same result: a leaner, faster graph).
    """
    batch_norm = cfg.batch_norm if batch_norm is None else batch_norm
    fused = cfg.activation if activation and not batch_norm else None
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, activation=fused,
                      use_bias=not batch_norm if use_bias is None else use_bias,
                      name=f"{name}{conv_suffix}", **conv_kwargs(cfg))(x)
    if batch_norm:
        x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    if activation and not fused:
        x = layers.Activation(cfg.activation, name=f"{name}_{cfg.activation}")(x)
    return x


def is_small(x, threshold=64):
    """Whether the feature map is too small for an ImageNet stem (the builders adapt it)."""
    return min(x.shape[1], x.shape[2]) < threshold


@keras.saving.register_keras_serializable(package="cnnlab")
class LocalResponseNormalization(layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012, section 3.3).

    ``b = a / (k + alpha * sum of a^2 over `depth` neighbouring channels) ** beta``,
    written with ``keras.ops`` so it runs on any backend.
    """

    def __init__(self, depth=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.k, self.alpha, self.beta = depth, k, alpha, beta

    def call(self, inputs):
        from keras import ops

        half = self.depth // 2
        squares = ops.pad(ops.square(inputs), [[0, 0], [0, 0], [0, 0], [half, half]])
        channels = ops.shape(inputs)[-1]
        total = sum(squares[..., i:i + channels] for i in range(self.depth))
        return inputs / ops.power(self.k + self.alpha * total, self.beta)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "k": self.k, "alpha": self.alpha, "beta": self.beta}


def maybe_lrn(x, cfg, name):
    """LocalResponseNormalization when ``cfg.local_response_norm`` is set."""
    return LocalResponseNormalization(name=name)(x) if cfg.local_response_norm else x


def dense_act(x, units, cfg, name, *, dropout=0.0):
    """Dense, optional BatchNormalization, the activation, then optional Dropout."""
    x = layers.Dense(units, use_bias=not cfg.batch_norm, name=name, **conv_kwargs(cfg))(x)
    if cfg.batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation(cfg.activation, name=f"{name}_{cfg.activation}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def pool_features(x, head):
    """Flatten (``flatten``) or global average pooling (``gap``) before the classifier."""
    if head == "gap":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Flatten(name="flatten")(x)


OUTPUT_ACTIVATION = contextvars.ContextVar("output_activation", default="softmax")  # the task's (build_model)


def predictions(x, classes, cfg, name="predictions"):
    """The output layer, kept in float32 under mixed precision: softmax, or the task's activation
    (`OUTPUT_ACTIVATION`, which `cnnlab.models.registry.build_model` sets: sigmoid for multi-label)."""
    return layers.Dense(classes, activation=OUTPUT_ACTIVATION.get(), dtype="float32", name=name,
                        **conv_kwargs(cfg))(x)


# --------------------------------------------------------------------------- a class per pixel


def scaled(filters, cfg):
    """A layer's filter count under ``model.width`` (at least 1)."""
    return max(1, round(filters * cfg.width))


def crop_to(x, height, width, name):
    """`x` cropped at its bottom and right to ``height x width`` (what a ``same`` pooling's padding added
    before an upsampling doubled it); `x` itself when it is that size."""
    extra_h, extra_w = x.shape[1] - height, x.shape[2] - width
    if (extra_h, extra_w) == (0, 0):
        return x
    return layers.Cropping2D(((0, extra_h), (0, extra_w)), name=name)(x)


def pixel_predictions(x, name="predictions"):
    """Class scores per pixel (``(H, W, classes)``) through the task's activation, in float32."""
    return layers.Activation(OUTPUT_ACTIVATION.get(), dtype="float32", name=name)(x)


@keras.saving.register_keras_serializable(package="cnnlab")
class BilinearUpsampling(keras.initializers.Initializer):
    """A ``Conv2DTranspose`` kernel ``(k, k, channels, channels)`` that upsamples each channel bilinearly
    (Long et al. 2015, section 3.3: "initialized to bilinear upsampling"); other channels get 0."""

    def __call__(self, shape, dtype=None):
        import numpy as np

        size, _, out_channels, in_channels = shape
        factor = (size + 1) // 2
        center = factor - 1 if size % 2 == 1 else factor - 0.5
        grid = np.ogrid[:size, :size]
        weights = (1 - abs(grid[0] - center) / factor) * (1 - abs(grid[1] - center) / factor)
        kernel = np.zeros(shape, dtype="float32")
        for channel in range(min(out_channels, in_channels)):
            kernel[:, :, channel, channel] = weights
        return keras.ops.convert_to_tensor(kernel, dtype=dtype)



@keras.saving.register_keras_serializable(package="cnnlab")
class PriorCorrection(layers.Layer):
    """Class probabilities divided by the class weights the loss used, renormalised, outside training.

    A loss that weighs class c by ``w_c`` is minimised by probabilities proportional to ``w_c * p(c | x)``:
    rare classes win pixels they should not (segmentation's balanced weights over-segment every digit
    by about a third on the MNIST canvases). Training sees the weighted probabilities its loss needs;
    prediction, evaluation and exports see ``p(c | x)`` again.
    """

    def __init__(self, class_weights, **kwargs):
        super().__init__(**kwargs)
        self.class_weights = [float(w) for w in class_weights]

    def call(self, inputs, training=None):
        from keras import ops

        if training:
            return inputs
        corrected = inputs / ops.convert_to_tensor(self.class_weights, inputs.dtype)
        return corrected / ops.sum(corrected, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}
