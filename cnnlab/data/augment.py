"""Augmentation engines behind ImageDataGenerator's keyword names.

``layers``: Keras preprocessing layers mapped over training batches in tf.data.
``generator``: the real ``ImageDataGenerator`` (``.flow`` over arrays and
``.flow_from_dataframe`` over an image folder's files), fed straight to ``fit``.
Both read the same `AugmentationConfig`; augmentation touches training data only.
"""

from cnnlab.registry import Registry

ENGINES = Registry("augmentation.engine")

# Keys that leave images untouched at their defaults.
IDENTITY = {"rotation_range": 0.0, "width_shift_range": 0.0, "height_shift_range": 0.0, "zoom_range": 0.0,
            "shear_range": 0.0, "horizontal_flip": False, "vertical_flip": False, "brightness_range": None,
            "contrast_range": None, "saturation_range": None, "hue_delta": 0.0, "channel_shift_range": 0.0,
            "crop_padding": 0, "random_erasing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
            "rand_augment": None}


def is_active(cfg):
    """Whether an AugmentationConfig changes any image."""
    return cfg is not None and any(getattr(cfg, k) != v for k, v in IDENTITY.items())


def augmenter(cfg, shape, classes, seed):
    """The engine's augmenter for training batches, or None when nothing is enabled."""
    if not is_active(cfg):
        return None
    return ENGINES.get(cfg.engine).fn(cfg, shape, classes, seed)


def _shift_fraction(value, size):
    """ImageDataGenerator reads a shift < 1 as a fraction of the size and >= 1 as pixels."""
    return value if value < 1 else value / size


def _zoom_bounds(zoom):
    low, high = (1 - zoom, 1 + zoom) if isinstance(zoom, (int, float)) else zoom
    return low, high


@ENGINES.register("layers")
class LayersAugmenter:
    """Keras preprocessing layers over batches of ``(images 0..255, one-hot labels)``."""

    feeds_fit = False

    def __init__(self, cfg, shape, classes, seed):
        self.cfg, self.shape, self.seed = cfg, shape, seed
        self.geometric = self._geometric()
        self.photometric = self._photometric()
        self.mixing = self._mixing()

    def _geometric(self):
        from keras import layers

        cfg, (h, w, _), seed = self.cfg, self.shape, self.seed
        fill = {"fill_mode": cfg.fill_mode, "fill_value": cfg.cval, "seed": seed}
        out = []
        if cfg.crop_padding:
            out += [layers.ZeroPadding2D(cfg.crop_padding), layers.RandomCrop(h, w, seed=seed)]
        if cfg.rotation_range:
            out.append(layers.RandomRotation(cfg.rotation_range / 360.0, **fill))
        if cfg.width_shift_range or cfg.height_shift_range:
            out.append(layers.RandomTranslation(_shift_fraction(cfg.height_shift_range, h),
                                                _shift_fraction(cfg.width_shift_range, w), **fill))
        if cfg.shear_range:
            # ImageDataGenerator shears by an angle in degrees; RandomShear by tan(angle).
            import math

            out.append(layers.RandomShear(x_factor=math.tan(math.radians(cfg.shear_range)), **fill))
        if cfg.zoom_range:
            low, high = _zoom_bounds(cfg.zoom_range)
            # RandomZoom's factor f scales the view by 1 + f, as ImageDataGenerator's zoom does.
            out.append(layers.RandomZoom((low - 1, high - 1), (low - 1, high - 1), **fill))
        flips = {(True, False): "horizontal", (False, True): "vertical", (True, True): "horizontal_and_vertical"}
        mode = flips.get((cfg.horizontal_flip, cfg.vertical_flip))
        if mode:
            out.append(layers.RandomFlip(mode, seed=seed))
        if cfg.rand_augment is not None:
            out.append(layers.RandAugment(value_range=(0, 255), seed=seed, **cfg.rand_augment))
        if cfg.random_erasing:
            out.append(layers.RandomErasing(factor=cfg.random_erasing, value_range=(0, 255), seed=seed))
        return out

    def _photometric(self):
        from keras import layers

        cfg, seed = self.cfg, self.seed
        out = []
        if cfg.contrast_range:
            low, high = cfg.contrast_range
            out.append(layers.RandomContrast((1 - low, high - 1), value_range=(0, 255), seed=seed))
        if cfg.saturation_range and self.shape[-1] == 3:
            out.append(layers.RandomColorJitter(value_range=(0, 255), saturation_factor=_jitter(cfg.saturation_range),
                                                seed=seed))
        if cfg.hue_delta and self.shape[-1] == 3:
            out.append(layers.RandomHue(cfg.hue_delta * 2, value_range=(0, 255), seed=seed))
        return out

    def _mixing(self):
        from keras import layers

        cfg, seed = self.cfg, self.seed
        out = []
        if cfg.mixup_alpha:
            out.append(layers.MixUp(alpha=cfg.mixup_alpha, seed=seed))
        if cfg.cutmix_alpha:
            out.append(layers.CutMix(factor=cfg.cutmix_alpha, seed=seed))
        return out

    def __call__(self, images, labels):
        import tensorflow as tf

        x = images
        for layer in self.geometric:
            x = layer(x, training=True)
        if self.cfg.brightness_range:
            low, high = self.cfg.brightness_range  # multiplicative, as ImageDataGenerator's
            x = x * tf.random.uniform([tf.shape(x)[0], 1, 1, 1], low, high)
        if self.cfg.channel_shift_range:
            r = self.cfg.channel_shift_range  # one intensity added to every channel, as ImageDataGenerator's
            x = x + tf.random.uniform([tf.shape(x)[0], 1, 1, 1], -r, r)
        for layer in self.photometric:
            x = layer(x, training=True)
        x = tf.clip_by_value(x, 0.0, 255.0)
        for layer in self.mixing:
            out = layer({"images": x, "labels": labels}, training=True)
            x, labels = out["images"], out["labels"]
        return x, labels


def _jitter(bounds):
    """A [low, high] multiplier range as RandomColorJitter's saturation factor (0.5 = unchanged)."""
    low, high = bounds
    return (min(max(low / 2, 0.0), 1.0), min(max(high / 2, 0.0), 1.0))
