"""cnnlab's own Keras losses, registered so that a saved model compiled with one loads (`load_model`)."""

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
