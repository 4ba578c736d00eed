"""Augmentation engines behind ImageDataGenerator's keyword names.

``layers``: Keras preprocessing layers mapped over training batches in tf.data,
with rotation, shifts, shear and zoom composed into one affine transform.
``generator``: the real ``ImageDataGenerator`` (``.flow`` over arrays and
``.flow_from_dataframe`` over an image folder's files), fed straight to ``fit``.
Both read the same `AugmentationConfig`; augmentation touches training data only.
Where labels are images too (segmentation's masks), the ``layers`` engine moves
each mask with its image: the same draws, nearest-neighbour resampling, and
``data.ignore_index`` where a transform brings in pixels from outside the image;
colour keys change the image alone.
"""

import math
from contextlib import contextmanager

from cnnlab.keras_private import flatten_layers, generator_batch
from cnnlab.precision import float32_policy
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


def augmenter(cfg, shape, classes, seed, masks=None):
    """The engine's augmenter for training batches, or None when nothing is enabled.

    `masks`: None when the labels are not images; else the labels are masks, moved with their images,
    and `masks` is the value of a mask's pixels brought in from outside (``data.ignore_index``).
    """
    if not is_active(cfg):
        return None
    return ENGINES.get(cfg.engine).fn(cfg, shape, classes, seed, masks=masks)


def _shift_fraction(value, size):
    """ImageDataGenerator reads a shift < 1 as a fraction of the size and >= 1 as pixels."""
    return value if value < 1 else value / size


def _zoom_bounds(zoom):
    low, high = (1 - zoom, 1 + zoom) if isinstance(zoom, (int, float)) else zoom
    return low, high


def _batch_seeds_class():
    """`BatchSeeds`, a class made on first use, so that importing this module needs no Keras."""
    import keras

    class BatchSeeds(keras.random.SeedGenerator):
        """The seeds of one batch's random draws: a pure function of the batch's key.

        Keras's preprocessing layers draw from a `SeedGenerator`, a variable each
        draw advances; in a parallel tf.data map the batches race for it and two
        runs differ. This one is handed to every layer instead: inside `keyed`
        (while tf.data traces the augmentation) its n-th draw is the key folded
        with n, so the graph's random ops are stateless and each batch's
        randomness depends on its key alone.
        """

        def __init__(self, seed):
            super().__init__(seed)  # the unused state variable keeps Keras's layer tracking content
            self._key, self._draws = None, 0

        @contextmanager
        def keyed(self, key):
            self._key, self._draws = key, 0
            try:
                yield self
            finally:
                self._key = None

        def next(self, ordered=True):
            import tensorflow as tf

            if self._key is None:
                raise RuntimeError("BatchSeeds draws only inside keyed(key).")
            self._draws += 1
            return tf.random.experimental.stateless_fold_in(self._key, self._draws)

    return BatchSeeds


@ENGINES.register("layers")
class LayersAugmenter:
    """Keras preprocessing layers over batches of ``(images 0..255, one-hot labels, random key)``."""

    feeds_fit = False

    def __init__(self, cfg, shape, classes, seed, masks=None):
        self.cfg, self.shape, self.seed, self.masks = cfg, shape, seed, masks
        self.seeds = _batch_seeds_class()(seed)
        with float32_policy():
            self.geometric = self._geometric()
            self.photometric = self._photometric()
            self.mixing = self._mixing()

    def _keyed(self, layer):
        """`layer`, and the layers it holds, drawing from the batch's key."""
        for inner in flatten_layers(layer):
            if hasattr(inner, "generator"):
                inner.generator = self.seeds
        return layer

    def _geometric(self):
        from keras import layers

        cfg, (h, w, _), seed = self.cfg, self.shape, self.seed
        out = []
        if cfg.crop_padding:
            # Zero-padding by p and a random crop back is a shift by a whole number of pixels in
            # [-p, p] with zeros coming in; RandomTranslation draws one per image (RandomCrop one per batch).
            p = cfg.crop_padding
            out.append(layers.RandomTranslation(p / h, p / w, fill_mode="constant", fill_value=0.0,
                                                interpolation="nearest", seed=seed))
        flips = {(True, False): "horizontal", (False, True): "vertical", (True, True): "horizontal_and_vertical"}
        mode = flips.get((cfg.horizontal_flip, cfg.vertical_flip))
        if mode:
            out.append(layers.RandomFlip(mode, seed=seed))
        if cfg.rand_augment is not None:
            out.append(layers.RandAugment(value_range=(0, 255), seed=seed, **cfg.rand_augment))
        if cfg.random_erasing:
            out.append(layers.RandomErasing(factor=cfg.random_erasing, value_range=(0, 255), seed=seed))
        return [self._keyed(layer) for layer in out]

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
        return [self._keyed(layer) for layer in out]

    def _mixing(self):
        from keras import layers

        cfg, seed = self.cfg, self.seed
        out = []
        if cfg.mixup_alpha:
            out.append(layers.MixUp(alpha=cfg.mixup_alpha, seed=seed))
        if cfg.cutmix_alpha:
            out.append(layers.CutMix(factor=cfg.cutmix_alpha, seed=seed))
        return [self._keyed(layer) for layer in out]

    def __call__(self, images, labels, key):
        """Augment one batch; its randomness is a function of `key` (int64, shape [2]) alone."""
        if self.masks is not None:
            return self._with_masks(images, labels, key)
        with self.seeds.keyed(key):
            x = images
            x = self._affine(x)
            for layer in self.geometric:
                x = layer(x, training=True)
            x = self._scale_and_shift(x)
            for layer in self.photometric:
                x = layer(x, training=True)
            x = self._clip(x)
            for layer in self.mixing:
                out = layer({"images": x, "labels": labels}, training=True)
                x, labels = out["images"], out["labels"]
        return x, labels

    def _with_masks(self, images, masks, key):
        """Augment a batch of images and their masks ``(B, H, W)``: geometric keys move both alike, colour
        keys the images alone (the config refuses mixing for masks)."""
        import tensorflow as tf

        with self.seeds.keyed(key):
            m = tf.cast(masks, tf.float32)[..., tf.newaxis]
            x, m = self._affine(images, m)
            for layer in self.geometric:
                out = layer({"images": x, "segmentation_masks": m}, training=True)
                x, m = out["images"], out["segmentation_masks"]
            x = self._scale_and_shift(x)
            for layer in self.photometric:
                x = layer(x, training=True)
            x = self._clip(x)
        return x, tf.cast(tf.round(m[..., 0]), masks.dtype)

    def _affine(self, x, masks=None):
        """Rotation, shifts, shear and zoom drawn per image as ImageDataGenerator draws them, then one resampling.

        Keras has one layer per transform, and each resamples the whole batch: on a CPU
        the resampling is most of augmentation's cost (BENCHMARKS.md). So the draws
        become one matrix per image (`affine_transforms`) and TensorFlow's projective
        transform (what `keras.ops.image.affine_transform` calls) resamples each image once.
        """
        import tensorflow as tf

        cfg, (h, w, _) = self.cfg, self.shape
        n = tf.shape(x)[:1]

        def uniform(low, high):
            return tf.random.stateless_uniform(n, self.seeds.next(), low, high)

        draws = {}
        if cfg.rotation_range:
            draws["theta"] = uniform(-cfg.rotation_range, cfg.rotation_range)
        if cfg.width_shift_range or cfg.height_shift_range:
            dx, dy = _shift_fraction(cfg.width_shift_range, w) * w, _shift_fraction(cfg.height_shift_range, h) * h
            draws["dx"], draws["dy"] = uniform(-dx, dx), uniform(-dy, dy)
        if cfg.shear_range:
            draws["shear"] = uniform(-cfg.shear_range, cfg.shear_range)
        if cfg.zoom_range:
            low, high = _zoom_bounds(cfg.zoom_range)
            draws["zx"], draws["zy"] = uniform(low, high), uniform(low, high)
        if not draws:
            return x if masks is None else (x, masks)
        transforms = affine_transforms(h, w, **draws)

        def resample(images, fill_value, interpolation):
            # The op `keras.ops.image.affine_transform` runs on TensorFlow, called directly: tf.data runs
            # TensorFlow whatever Keras's backend (under JAX, keras.ops would be JAX's).
            out = tf.raw_ops.ImageProjectiveTransformV3(
                images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
                fill_value=float(fill_value), interpolation=interpolation, fill_mode=cfg.fill_mode.upper())
            return tf.ensure_shape(out, images.shape)

        x = resample(x, cfg.cval, "BILINEAR")
        return x if masks is None else (x, resample(masks, self.masks, "NEAREST"))

    def _scale_and_shift(self, x):
        """ImageDataGenerator's brightness (a multiplier) and channel shift (one intensity added to every channel)."""
        import tensorflow as tf

        per_image = tf.stack([tf.shape(x)[0], 1, 1, 1])
        if self.cfg.brightness_range:
            low, high = self.cfg.brightness_range
            x = x * tf.random.stateless_uniform(per_image, self.seeds.next(), low, high)
        if self.cfg.channel_shift_range:
            r = self.cfg.channel_shift_range
            x = x + tf.random.stateless_uniform(per_image, self.seeds.next(), -r, r)
        return x

    @staticmethod
    def _clip(x):
        import tensorflow as tf

        return tf.clip_by_value(x, 0.0, 255.0)


def affine_transforms(height, width, theta=None, dx=None, dy=None, shear=None, zx=None, zy=None):
    """Per-image ``[a0, a1, a2, b0, b1, b2, 0, 0]`` for `keras.ops.image.affine_transform`.

    ImageDataGenerator's ``apply_affine_transform`` for a batch: rotation by `theta`
    degrees, a shift by (`dx`, `dy`) pixels (columns, rows), a shear of `shear`
    degrees and a zoom by (`zx`, `zy`), composed in that order about the image's
    centre; each argument is a float32 tensor of one value per image, or None for
    none of that transform. The matrix maps an output pixel to the input pixel it
    samples, as Keras's transform does. (ImageDataGenerator takes the centre's x
    from the height; here it is the width's, which only differs off the square.)
    """
    import tensorflow as tf

    given = next(v for v in (theta, dx, dy, shear, zx, zy) if v is not None)
    zero, one = tf.zeros_like(given), tf.ones_like(given)

    def matrices(a, b, c, d, e, f):  # per image [[a, b, c], [d, e, f], [0, 0, 1]]
        return tf.reshape(tf.stack([a, b, c, d, e, f, zero, zero, one], axis=-1), (-1, 3, 3))

    cx, cy = (width - 1) / 2, (height - 1) / 2
    transform = matrices(one, zero, cx * one, zero, one, cy * one)
    if theta is not None:
        t = theta * (math.pi / 180)
        transform @= matrices(tf.cos(t), -tf.sin(t), zero, tf.sin(t), tf.cos(t), zero)
    if dx is not None or dy is not None:
        transform @= matrices(one, zero, zero if dx is None else dx, zero, one, zero if dy is None else dy)
    if shear is not None:
        s = shear * (math.pi / 180)
        transform @= matrices(one, -tf.sin(s), zero, zero, tf.cos(s), zero)
    if zx is not None or zy is not None:
        transform @= matrices(one if zx is None else zx, zero, zero, zero, one if zy is None else zy, zero)
    transform @= matrices(one, zero, -cx * one, zero, one, -cy * one)
    return tf.reshape(transform, (-1, 9))[:, :8]


def _jitter(bounds):
    """A [low, high] multiplier range as RandomColorJitter's saturation factor (0.5 = unchanged)."""
    low, high = bounds
    return (min(max(low / 2, 0.0), 1.0), min(max(high / 2, 0.0), 1.0))


def _pixels(value, size):
    """A shift as pixels (ImageDataGenerator reads values >= 1 as pixels)."""
    pixels = value if value >= 1 else value * size
    return pixels if pixels >= 1 else value


def _generator_kwargs(cfg, shape):
    """ImageDataGenerator's own keyword arguments, taken from the config by name.

    Keras's ImageDataGenerator moves images vertically for ``width_shift_range``
    and horizontally for ``height_shift_range`` (tensorflow/tensorflow#82838,
    keras-team/keras#17398). The shifts are handed over swapped, in pixels, so
    that both engines move images the way the keys say.
    """
    h, w = shape[:2]
    return {"rotation_range": cfg.rotation_range, "width_shift_range": _pixels(cfg.height_shift_range, h),
            "height_shift_range": _pixels(cfg.width_shift_range, w), "zoom_range": cfg.zoom_range,
            "shear_range": cfg.shear_range, "horizontal_flip": cfg.horizontal_flip,
            "vertical_flip": cfg.vertical_flip, "brightness_range": cfg.brightness_range,
            "channel_shift_range": cfg.channel_shift_range, "fill_mode": cfg.fill_mode, "cval": cfg.cval}


@ENGINES.register("generator")
class GeneratorAugmenter:
    """The real ``ImageDataGenerator``: ``.flow`` over arrays, ``.flow_from_dataframe`` over a
    folder's files (the file list of the stratified split), fed straight to ``fit``.

    ``crop_padding``, ``contrast_range`` and ``saturation_range`` run in its
    ``preprocessing_function``; hue, erasing, mixup, cutmix and RandAugment need
    the ``layers`` engine.
    """

    feeds_fit = True

    def __init__(self, cfg, shape, classes, seed, masks=None):
        import numpy as np
        import tensorflow as tf

        from cnnlab.errors import ConfigError

        if cfg.hue_delta:
            raise ConfigError("augmentation.hue_delta needs augmentation.engine: layers.")
        self.cfg, self.shape, self.classes, self.seed = cfg, shape, classes, seed
        self.rng = np.random.default_rng(seed)
        self.generator = tf.keras.preprocessing.image.ImageDataGenerator(
            **_generator_kwargs(cfg, shape), preprocessing_function=self._extra if self._has_extra() else None)

    def _has_extra(self):
        return bool(self.cfg.crop_padding or self.cfg.contrast_range or self.cfg.saturation_range)

    def _extra(self, image):
        """Pad-and-crop, contrast and saturation on one HxWxC float image (0..255)."""
        import numpy as np

        cfg, rng = self.cfg, self.rng
        if cfg.crop_padding:
            p = cfg.crop_padding
            padded = np.pad(image, ((p, p), (p, p), (0, 0)))
            top, left = rng.integers(0, 2 * p + 1, size=2)
            image = padded[top:top + image.shape[0], left:left + image.shape[1]]
        if cfg.contrast_range:
            mean = image.mean(axis=(0, 1), keepdims=True)
            image = (image - mean) * rng.uniform(*cfg.contrast_range) + mean
        if cfg.saturation_range and image.shape[-1] == 3:
            gray = image @ np.array([0.299, 0.587, 0.114], dtype=image.dtype)
            image = gray[..., None] + (image - gray[..., None]) * rng.uniform(*cfg.saturation_range)
        return np.clip(image, 0, 255)

    def augment_images(self, images):
        """Augment a batch of images (numpy, 0..255), one random transformation each."""
        import numpy as np

        out = np.array(images, dtype="float32", copy=True)
        for i in range(len(out)):
            out[i] = self.generator.standardize(self.generator.random_transform(out[i]))
        return out

    def epoch_sequence(self, examples, data, *, first, count, outputs=1):
        """Batches ``first .. first + count - 1`` of the gapless stream of passes, as a ``PyDataset``.

        Pass ``p`` is shuffled by ``(seed, p)`` and its batch ``b`` augmented by
        ``(seed, p, b)`` (NumPy's global generator is seeded before each batch, as
        ImageDataGenerator draws from it), so batch ``i`` is the same in every
        process: resumable, and reproducible while `fit` reads it in order (one
        worker, Keras's default).
        """
        return _epoch_batches_class()(self, self._flow(examples, data), len(examples),
                                      data.batch_size, first=first, count=count, outputs=outputs)

    def _flow(self, examples, data):
        import numpy as np

        if examples.paths is not None:
            return self._flow_files(examples, data)
        from cnnlab.data.ops import fit_images

        x = np.concatenate([fit_images(examples.images[i:i + 4096], self.shape).numpy()
                            for i in range(0, len(examples), 4096)])
        y = np.eye(self.classes, dtype="float32")[examples.labels]
        return self.generator.flow(x, y, batch_size=data.batch_size, shuffle=False, seed=self.seed)

    def _flow_files(self, examples, data):
        import pandas as pd

        frame = pd.DataFrame({"filename": examples.paths,
                              "class": [data.class_names[i] for i in examples.labels]})
        return self.generator.flow_from_dataframe(
            frame, x_col="filename", y_col="class", classes=list(data.class_names), class_mode="categorical",
            target_size=self.shape[:2], color_mode="grayscale" if self.shape[-1] == 1 else "rgb",
            batch_size=data.batch_size, shuffle=False, seed=self.seed, interpolation="bilinear",
            validate_filenames=False)

    def seed_batch(self, number, batch):
        """Seed the draws of batch `batch` of pass `number`: NumPy's global generator and `_extra`'s."""
        import numpy as np

        from cnnlab.data.streams import AUGMENT_STREAM

        state = np.random.SeedSequence([self.seed % 2**32, AUGMENT_STREAM, number, batch])
        np.random.seed(state.generate_state(1)[0])
        self.rng = np.random.default_rng(state)


def _epoch_batches_class():
    import keras

    class EpochBatches(keras.utils.PyDataset):
        """Item ``i``: batch ``first + i`` of the stream of passes, drawn through an ImageDataGenerator iterator."""

        def __init__(self, augment, flow, n, batch_size, *, first, count, outputs):
            super().__init__()
            self.augment, self.flow, self.n, self.batch_size = augment, flow, n, batch_size
            self.first, self.count, self.outputs = first, count, outputs
            self.per_pass = math.ceil(n / batch_size)
            self._orders = {}

        @property
        def num_batches(self):
            return self.count  # None: no end

        def __len__(self):
            return self.count

        def __getitem__(self, index):
            number, batch = divmod(self.first + index, self.per_pass)
            rows = self._order(number)[batch * self.batch_size:(batch + 1) * self.batch_size]
            self.augment.seed_batch(number, batch)
            # ImageDataGenerator's iterators turn given rows into a batch (the method its own indexing uses).
            x, y = generator_batch(self.flow, rows)
            return x, (y if self.outputs == 1 else (y,) * self.outputs)

        def _order(self, number):
            import numpy as np

            from cnnlab.data.streams import SHUFFLE_STREAM

            if number not in self._orders:
                self._orders = {number: np.random.default_rng(
                    [self.augment.seed % 2**32, SHUFFLE_STREAM, number]).permutation(self.n)}
            return self._orders[number]

    return EpochBatches


def augment_images(cfg, images, shape, classes, seed):
    """Apply an engine's augmentation to a batch of images (0..255); for previews and tests."""
    import numpy as np

    augment = augmenter(cfg, shape, classes, seed)
    if augment is None:
        return np.asarray(images, dtype="float32")
    if augment.feeds_fit:
        return augment.augment_images(images)
    from cnnlab.data.streams import AUGMENT_STREAM, random_key

    labels = np.eye(classes, dtype="float32")[np.zeros(len(images), dtype=int)]
    out, _ = augment(np.asarray(images, dtype="float32"), labels, random_key(seed, AUGMENT_STREAM, 0, 0))
    return np.asarray(out)
