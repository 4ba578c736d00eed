"""The order and randomness of training batches: independent seed streams drawn from one seed.

Both augmentation engines and the pipelines draw from here (the shuffle of each pass,
each batch's augmentation key), so a run's batches are the same however it resumes.
"""

import math

from cnnlab.data.ops import plain

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
