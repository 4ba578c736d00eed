"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), single-tower."""

from keras import layers

from cnnlab.models.blocks import conv_bn_act, dense_act, is_small, maybe_lrn, pool_features, predictions
from cnnlab.models.registry import register_model

# (filters, kernel, stride, max-pool after, LRN after)
ALEXNET_CONVS = ((96, 11, 4, True, True), (256, 5, 1, True, True), (384, 3, 1, False, False),
                 (384, 3, 1, False, False), (256, 3, 1, True, False))


@register_model("alexnet")
def alexnet(x, classes, cfg):
    """Five convolutions (96-256-384-384-256), overlapping 3x3/2 max-pooling, two dense
    4096 layers with dropout, softmax; LRN after the first two convolutions if
    ``local_response_norm``. 62.4 M parameters at 224x224x3 (conv1 padded by 2, so
    224 gives the paper's 55x55 maps).

    Small inputs (under 64 px): conv1 becomes 5x5 stride 1 and pooling keeps odd
    sizes ("same"), so 32x32 reaches 4x4x256 instead of vanishing.
    """
    small = is_small(x)
    for i, (filters, kernel, stride, pool, lrn) in enumerate(ALEXNET_CONVS, start=1):
        name = f"conv{i}"
        if i == 1 and small:
            kernel, stride = 5, 1
        if i == 1 and not small:
            x = layers.ZeroPadding2D(2, name="conv1_pad")(x)
        x = conv_bn_act(x, filters, kernel, cfg, name, strides=stride, padding="valid" if i == 1 else "same",
                        conv_suffix="")
        if lrn:
            x = maybe_lrn(x, cfg, f"{name}_lrn")
        if pool:
            x = layers.MaxPooling2D(3, strides=2, padding="same" if small else "valid", name=f"pool{i}")(x)
    x = pool_features(x, cfg.head)
    x = dense_act(x, 4096, cfg, "fc6", dropout=cfg.dropout)
    x = dense_act(x, 4096, cfg, "fc7", dropout=cfg.dropout)
    return predictions(x, classes, cfg)
