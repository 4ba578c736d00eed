"""U-Net (Ronneberger, Fischer & Brox 2015): a contracting path, and an expanding one that joins each
level's features back in.

Four levels of two 3x3 convolutions and 2x2 max-pooling (64, 128, 256, 512 filters),
1,024 at the bottom (dropout there, as in the paper), then four 2x2 transposed
convolutions, each concatenated with the features of its level and convolved twice
more, and a 1x1 convolution scoring each class per pixel. Convolutions pad ``same``
(the paper's are unpadded and crop the skips), so the output is the image's size;
odd sizes are handled by cropping each upsampled map to its skip's size.
``model.width`` scales every filter count; ``model.batch_norm`` adds BN after each
convolution.
"""

from keras import layers

from cnnlab.models.blocks import conv_bn_act, conv_kwargs, crop_to, pixel_predictions, scaled
from cnnlab.models.registry import register_model

LEVELS = (64, 128, 256, 512)
BOTTOM = 1024


@register_model("unet")
def unet(x, classes, cfg):
    """U-Net with four levels (see the module's docstring)."""
    skips = []
    for level, filters in enumerate(LEVELS, start=1):
        x = _double_conv(x, scaled(filters, cfg), cfg, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"down{level}_pool")(x)
    x = _double_conv(x, scaled(BOTTOM, cfg), cfg, "bottom")
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="bottom_dropout")(x)
    for level, (filters, skip) in reversed(list(enumerate(zip(LEVELS, skips), start=1))):
        x = layers.Conv2DTranspose(scaled(filters, cfg), 2, strides=2, name=f"up{level}_transpose",
                                   **conv_kwargs(cfg))(x)
        x = crop_to(x, *skip.shape[1:3], name=f"up{level}_crop")
        x = layers.Concatenate(name=f"up{level}_concat")([skip, x])
        x = _double_conv(x, scaled(filters, cfg), cfg, f"up{level}")
    return pixel_predictions(layers.Conv2D(classes, 1, name="score", **conv_kwargs(cfg))(x))


def _double_conv(x, filters, cfg, name):
    for c in (1, 2):
        x = conv_bn_act(x, filters, 3, cfg, f"{name}_conv{c}", conv_suffix="")
    return x
