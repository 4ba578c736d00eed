"""A command's session: the Keras backend, every random generator seeded, the dtype policy; the devices."""

import os

from cnnlab import distribution


def setup(cfg, backend=False, distributed=False, echo=print):
    """Seed every generator and set the dtype policy before anything is built.

    With `backend` (the commands that train: train, finetune, lr-find), first make Keras
    run on ``runtime.backend``. The others run on whatever Keras runs on (TensorFlow
    unless ``KERAS_BACKEND`` says otherwise): a model's weights load on any backend.
    `distributed` (`train`): join the other workers of ``distribution``, if any.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend:
        from cnnlab.backend import use_backend

        job = distribution.plan(cfg, distributed)  # a job this command cannot run fails before Keras starts
        use_backend(cfg.runtime.backend)
        if distributed:
            distribution.start(cfg, job, echo)  # joins the other workers, if any, before JAX computes anything
    import keras

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and keras.backend.backend() == "tensorflow":  # JAX's CPU kernels are deterministic
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.config.set_dtype_policy(cfg.training.precision)


def device():
    """The devices Keras computes on, e.g. ``cpu:0`` (recorded in run.json)."""
    import keras

    return ", ".join(keras.distribution.list_devices())
