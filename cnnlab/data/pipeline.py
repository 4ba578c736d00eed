"""From a DataConfig to tf.data pipelines: split, fit images to the input shape, augment, batch.

Images flow as float32 pixels in 0..255; scaling is the model's first layer
(`cnnlab.data.scaling`). Labels flow one-hot, which label smoothing, mixup and
cutmix need.

Training batches are a pure function of the seed: pass ``p`` over the data is
shuffled by ``(seed, p)`` and its batch ``b`` augmented by ``(seed, p, b)``, with
TensorFlow's stateless random ops, so a parallel map stays reproducible and a
resumed run sees the batches an uninterrupted one would.
"""

import math
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

    def dataset(self, name, *, training=False, outputs=1, batch_size=None):
        """A batched pipeline over split `name`; ``training``: the training batches of one epoch.

        ``outputs`` > 1 repeats the labels for a model with auxiliary outputs. To fit,
        use `train_dataset`, which spans the epochs fit asks for. ``batch_size``: other
        than the experiment's, for predictions (not with ``training``).
        """
        if training:
            return self.train_dataset(epochs=1, outputs=outputs)
        examples = self.split(name)
        ds = make_dataset(examples, self.input_shape, batch_size or self.batch_size)
        return labelled(ds.map(plain(lambda x, y: (x, one_hot(y, self.classes)))), outputs)

    def validation_dataset(self, outputs=1):
        """The validation batches `model.fit` scores; with several workers, each loads its shard of every batch."""
        import tensorflow as tf

        from cnnlab.distribution import current, shard

        if current().workers == 1:
            return self.dataset("val", outputs=outputs)
        examples = self.split("val")
        load = batch_loader(examples, self.input_shape)

        def weighted(index):  # the top-up copies of a short batch weigh 0: each example is scored once
            mine, weights = shard(index, weights=True)
            x, y = load(mine)
            return x, one_hot(y, self.classes), weights

        ds = tf.data.Dataset.range(len(examples)).batch(self.batch_size)
        ds = ds.map(plain(weighted), num_parallel_calls=tf.data.AUTOTUNE)
        if outputs > 1:
            ds = ds.map(plain(lambda x, y, w: (x, (y,) * outputs, (w,) * outputs)))
        return prefetched(ds)

    def steps_per_epoch(self, steps=None):
        """`steps` (``training.steps_per_epoch``), or the batches of one pass over the training split."""
        return steps or batches_per_pass(len(self.train), self.batch_size)

    def train_dataset(self, *, initial_epoch=0, epochs=None, steps_per_epoch=None, outputs=1):
        """The training batches of epochs ``initial_epoch .. epochs - 1``, each fixed by the seed and its place.

        Passes over the training split follow each other without gaps; epoch ``e``
        is batches ``e * steps .. (e + 1) * steps - 1`` of that stream. So a run
        resumed at ``initial_epoch`` in a new process sees the batches (order and
        augmentation) of one that never stopped. Give `model.fit` the same
        ``initial_epoch`` and ``steps_per_epoch=bundle.steps_per_epoch(steps_per_epoch)``:
        it then keeps one iterator over all the epochs.

        Args:
            initial_epoch: the first epoch to yield (0-based, as `model.fit`'s).
            epochs: the epoch to stop before, or None for no end.
            steps_per_epoch: batches per epoch; default one pass over the training split.
            outputs: how many times each batch's labels are repeated (auxiliary outputs).

        Returns:
            A ``tf.data.Dataset`` of ``(images, one-hot labels)``; for the ``generator``
            engine a ``keras.utils.PyDataset`` of the same batches' kind.
        """
        steps = self.steps_per_epoch(steps_per_epoch)
        first = initial_epoch * steps
        count = None if epochs is None else max(epochs - initial_epoch, 0) * steps
        augment = self._augmenter()
        if augment is not None and augment.feeds_fit:
            return augment.epoch_sequence(self.train, self, first=first, count=count, outputs=outputs)
        stream = epoch_stream(len(self.train), self.batch_size, self.seed, first, count)
        return self._training_batches(self.train, stream, augment, outputs)

    def _augmenter(self):
        from cnnlab.data.augment import augmenter

        return augmenter(self.augmentation, self.input_shape, self.classes, self.seed)

    def _training_batches(self, examples, stream, augment, outputs):
        """Load, one-hot and augment the ``(example indices, random key)`` batches of `stream`.

        With several workers each loads its shard of every batch (`cnnlab.distribution.shard`)
        and folds its number into the key, so the workers' shards are augmented independently.
        """
        import tensorflow as tf

        from cnnlab.distribution import current, shard

        load = batch_loader(examples, self.input_shape)
        worker = current()
        if worker.workers > 1:
            stream = stream.map(plain(lambda index, key: (
                shard(index), tf.random.experimental.stateless_fold_in(key, worker.process_id))))
        ds = stream.map(plain(lambda index, key: (*load(index), key)), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(plain(lambda x, y, key: (x, one_hot(y, self.classes), key)))
        # The augmentation's randomness comes from each batch's key, so its parallel map is reproducible.
        ds = ds.map(plain(augment or (lambda x, y, key: (x, y))), num_parallel_calls=tf.data.AUTOTUNE)
        return labelled(ds, outputs)

    def channel_stats(self):
        """Per-channel mean and variance of the (un-augmented) training images."""
        from cnnlab.data.scaling import channel_stats

        if self._stats is None:
            ds = make_dataset(self.train, self.input_shape, self.batch_size)
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


def make_dataset(examples, shape, batch_size):
    """Batches of ``(images float32 0..255 shaped (B, *shape), integer labels)``, in order."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    if examples.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((examples.images, examples.labels))
        return untuned(ds.batch(batch_size).map(plain(lambda x, y: (fit_images(x, shape), y)),
                                                num_parallel_calls=autotune))
    ds = tf.data.Dataset.from_tensor_slices((examples.paths, examples.labels))
    ds = ds.map(plain(lambda p, y: (fit_images(decode_image(p), shape), y)), num_parallel_calls=autotune)
    return untuned(ds.batch(batch_size))


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


def one_hot(labels, classes):
    import tensorflow as tf

    return tf.one_hot(labels, classes)


def labelled(ds, outputs=1):
    """Repeat the labels for a model with `outputs` outputs (auxiliary classifiers), prefetch."""
    if outputs > 1:
        ds = ds.map(plain(lambda x, y: (x, (y,) * outputs)))
    return prefetched(ds)


def plain(fn):
    """`fn` as tf.data traces it, without AutoGraph's rewrite of it and of what it calls.

    cnnlab's pipeline functions hold no Python ``if`` or loop over tensors (what AutoGraph
    rewrites), and rewriting the dozen of them cost about a second at every start (issue 20).
    """
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)


def prefetched(ds):
    """`ds` prefetched, autotuning off (`untuned`): how the pipelines cnnlab hands to Keras end."""
    import tensorflow as tf

    return untuned(ds.prefetch(tf.data.AUTOTUNE))


def untuned(ds):
    """`ds` with tf.data's autotuning thread off: every tf.data pipeline cnnlab builds.

    TensorFlow (checked on 2.21) can lose the wake-up of that thread (``Model::OptimizeLoop``)
    when an iterator is destroyed: the iterator's CancellationManager runs the callback that
    wakes it *before* it marks itself cancelled, so a thread woken in between finds
    ``IsCancelled()`` false and sleeps out the rest of its optimisation period, which doubles
    up to a minute, while the destructor waits for it. After ``fit``'s last epoch that was a
    stall of up to 25 s in half the runs of 3 epochs (issue 20). With autotuning off no such
    thread starts; ``AUTOTUNE`` parallelism then is one call per core (at most 16), what the
    tuner chose on its own, and ``prefetch(AUTOTUNE)`` keeps its own buffer tuner. (The
    ``generator`` augmentation engine feeds Keras a ``PyDataset``, whose adapter builds its
    own pipeline with autotuning on: that engine is not covered.)
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


SHUFFLE_STREAM, AUGMENT_STREAM = 1, 2  # independent streams of randomness drawn from one seed
PASSES_WITHOUT_END = 2**62


def batches_per_pass(n, batch_size):
    return math.ceil(n / batch_size)


def random_key(seed, stream, *indices):
    """A stateless-random seed (int64, shape [2]) folded from `seed`, `stream` and integer `indices`."""
    import tensorflow as tf

    key = tf.constant([seed, stream], dtype=tf.int64)
    for index in indices:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))
    return key


def pass_batches(n, batch_size, seed, number):
    """Pass `number` over `n` examples: ``(example indices, augmentation key)`` per batch, shuffled by the seed."""
    import tensorflow as tf

    order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                     seed=random_key(seed, SHUFFLE_STREAM, number))
    keys = tf.data.Dataset.range(batches_per_pass(n, batch_size)).map(
        plain(lambda batch: random_key(seed, AUGMENT_STREAM, number, batch)))
    return tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(order).batch(batch_size), keys)


def epoch_stream(n, batch_size, seed, first, count):
    """Batches ``first .. first + count - 1`` of the gapless stream of passes 0, 1, 2, ... (None: no end)."""
    import tensorflow as tf

    per_pass = batches_per_pass(n, batch_size)
    passes = tf.data.Dataset.range(first // per_pass, PASSES_WITHOUT_END)
    ds = passes.flat_map(plain(lambda number: pass_batches(n, batch_size, seed, number))).skip(first % per_pass)
    return ds if count is None else ds.take(count)


def batch_loader(examples, shape):
    """A function from a batch of example indices to ``(images float32 (B, *shape), integer labels)``."""
    import tensorflow as tf

    labels = tf.constant(examples.labels)
    if examples.images is not None:
        images = tf.constant(examples.images)
        return lambda index: (fit_images(tf.gather(images, index), shape), tf.gather(labels, index))
    paths = tf.constant(examples.paths)

    def load(index):
        # Each file is decoded to its own size, then fitted to `shape`: H x W x C per image.
        x = tf.map_fn(lambda path: fit_images(decode_image(path), shape), tf.gather(paths, index),
                      fn_output_signature=tf.TensorSpec(shape, tf.float32))
        return x, tf.gather(labels, index)

    return load
