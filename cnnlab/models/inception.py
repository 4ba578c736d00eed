"""GoogLeNet (Szegedy et al. 2014): Inception v1 modules from a spec table."""

from keras import layers

from cnnlab.models.blocks import conv_bn_act, is_small, maybe_lrn, pool_features, predictions
from cnnlab.models.registry import register_model

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) -- Table 1 of the paper.
INCEPTION_V1 = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("3b", "4e")  # max-pooling 3x3/2 between the stages
AUX_AFTER = ("4a", "4d")  # where the auxiliary classifiers branch off


def inception_module(x, spec, cfg, name):
    """Four parallel branches concatenated: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5;
    3x3 max-pool -> 1x1 projection. Layers: ``inception3a_1x1``, ``inception3a_3x3_reduce``...
    """
    b1, r3, b3, r5, b5, proj = spec

    def conv(t, filters, kernel, suffix):
        return conv_bn_act(t, filters, kernel, cfg, f"{name}_{suffix}", conv_suffix="")

    branches = [
        conv(x, b1, 1, "1x1"),
        conv(conv(x, r3, 1, "3x3_reduce"), b3, 3, "3x3"),
        conv(conv(x, r5, 1, "5x5_reduce"), b5, 5, "5x5"),
        conv(layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x), proj, 1, "pool_proj"),
    ]
    return layers.Concatenate(name=f"{name}_output")(branches)


def aux_classifier(x, classes, cfg, name):
    """The paper's auxiliary head: 5x5/3 average pooling, 1x1 conv 128, dense 1024, dropout 0.7."""
    pool = min(5, x.shape[1])
    x = layers.AveragePooling2D(pool, strides=3 if pool == 5 else 1, name=f"{name}_pool")(x)
    x = conv_bn_act(x, 128, 1, cfg, f"{name}_conv", conv_suffix="")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation=cfg.activation, name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return predictions(x, classes, cfg, name=f"{name}_predictions")


def stem(x, cfg):
    """7x7/2 conv 64, 3x3/2 max-pool, (LRN), 1x1 conv 64, 3x3 conv 192, (LRN), 3x3/2 max-pool.

    Small inputs (under 64 px) get one 3x3 stride-1 conv of 192 filters instead,
    keeping 32x32 at 32x32 for the inception stages (the usual CIFAR adaptation).
    """
    if is_small(x):
        return conv_bn_act(x, 192, 3, cfg, "conv1_3x3", conv_suffix="")
    x = conv_bn_act(x, 64, 7, cfg, "conv1_7x7_s2", strides=2, conv_suffix="")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
    x = maybe_lrn(x, cfg, "pool1_norm1")
    x = conv_bn_act(x, 64, 1, cfg, "conv2_3x3_reduce", conv_suffix="")
    x = conv_bn_act(x, 192, 3, cfg, "conv2_3x3", conv_suffix="")
    x = maybe_lrn(x, cfg, "conv2_norm2")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)


@register_model("googlenet")
def googlenet(x, classes, cfg):
    """GoogLeNet: stem, nine Inception v1 modules (3a-5b), global average pooling,
    dropout (the paper's 0.4 via ``dropout``), softmax; 7.0 M parameters at 224.
    ``aux_logits`` adds the two auxiliary classifiers (after 4a and 4d) as extra
    outputs, weighted 0.3 in the loss as in the paper; evaluation uses the main one.
    """
    x = stem(x, cfg)
    aux = []
    for name, spec in INCEPTION_V1.items():
        x = inception_module(x, spec, cfg, f"inception{name}")
        if cfg.aux_logits and name in AUX_AFTER:
            aux.append(aux_classifier(x, classes, cfg, f"aux{len(aux) + 1}"))
        if name in POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool_{name}")(x)
    x = pool_features(x, "gap")  # the paper's 7x7 average pooling, at any input size
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="head_dropout")(x)
    out = predictions(x, classes, cfg)
    return [out, *aux] if aux else out
