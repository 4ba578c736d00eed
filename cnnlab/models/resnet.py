"""ResNet (He et al. 2015): ImageNet networks (18-152) and the CIFAR networks of section 4.2."""

from keras import layers

from cnnlab.models.blocks import conv_bn_act, is_small, pool_features, predictions
from cnnlab.models.registry import register_model

# depth: (block, blocks per stage). Stage filters 64, 128, 256, 512 (x4 out for bottleneck).
RESNET_SPECS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
# depth 6n + 2: n basic blocks in each of three stages of 16, 32, 64 filters.
CIFAR_RESNET_SPECS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


def _shortcut(x, filters, stride, cfg, name):
    """Identity, or a 1x1 projection with BN when the shape changes (option B)."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    return conv_bn_act(x, filters, 1, cfg, f"{name}_0", strides=stride, activation=False, batch_norm=True,
                       use_bias=True)


def basic_block(x, filters, stride, cfg, name):
    """3x3 conv - BN - act - 3x3 conv - BN, plus the shortcut, then act."""
    shortcut = _shortcut(x, filters, stride, cfg, name)
    y = conv_bn_act(x, filters, 3, cfg, f"{name}_1", strides=stride, batch_norm=True, use_bias=True)
    y = conv_bn_act(y, filters, 3, cfg, f"{name}_2", activation=False, batch_norm=True, use_bias=True)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation(cfg.activation, name=f"{name}_out")(y)


def bottleneck_block(x, filters, stride, cfg, name):
    """1x1 (stride) - 3x3 - 1x1 x4 with BN, plus the shortcut, then act (Keras's ResNet v1)."""
    shortcut = _shortcut(x, 4 * filters, stride, cfg, name)
    y = conv_bn_act(x, filters, 1, cfg, f"{name}_1", strides=stride, batch_norm=True, use_bias=True)
    y = conv_bn_act(y, filters, 3, cfg, f"{name}_2", batch_norm=True, use_bias=True)
    y = conv_bn_act(y, 4 * filters, 1, cfg, f"{name}_3", activation=False, batch_norm=True, use_bias=True)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation(cfg.activation, name=f"{name}_out")(y)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def resnet(x, classes, cfg, depth):
    """ImageNet ResNet: 7x7/2 conv 64 + 3x3/2 max-pool, four stages (conv2..conv5),
    global average pooling, softmax. Layer names and counts are Keras's own
    (``conv3_block2_1_conv``, ``conv3_block2_add``): ResNet50/101/152 match
    ``keras.applications`` exactly.

    Small inputs (under 64 px) get a 3x3 stride-1 conv stem and no max-pool, so
    32x32 reaches conv5 at 4x4 rather than 1x1.
    """
    kind, stages = RESNET_SPECS[depth]
    if is_small(x):
        x = conv_bn_act(x, 64, 3, cfg, "conv1", batch_norm=True, use_bias=True)
    else:
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = conv_bn_act(x, 64, 7, cfg, "conv1", strides=2, padding="valid", batch_norm=True, use_bias=True)
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for s, blocks in enumerate(stages):
        for b in range(blocks):
            stride = 2 if b == 0 and s > 0 else 1
            x = BLOCKS[kind](x, 64 * 2 ** s, stride, cfg, f"conv{s + 2}_block{b + 1}")
    return predictions(pool_features(x, "gap"), classes, cfg)


def cifar_resnet(x, classes, cfg, depth):
    """The CIFAR-10 ResNet of section 4.2: 3x3 conv 16, three stages of n basic blocks
    (16, 32, 64 filters on 32, 16, 8 maps), global average pooling, softmax.
    Shortcuts that change shape are 1x1 projections (the paper's option B; its
    CIFAR runs used zero-padding, option A, which has 0.5-1 % fewer parameters).
    """
    n = CIFAR_RESNET_SPECS[depth]
    x = conv_bn_act(x, 16, 3, cfg, "conv1", batch_norm=True, use_bias=True)
    for s in range(3):
        for b in range(n):
            stride = 2 if b == 0 and s > 0 else 1
            x = basic_block(x, 16 * 2 ** s, stride, cfg, f"conv{s + 2}_block{b + 1}")
    return predictions(pool_features(x, "gap"), classes, cfg)


def _register(depth, builder):
    def build(x, classes, cfg):
        return builder(x, classes, cfg, depth)

    build.__doc__ = f"ResNet-{depth}. " + (builder.__doc__ or "")
    register_model(f"resnet{depth}")(build)


for _depth in RESNET_SPECS:
    _register(_depth, resnet)
for _depth in CIFAR_RESNET_SPECS:
    _register(_depth, cifar_resnet)
