"""Keras's global dtype policy, which ``training.precision`` sets for a whole run."""

from contextlib import contextmanager


@contextmanager
def float32_policy():
    """Keras's global dtype policy float32 for the block, whatever ``training.precision`` set.

    For what must not run in half precision: augmentation layers on the input
    pipeline (float32 pixels 0..255; RandAugment and RandomColorJitter make inner
    layers that take the global policy), and the float32 copy a model is exported as.
    """
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
