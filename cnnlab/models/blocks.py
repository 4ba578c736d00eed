"""Building blocks shared by every family; layer names are given by place."""

import keras
from keras import layers


def conv_kwargs(cfg):
    """Initializer and regularizer keyword arguments for Conv2D/Dense from a ModelConfig."""
    reg = cfg.kernel_regularizer
    return {
        "kernel_initializer": cfg.kernel_initializer,
        "kernel_regularizer": keras.regularizers.L1L2(reg.l1, reg.l2) if reg else None,
    }


def conv_bn_act(x, filters, kernel_size, cfg, name, *, strides=1, padding="same", activation=True):
    """Conv2D, then BatchNormalization if ``cfg.batch_norm``, then the activation.

    Layers are named ``{name}_conv``, ``{name}_bn`` and ``{name}_{activation}``.
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      use_bias=not cfg.batch_norm, name=f"{name}_conv", **conv_kwargs(cfg))(x)
    if cfg.batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(cfg.activation, name=f"{name}_{cfg.activation}")(x)
    return x


def dense_act(x, units, cfg, name, *, dropout=0.0):
    """Dense, optional BatchNormalization, the activation, then optional Dropout."""
    x = layers.Dense(units, use_bias=not cfg.batch_norm, name=name, **conv_kwargs(cfg))(x)
    if cfg.batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation(cfg.activation, name=f"{name}_{cfg.activation}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def pool_features(x, head, name="head"):
    """Flatten (``flatten``) or global average pooling (``gap``) before the classifier."""
    if head == "gap":
        return layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    return layers.Flatten(name=f"{name}_flatten")(x)


def predictions(x, classes, cfg, name="predictions"):
    """The softmax output layer, kept in float32 under mixed precision."""
    return layers.Dense(classes, activation="softmax", dtype="float32", name=name,
                        **conv_kwargs(cfg))(x)
