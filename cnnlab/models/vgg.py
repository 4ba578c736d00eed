"""VGG (Simonyan & Zisserman 2014): one builder, the variants as a spec table."""

from keras import layers

from cnnlab.models.blocks import conv_bn_act, dense_act, pool_features, predictions, scaled
from cnnlab.models.registry import register_model

VGG_FILTERS = (64, 128, 256, 512, 512)
VGG_SPECS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg(x, classes, cfg, depth):
    """Five stages of 3x3 stride-1 convolutions, each followed by 2x2 max-pooling, then
    dense 4096-4096 with dropout and softmax. Layer names are Keras's own
    (``block3_conv2``, ``fc1``, ``predictions``), so VGG16/19 match
    ``keras.applications`` parameter for parameter; ``batch_norm`` adds BN after
    every convolution (VGG-BN). Pooling pads odd sizes, so 28x28 inputs still reach 1x1.
    """
    x = pool_features(vgg_body(x, cfg, depth)["block5_pool"], cfg.head)
    x = dense_act(x, 4096, cfg, "fc1", dropout=cfg.dropout)
    x = dense_act(x, 4096, cfg, "fc2", dropout=cfg.dropout)
    return predictions(x, classes, cfg)


def vgg_body(x, cfg, depth):
    """The five convolution stages of VGG `depth`: each stage's pooled output by its name (``block3_pool``).

    Filter counts follow ``model.width`` where the architecture honours it (the segmentation networks)."""
    pools = {}
    for stage, (convs, filters) in enumerate(zip(VGG_SPECS[depth], VGG_FILTERS), start=1):
        for c in range(1, convs + 1):
            x = conv_bn_act(x, scaled(filters, cfg), 3, cfg, f"block{stage}_conv{c}", conv_suffix="")
        x = pools[f"block{stage}_pool"] = layers.MaxPooling2D(2, strides=2, padding="same",
                                                              name=f"block{stage}_pool")(x)
    return pools


def _register(depth):
    def build(x, classes, cfg):
        return vgg(x, classes, cfg, depth)

    build.__doc__ = f"VGG{depth}: convolutions per stage {VGG_SPECS[depth]}."
    register_model(f"vgg{depth}")(build)


for _depth in VGG_SPECS:
    _register(_depth)
