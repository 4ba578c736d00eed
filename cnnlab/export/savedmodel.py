"""TensorFlow SavedModel (a folder), served by ``tf.saved_model.load``: its ``serve`` endpoint."""

import numpy as np

from cnnlab.export.formats import Format, Runtime, register_format, version


def write(model, path, quantize, calibration):
    """``model.export(path, format="tf_saved_model")``."""
    model.export(str(path), format="tf_saved_model", verbose=False)


def load(path):
    """The SavedModel at `path` through TensorFlow's own loader (no Keras)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))

    def predict(images):
        return np.asarray(loaded.serve(tf.constant(images, tf.float32)))

    return Runtime(predict, {"input": {"dtype": "float32"}, "output": {"dtype": "float32"},
                             "endpoint": "serve"}, version("tensorflow"))


register_format(Format("savedmodel", suffix="", quantizations=("none",), modules=("tensorflow",),
                       packages=("tensorflow",), write=write, load=load))
