"""Faster TensorFlow kernels for two layers Keras 3 runs slowly on a CPU; same results, same model file.

``runtime.fast_kernels`` (on by default) applies them to a model before it is compiled
for training (BENCHMARKS.md, "Why bfloat16 loses time", has the profile):

- **BatchNormalization as one fused kernel.** On TensorFlow, Keras 3 casts to float32 and
  builds moments and the normalisation from about 20 small ops (and their gradients);
  TensorFlow's ``FusedBatchNormV3`` does it in one, on the compute dtype (bfloat16 images,
  float32 statistics), as tf.keras did. The moving averages are Keras 3's: the fused
  kernel's Bessel-corrected batch variance is scaled back by (n - 1) / n.
- **Strided depthwise convolutions in float32 under bfloat16.** oneDNN's bfloat16 kernel
  for their input gradient is 6x slower than its float32 one (MobileNetV2's four).

Only the layer's ``call`` is replaced, on that object: its class, config and weights stay
Keras's own, so ``model.keras`` loads in Keras without cnnlab (``cnnlab export`` loads that
file, so its graphs hold Keras's ops; a SavedModel of the same object would hold the fused op).
Not with ``deterministic: true``: TensorFlow has no deterministic GPU gradient of the fused
op in inference mode (a frozen layer while fine-tuning). Inputs the kernels do not cover (a
mask, not 4-D, channels first, float16, an epsilon below TensorFlow's 1.001e-5 minimum,
renorm) take Keras's path.
"""

import keras

from cnnlab.keras_private import flatten_layers, has_replaced_call, replace_call

FUSED_DTYPES = ("float32", "bfloat16")
FUSED_MIN_EPSILON = 1.001e-5  # tf.nn.fused_batch_norm raises smaller ones to this


def speed_up(model, enabled=True, kernels=("batch_norm", "strided_depthwise")):
    """Give `model`'s BatchNormalization and strided depthwise layers the faster kernels (TensorFlow only).

    `kernels` names which (benchmarks/profile_precision.py times them apart). Idempotent;
    returns the number of layers changed.
    """
    if not enabled or keras.backend.backend() != "tensorflow":
        return 0
    changed = 0
    for layer in flatten_layers(model, include_self=False):  # nested models' too (a keras.applications base)
        if has_replaced_call(layer):  # already given a kernel (fine-tuning compiles twice)
            continue
        for name in kernels:
            applies, kernel = KERNELS[name]
            if applies(layer):
                replace_call(layer, kernel(layer))
                changed += 1
                break
    return changed


def _fusable(layer):
    """A built BatchNormalization over the channels of 4-D channels-last images, as Keras 3 would run it."""
    spec = layer.input_spec if type(layer).call is keras.layers.BatchNormalization.call else None
    return (spec is not None and spec.ndim == 4 and layer.axis in (-1, 3) and not layer.renorm
            and not getattr(layer, "synchronized", False) and layer.epsilon >= FUSED_MIN_EPSILON)


def _strided_half_depthwise(layer):
    return (type(layer).call is keras.layers.DepthwiseConv2D.call and layer.compute_dtype == "bfloat16"
            and layer.data_format == "channels_last" and tuple(layer.strides) != (1, 1))


def _fused_batch_norm(layer):
    """`layer`'s call, with FusedBatchNormV3 where it applies."""
    import tensorflow as tf

    keras_call = layer.call

    def call(inputs, training=None, mask=None):
        if mask is not None or keras.backend.standardize_dtype(inputs.dtype) not in FUSED_DTYPES:
            return keras_call(inputs, training=training, mask=mask)
        channels = (inputs.shape[-1],)
        gamma = layer.gamma.value if layer.scale else tf.ones(channels)
        beta = layer.beta.value if layer.center else tf.zeros(channels)
        if training and layer.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=layer.epsilon, is_training=True)
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), variance.dtype)
            variance = variance * (n - 1.0) / n  # Keras 3 averages the biased batch variance
            layer.moving_mean.assign(layer.moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
            layer.moving_variance.assign(
                layer.moving_variance * layer.momentum + variance * (1.0 - layer.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=layer.moving_mean.value, variance=layer.moving_variance.value,
                epsilon=layer.epsilon, is_training=False)
        return keras.ops.cast(outputs, layer.compute_dtype)

    return call


def _float32_depthwise(layer):
    """`layer`'s call on float32 images (its kernel as the bfloat16 layer sees it), cast back."""

    def call(inputs):
        outputs = keras.ops.depthwise_conv(
            keras.ops.cast(inputs, "float32"), keras.ops.cast(layer.kernel, "float32"), strides=layer.strides,
            padding=layer.padding, dilation_rate=layer.dilation_rate, data_format=layer.data_format)
        if layer.use_bias:
            outputs = outputs + keras.ops.cast(layer.bias, "float32")
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return keras.ops.cast(outputs, layer.compute_dtype)

    return call


KERNELS = {"batch_norm": (_fusable, _fused_batch_norm),  # name: (which layers, the call it gives them)
           "strided_depthwise": (_strided_half_depthwise, _float32_depthwise)}
