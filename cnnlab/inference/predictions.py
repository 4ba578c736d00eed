"""Batched prediction: a model's main output for a batch (averaged over TTA views) or a whole split."""

import math

import numpy as np

from cnnlab.models.heads import main_probabilities

MAX_KEPT = 25  # images an evaluation keeps to show


def predict_batch(model, images, tta=None):
    """The main output for a batch (float32); with a `cnnlab.inference.tta.Plan`, averaged over its views."""
    batch = images if tta is None else tta.expand(images)
    # NumPy in: tf.data's tensors are TensorFlow's, and the model may run on another backend (JAX)
    probs = main_probabilities(model.predict_on_batch(np.asarray(batch))).astype(np.float32)
    return probs if tta is None else tta.average(probs)


INFERENCE_BYTES = 16 * 2**20  # the images of one prediction batch at most, as float32


def inference_batch(data, tta=None):
    """Images per prediction batch: the training batch, or up to 1,024 small images (fewer calls run faster).

    Predicting MNIST's test set in batches of 1,024 rather than 64 takes 1.2 s instead of
    1.7 s on 2 cores; large images keep the training batch, which is known to fit.
    """
    views = len(tta.views) if tta is not None else 1
    return max(data.batch_size, min(1024, INFERENCE_BYTES // (4 * math.prod(data.input_shape) * views)))


def padded(images, size):
    """`images` with zero images after them up to `size`: a model called on one batch shape is traced once
    (a short last batch cost a second trace, 0.3-0.6 s of predicting MNIST's test set)."""
    if len(images) >= size:
        return images
    return np.concatenate([images, np.zeros((size - len(images), *images.shape[1:]), images.dtype)])


def predict_split(model, data, split, tta=None, keep=None):
    """A split's main outputs and its targets (as the data gives them), and up to 25 of its images.

    Args:
        tta: a `cnnlab.inference.tta.Plan` to average each image's views, or None.
        keep: which images to keep, a batch at a time: ``keep(outputs, targets)`` -> indices in the batch
            (a task's `cnnlab.tasks.base.Task.keep`); None keeps none.

    Returns:
        ``(outputs, targets, kept)``: arrays over the split, and ``(image, output, target)`` of the kept images.
    """
    outputs, targets, kept = [], [], []
    size = inference_batch(data, tta)
    several = len(data.split(split)) > size  # then the last batch is padded to their size (one trace)
    for images, batch_targets in data.dataset(split, batch_size=size):
        images, batch_targets = np.asarray(images), np.asarray(batch_targets)
        out = predict_batch(model, padded(images, size) if several else images, tta)[: len(images)]
        if keep is not None and len(kept) < MAX_KEPT:
            kept += [(np.asarray(images[i]), out[i], batch_targets[i])
                     for i in keep(out, batch_targets)[: MAX_KEPT - len(kept)]]
        outputs.append(out)
        targets.append(batch_targets)
    return np.concatenate(outputs), np.concatenate(targets), kept


def images_at(data, split, indices):
    """The images (0..255, as the model takes them) at `indices` of a split, in the order asked."""
    wanted = {index: place for place, index in enumerate(indices)}
    found = [None] * len(indices)
    start = 0
    for images, _ in data.dataset(split):
        batch = np.asarray(images)
        for index in range(start, start + len(batch)):
            if index in wanted:
                found[wanted[index]] = batch[index - start]
        start += len(batch)
        if all(image is not None for image in found):
            break
    return found
