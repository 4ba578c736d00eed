"""From a DataConfig to tf.data pipelines: split, fit images to the input shape, augment, batch.

Images flow as float32 pixels in 0..255; scaling is the model's first layer
(`cnnlab.data.scaling`). Labels flow as the run's task makes them for the loss
(`cnnlab.tasks.base.Task.targets`): classification's one-hot, which label smoothing,
mixup and cutmix need; multi-hot rows; segmentation's masks, fitted to the images' size
(`Task.fit_labels`) and moved with them by augmentation.

Training batches are a pure function of the seed: pass ``p`` over the data is
shuffled by ``(seed, p)`` and its batch ``b`` augmented by ``(seed, p, b)``, with
TensorFlow's stateless random ops, so a parallel map stays reproducible and a
resumed run sees the batches an uninterrupted one would.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cnnlab.data.ops import decode_image, fit_images, labelled, plain, prefetched, untuned
from cnnlab.data.sources import Examples, exclude, load_raw
from cnnlab.data.streams import batches_per_pass, epoch_stream
from cnnlab.errors import DataError
from cnnlab.tasks import task_of

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
    task: object = None  # the run's `cnnlab.tasks.base.Task` (default: classification)
    ignore_index: int = 255  # a mask value that is no class (segmentation's data.ignore_index)
    excluded: object = None  # `cnnlab.data.sources.Exclusion` of data.exclude, or None
    _stats: dict = field(default=None, repr=False)

    def __post_init__(self):
        self.task = self.task or task_of(None)

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
        ds = make_dataset(examples, self.input_shape, batch_size or self.batch_size, self.task)
        return labelled(ds.map(plain(lambda x, y: (x, self.task.targets(y, self.classes)))), outputs)

    def validation_dataset(self, outputs=1):
        """The validation batches `model.fit` scores; with several workers, each loads its shard of every batch."""
        import tensorflow as tf

        from cnnlab.distribution import current, shard

        if current().workers == 1:
            return self.dataset("val", outputs=outputs)
        examples = self.split("val")
        load = batch_loader(examples, self.input_shape, self.task)

        def weighted(index):  # the top-up copies of a short batch weigh 0: each example is scored once
            mine, weights = shard(index, weights=True)
            x, y = load(mine)
            targets = self.task.targets(y, self.classes)
            if self.task.spatial_labels:  # a loss per pixel: each pixel weighs as its image
                weights = tf.reshape(weights, (-1, 1, 1)) * tf.ones_like(targets, tf.float32)
            return x, targets, weights

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

        masks = self.ignore_index if self.task.spatial_labels else None
        return augmenter(self.augmentation, self.input_shape, self.classes, self.seed, masks)

    def _training_batches(self, examples, stream, augment, outputs):
        """Load, one-hot and augment the ``(example indices, random key)`` batches of `stream`.

        With several workers each loads its shard of every batch (`cnnlab.distribution.shard`)
        and folds its number into the key, so the workers' shards are augmented independently.
        """
        import tensorflow as tf

        from cnnlab.distribution import current, shard

        load = batch_loader(examples, self.input_shape, self.task)
        worker = current()
        if worker.workers > 1:
            stream = stream.map(plain(lambda index, key: (
                shard(index), tf.random.experimental.stateless_fold_in(key, worker.process_id))))
        ds = stream.map(plain(lambda index, key: (*load(index), key)), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(plain(lambda x, y, key: (x, self.task.targets(y, self.classes), key)))
        # The augmentation's randomness comes from each batch's key, so its parallel map is reproducible.
        ds = ds.map(plain(augment or (lambda x, y, key: (x, y))), num_parallel_calls=tf.data.AUTOTUNE)
        return labelled(ds, outputs)

    def describe(self, echo):
        """Tell `echo` the splits' sizes, the image shape and the classes (and the bad files skipped)."""
        splits = ", ".join(f"{n} {len(getattr(self, n))}" for n in ("train", "val", "test")
                           if getattr(self, n) is not None)
        echo(f"Data: {splits} images of {self.input_shape}, {self.classes} classes")
        if self.skipped:
            echo(f"Skipped {len(self.skipped)} bad image file(s) (data.on_bad_image: skip), e.g. "
                 f"{self.skipped[0][0]}")
        if self.excluded is not None:
            echo(self.excluded.describe())

    def channel_stats(self):
        """Per-channel mean and variance of the (un-augmented) training images."""
        from cnnlab.data.scaling import channel_stats

        if self._stats is None:
            ds = make_dataset(self.train, self.input_shape, self.batch_size, self.task)
            self._stats = channel_stats(x.numpy() for x, _ in ds)
        return self._stats


def load_data(cfg):
    """Load, split and describe the data of an `ExperimentConfig`.

    Sources without a test split give one of ``data.test_split``; the validation
    split is carved from the training data. Both are stratified and drawn by
    ``data.split_seed`` (`split_seed`), so runs of several seeds share them.
    """
    data, task = cfg.data, task_of(cfg)
    raw = load_raw(data, task)
    train, test = raw.train, raw.test
    seed = split_seed(cfg)
    if test is None and data.test_split > 0:
        train, test = stratified_split(train, data.test_split, seed, "data.test_split", raw.class_names, task)
    val = None
    if data.validation_split > 0:
        train, val = stratified_split(train, data.validation_split, seed, "data.validation_split", raw.class_names,
                                      task)
    excluded = None
    if data.exclude:  # after the splits: they stay those of the same data without the list
        train, val, excluded = exclude(train, val, data.exclude)
    return DataBundle(train=train, val=val, test=test, class_names=list(raw.class_names),
                      input_shape=input_shape(raw.image_shape, data), batch_size=data.batch_size,
                      seed=cfg.seed, augmentation=cfg.augmentation, skipped=raw.skipped, task=task,
                      ignore_index=data.ignore_index, excluded=excluded)


def split_seed(cfg):
    """The seed that draws the validation and test splits: ``data.split_seed``, or ``seed`` where it is null
    (runs from before the key)."""
    return cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed


def describe_data(cfg):
    """``(input_shape, classes)`` of an experiment's data, without downloading Keras's datasets."""
    from cnnlab.data.sources import SOURCES

    meta = SOURCES.get(cfg.data.dataset).meta
    if "shape" in meta:
        return input_shape(meta["shape"], cfg.data), meta["classes"]
    raw = load_raw(cfg.data, task_of(cfg))
    return input_shape(raw.image_shape, cfg.data), len(raw.class_names)


def input_shape(image_shape, data):
    """``(H, W, C)`` the model sees: the data's own, or ``image_size`` and ``color_mode``."""
    h, w, c = image_shape
    if data.image_size:
        h, w = data.image_size
    if data.color_mode:
        c = COLOR_CHANNELS[data.color_mode]
    return (int(h), int(w), int(c))


def stratified_split(examples, fraction, seed, key, class_names, task=None):
    """Split off `fraction` of `examples`, class by class, reproducibly for `seed`.

    `task` says what to stratify by (`cnnlab.tasks.base.Task.stratify`): classification's
    class indices; multi-hot rows are drawn at random.
    """
    from sklearn.model_selection import train_test_split

    by = examples.labels if task is None else task.stratify(examples.labels)
    if by is None:
        held = int(np.ceil(fraction * len(examples)))
        if held < 1 or len(examples) - held < 1:
            raise DataError(f"{key} {fraction} of {len(examples)} images leaves no image on one side: change "
                            "the fraction or add images.")
        keep, held_out = train_test_split(np.arange(len(examples)), test_size=held, random_state=seed)
        return examples.take(np.sort(keep)), examples.take(np.sort(held_out))
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


def make_dataset(examples, shape, batch_size, task=None):
    """Batches of ``(images float32 0..255 shaped (B, *shape), labels)``, in order; the labels as `task`
    fits them to `shape` (`cnnlab.tasks.base.Task.fit_labels`: classification's class indices as they are)."""
    import tensorflow as tf

    fit_labels = (task or task_of(None)).fit_labels
    autotune = tf.data.AUTOTUNE
    if examples.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((examples.images, examples.labels))
        return untuned(ds.batch(batch_size).map(plain(lambda x, y: (fit_images(x, shape), fit_labels(y, shape))),
                                                num_parallel_calls=autotune))
    ds = tf.data.Dataset.from_tensor_slices((examples.paths, examples.labels))
    ds = ds.map(plain(lambda p, y: (fit_images(decode_image(p), shape), fit_labels(y, shape))),
                num_parallel_calls=autotune)
    return untuned(ds.batch(batch_size))


def batch_loader(examples, shape, task=None):
    """A function from a batch of example indices to ``(images float32 (B, *shape), labels)`` (as `make_dataset`)."""
    import tensorflow as tf

    fit_labels = (task or task_of(None)).fit_labels
    labels = tf.constant(examples.labels)
    if examples.images is not None:
        images = tf.constant(examples.images)
        return lambda index: (fit_images(tf.gather(images, index), shape),
                              fit_labels(tf.gather(labels, index), shape))
    paths = tf.constant(examples.paths)

    def load(index):
        # Each file is decoded to its own size, then fitted to `shape`: H x W x C per image.
        x = tf.map_fn(lambda path: fit_images(decode_image(path), shape), tf.gather(paths, index),
                      fn_output_signature=tf.TensorSpec(shape, tf.float32))
        return x, fit_labels(tf.gather(labels, index), shape)

    return load
