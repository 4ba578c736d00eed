"""From a DataConfig to tf.data pipelines: split, fit images to the input shape, augment, batch.

Images flow as float32 pixels in 0..255; scaling is the model's first layer
(`cnnlab.data.scaling`). Labels flow one-hot, which label smoothing, mixup and
cutmix need.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cnnlab.data.sources import Examples, load_raw
from cnnlab.errors import DataError

COLOR_CHANNELS = {"grayscale": 1, "rgb": 3}


@dataclass
class DataBundle:
    """The splits of one experiment's data and how to turn them into pipelines."""

    train: Examples
    val: Optional[Examples]
    test: Optional[Examples]
    class_names: list
    input_shape: tuple
    batch_size: int
    seed: int
    augmentation: object = None  # an AugmentationConfig, or None for no augmentation
    skipped: tuple = ()
    _stats: dict = field(default=None, repr=False)

    @property
    def classes(self):
        return len(self.class_names)

    def split(self, name):
        """The `Examples` of ``train``, ``val`` or ``test``."""
        examples = getattr(self, name)
        if examples is None:
            key = {"val": "data.validation_split", "test": "data.test_split or data.test_path"}.get(name, name)
            raise DataError(f"the data has no {name} split: set {key}.")
        return examples

    def dataset(self, name, *, training=False, repeat=False, outputs=1):
        """A batched pipeline over split `name`; ``training`` shuffles and augments.

        ``outputs`` > 1 repeats the labels for a model with auxiliary outputs.
        """
        from cnnlab.data.augment import augmenter

        examples = self.split(name)
        augment = augmenter(self.augmentation, self.input_shape, self.classes, self.seed) if training else None
        if augment is not None and augment.feeds_fit:
            return augment.sequence(examples, self, outputs=outputs)
        ds = make_dataset(examples, self.input_shape, self.batch_size, shuffle=training, seed=self.seed)
        return finish(ds, self.classes, augment=augment, repeat=repeat, outputs=outputs)

    def channel_stats(self):
        """Per-channel mean and variance of the (un-augmented) training images."""
        from cnnlab.data.scaling import channel_stats

        if self._stats is None:
            ds = make_dataset(self.train, self.input_shape, self.batch_size, shuffle=False, seed=self.seed)
            self._stats = channel_stats(x.numpy() for x, _ in ds)
        return self._stats


def load_data(cfg):
    """Load, split and describe the data of an `ExperimentConfig`.

    Sources without a test split give one of ``data.test_split``; the validation
    split is carved from the training data. Both are stratified and seeded.
    """
    data = cfg.data
    raw = load_raw(data)
    train, test = raw.train, raw.test
    if test is None and data.test_split > 0:
        train, test = stratified_split(train, data.test_split, cfg.seed, "data.test_split", raw.class_names)
    val = None
    if data.validation_split > 0:
        train, val = stratified_split(train, data.validation_split, cfg.seed, "data.validation_split",
                                      raw.class_names)
    return DataBundle(train=train, val=val, test=test, class_names=list(raw.class_names),
                      input_shape=input_shape(raw.image_shape, data), batch_size=data.batch_size,
                      seed=cfg.seed, augmentation=cfg.augmentation, skipped=raw.skipped)


def describe_data(cfg):
    """``(input_shape, classes)`` of an experiment's data, without downloading Keras's datasets."""
    from cnnlab.data.sources import SOURCES

    meta = SOURCES.get(cfg.data.dataset).meta
    if "shape" in meta:
        return input_shape(meta["shape"], cfg.data), meta["classes"]
    raw = load_raw(cfg.data)
    return input_shape(raw.image_shape, cfg.data), len(raw.class_names)


def input_shape(image_shape, data):
    """``(H, W, C)`` the model sees: the data's own, or ``image_size`` and ``color_mode``."""
    h, w, c = image_shape
    if data.image_size:
        h, w = data.image_size
    if data.color_mode:
        c = COLOR_CHANNELS[data.color_mode]
    return (int(h), int(w), int(c))


def stratified_split(examples, fraction, seed, key, class_names):
    """Split off `fraction` of `examples`, class by class, reproducibly for `seed`."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(examples.labels, minlength=len(class_names))
    present = counts[counts > 0]
    if present.min() < 2:
        rare = [class_names[i] for i in np.flatnonzero(counts == 1)][:5]
        raise DataError(f"class(es) {', '.join(map(str, rare))} have a single image: {key} needs at least "
                        "2 images in every class (add images, or remove the class).")
    held = int(np.ceil(fraction * len(examples)))
    if held < len(present) or len(examples) - held < len(present):
        raise DataError(f"{key} {fraction} of {len(examples)} images leaves fewer images than the "
                        f"{len(present)} classes on one side: the split needs at least one image per class "
                        "on each side. Change the fraction or add images.")
    index = np.arange(len(examples))
    keep, held_out = train_test_split(index, test_size=held, stratify=examples.labels, random_state=seed)
    return examples.take(np.sort(keep)), examples.take(np.sort(held_out))


def make_dataset(examples, shape, batch_size, *, shuffle, seed):
    """Batches of ``(images float32 0..255 shaped (B, *shape), integer labels)``."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    if examples.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((examples.images, examples.labels))
        if shuffle:
            ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).map(lambda x, y: (fit_images(x, shape), y), num_parallel_calls=autotune)
    ds = tf.data.Dataset.from_tensor_slices((examples.paths, examples.labels))
    if shuffle:
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda p, y: (fit_images(decode_image(p), shape), y), num_parallel_calls=autotune)
    return ds.batch(batch_size)


def decode_image(path):
    """Read and decode one jpg/png/bmp/gif file to an RGB uint8 tensor (first frame of a gif)."""
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def fit_images(images, shape):
    """Cast to float32 and bring an image or a batch to ``(H, W, C)`` = `shape`."""
    import tensorflow as tf

    h, w, c = shape
    x = tf.cast(images, tf.float32)
    if x.shape[-1] != c:
        x = tf.image.rgb_to_grayscale(x) if c == 1 else tf.image.grayscale_to_rgb(x)
    if tuple(x.shape[-3:-1]) != (h, w):
        x = tf.image.resize(x, (h, w))
    return x


def finish(ds, classes, *, augment=None, repeat=False, outputs=1):
    """Augment (training batches only), one-hot the labels, prefetch."""
    import tensorflow as tf

    ds = ds.map(lambda x, y: (x, tf.one_hot(y, classes)), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    if outputs > 1:
        ds = ds.map(lambda x, y: (x, (y,) * outputs))
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)
