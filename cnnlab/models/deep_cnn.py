"""The CNNs of *Deep Learning from Scratch*: ``simple_cnn`` (ch.7) and ``deep_cnn`` (ch.8)."""

from keras import layers

from cnnlab.models.blocks import OUTPUT_ACTIVATION, conv_bn_act, conv_kwargs, dense_act, pool_features, predictions
from cnnlab.models.registry import register_model


@register_model("simple_cnn")
def simple_cnn(x, classes, cfg):
    """Conv(30, 5x5, valid) - ReLU - Pool(2) - Affine(100) - ReLU - Affine - Softmax."""
    x = conv_bn_act(x, 30, 5, cfg, "block1_conv1", padding="valid", conv_suffix="")
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = pool_features(x, cfg.head)
    x = dense_act(x, 100, cfg, "fc1")
    return predictions(x, classes, cfg)


# (filters, padding) per convolution; the book pads its 4th convolution by 2, which
# is what turns 28x28 into 4x4x64 (= 1,024 inputs) before the dense layer.
DEEP_CNN_SPEC = (((16, 1), (16, 1)), ((32, 1), (32, 2)), ((64, 1), (64, 1)))


@register_model("deep_cnn")
def deep_cnn(x, classes, cfg):
    """The book's DeepConvNet: three pairs of 3x3 convolutions with 2x2 max-pooling.

    conv16-conv16-pool-conv32-conv32-pool-conv64-conv64-pool-dense50-dropout-dense-
    dropout-softmax. On 28x28x1 and 10 classes it has the book's 123,552 parameters.
    The dropout after the output affine layer (before softmax) is the book's too.
    """
    for b, convs in enumerate(DEEP_CNN_SPEC, start=1):
        for c, (filters, pad) in enumerate(convs, start=1):
            name = f"block{b}_conv{c}"
            if pad != 1:  # padding 1 around a 3x3 kernel is the convolution's own "same" (one op, not two)
                x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
            x = conv_bn_act(x, filters, 3, cfg, name, padding="same" if pad == 1 else "valid", conv_suffix="")
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)  # 28 -> 14 -> 8 -> 4
    x = pool_features(x, cfg.head)
    x = dense_act(x, 50, cfg, "fc1", dropout=cfg.dropout)
    x = layers.Dense(classes, name="fc2", **conv_kwargs(cfg))(x)
    x = layers.Dropout(cfg.dropout, name="fc2_dropout")(x)
    return layers.Activation(OUTPUT_ACTIVATION.get(), dtype="float32", name="predictions")(x)  # the task's

