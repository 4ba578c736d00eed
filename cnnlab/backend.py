"""Which Keras backend runs an experiment (``runtime.backend``), chosen before Keras is imported.

Keras reads ``KERAS_BACKEND`` once, when it is first imported; so `use_backend` runs
first in `cnnlab.commands.train.setup` of the commands that train (train, finetune, lr-find),
and no module that they import before it imports Keras. The tf.data pipeline runs on
TensorFlow whatever the backend.
"""

import importlib.util
import os
import sys

from cnnlab.errors import ConfigError

EXTRA = {"jax": "pip install 'cnnlab[jax]' (or: pip install 'jax[cpu]')"}


def use_backend(name):
    """Make Keras run on `name`; a `ConfigError` if it cannot (not installed, or Keras already runs on another)."""
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise ConfigError(f"`runtime.backend` is {name}, but Keras already runs on {current} in this process "
                              f"(a backend is chosen once per process): run it in a new process, or set "
                              f"runtime.backend: {current}.")
        return
    if name != "tensorflow" and importlib.util.find_spec(name) is None:
        raise ConfigError(f"`runtime.backend: {name}` needs {name}, which is not installed: {EXTRA[name]}.")
    os.environ["KERAS_BACKEND"] = name


def gradients_unavailable(what):
    """Why `what` (Grad-CAM, filter patterns: gradients taken with TensorFlow's tape) cannot run in this
    process, or None when Keras runs on TensorFlow."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return None
    return (f"{what} takes its gradients with TensorFlow, and Keras runs on {backend} in this process "
            "(KERAS_BACKEND): run the command with the tensorflow backend, which loads any run's model")
