"""TensorFlow ops every pipeline shares: decoding and fitting images, one-hot labels, and how pipelines run.

Below both the pipelines (`cnnlab.data.pipeline`) and the augmentation engines
(`cnnlab.data.augment`), so neither imports the other for them.
"""


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
