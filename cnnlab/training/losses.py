"""cnnlab's own Keras losses and metrics, registered so that a saved model compiled with one loads (`load_model`)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cnnlab")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy per class whose positive term of class c is weighted by ``positive_weights[c]``
    (multi-label's ``training.class_weight: balanced``), averaged over the classes."""

    def __init__(self, positive_weights, name="weighted_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1 - 1e-7)
        y_true = ops.cast(y_true, "float32")
        weights = ops.convert_to_tensor(self.positive_weights, "float32")
        terms = weights * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred)
        return -ops.mean(terms, axis=-1)

    def get_config(self):
        return {**super().get_config(), "positive_weights": self.positive_weights}


@keras.saving.register_keras_serializable(package="cnnlab")
class WeightedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy per pixel, each pixel weighted by its true class's weight (segmentation's
    ``training.class_weight: balanced``; Keras's ``class_weight`` takes one class per image). Pixels of
    `ignore_class` weigh 0."""

    def __init__(self, class_weights, ignore_class=None, name="weighted_sparse_categorical_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        valid = ops.ones_like(y_true, "bool") if self.ignore_class is None else ops.not_equal(y_true,
                                                                                             self.ignore_class)
        labels = ops.where(valid, y_true, 0)
        losses = keras.losses.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"))
        weights = ops.take(ops.convert_to_tensor(self.class_weights, "float32"), labels)
        return losses * weights * ops.cast(valid, "float32")

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights, "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="cnnlab")
class PixelAccuracy(keras.metrics.Metric):
    """The share of pixels whose most probable class is the mask's, pixels of `ignore_class` left out
    (segmentation; Keras's accuracy would count them)."""

    def __init__(self, ignore_class=None, name="pixel_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        valid = (ops.ones_like(hit) if self.ignore_class is None
                 else ops.cast(ops.not_equal(y_true, self.ignore_class), "float32"))
        self.correct.assign_add(ops.sum(hit * valid))
        self.total.assign_add(ops.sum(valid))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}
