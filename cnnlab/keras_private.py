"""Every use of Keras's private API, and of TensorFlow's, in one place, each with the versions it was checked on.

cnnlab reaches past Keras's public API where Keras has no public way to do what it
needs (the shape of Ultralytics' ``utils/patches.py``). Nothing else in cnnlab touches
a Keras name that starts with ``_`` or lives under ``keras.src``. `setup.cfg` bounds
``keras`` at the newest release these were checked on (`CHECKED`):
``tests/test_keras_private.py`` exercises every function here, so a new Keras is
admitted by running it and raising the bound. The same holds for TensorFlow's private
API (`called_function_graph`), checked on the releases of `TENSORFLOW_CHECKED`, the
newest of them `setup.cfg`'s bound on ``tensorflow``.

Importing this module imports neither Keras nor TensorFlow.
"""

CHECKED = ("3.14.0", "3.15.1")  # the Keras releases every Keras function here was checked on
TENSORFLOW_CHECKED = ("2.21.0",)  # the TensorFlow releases every TensorFlow function here was checked on


def flatten_layers(layer, include_self=True):
    """Every layer inside `layer`, nested models' layers too, depth first (``Layer._flatten_layers``).

    Public ``model.layers`` stops at a nested model (a keras.applications base is one
    layer there). Checked on 3.14.0, 3.15.1.
    """
    return list(layer._flatten_layers(include_self=include_self))


def replace_call(layer, call):
    """Make `layer` run `call` (a function of the layer's call arguments) instead of its class's ``call``.

    Set past ``Layer.__setattr__``, which would track a function as the layer's state.
    The class, config and weights stay Keras's, so a saved model loads without cnnlab.
    Checked on 3.14.0, 3.15.1.
    """
    object.__setattr__(layer, "call", call)


def has_replaced_call(layer):
    """Whether `replace_call` gave `layer` its own ``call``."""
    return "call" in vars(layer)


def record_compiled_optimizer(model, optimizer):
    """Make `model`'s saved file record `optimizer` as the one it was compiled with (``Model._compile_config``).

    Checked on 3.14.0, 3.15.1 (a model compiled without ``_compile_config`` is left alone).
    """
    if hasattr(model, "_compile_config"):
        model._compile_config.config["optimizer"] = optimizer


def checkpoint_with_save(base):
    """A subclass of the Keras ``ModelCheckpoint`` class `base` whose saving step is the public method ``save``.

    ``ModelCheckpoint._save_model(epoch, batch, logs)`` decides nothing (the monitoring
    has happened) and writes the model; a subclass overrides ``save`` and calls
    ``super().save`` to write. Checked on 3.14.0, 3.15.1.
    """

    class CheckpointWithSave(base):
        def _save_model(self, epoch, batch, logs):
            self.save(epoch, batch, logs)

        def save(self, epoch, batch, logs):
            super()._save_model(epoch, batch, logs)

    return CheckpointWithSave


def producer(tensor):
    """The layer that made a functional model's `tensor`, and the tensors it was called on.

    ``KerasTensor._keras_history`` and ``Operation._inbound_nodes``. Checked on 3.14.0, 3.15.1.
    """
    operation, node_index, _ = tensor._keras_history
    return operation, operation._inbound_nodes[node_index].input_tensors


def cache_saving_skipsets(kinds):
    """Store Keras's per-type sets of the attributes saving skips under the key it reads them from.

    Keras 3.15 stores each set under ``saving_attr_skipset_<type>`` and looks for it under
    ``saving_attr_skiplist_<type>``, so every save builds reference Layer, Optimizer and
    Metric objects again (a fifth of a checkpoint's time). ``clear_session`` empties both.
    ``keras.src.saving.saving_lib.get_attr_skipset`` and ``keras.src.backend.common.global_state``.
    Checked on 3.14.0, 3.15.1; a Keras without ``get_attr_skipset`` is left alone.
    """
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    skipset = getattr(saving_lib, "get_attr_skipset", None)
    for kind in kinds if skipset else ():
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, skipset(kind))


def application_module(name):
    """The module ``keras.src.applications.<name>`` (its ``preprocess_input`` where keras.applications
    exports no module of that name). Checked on 3.14.0, 3.15.1."""
    import importlib

    return importlib.import_module(f"keras.src.applications.{name}")


def optimizer_variable(optimizer, variable):
    """The Keras variable an optimizer's backend `variable` stands for (``Optimizer._trainable_variables``,
    ``Optimizer._get_variable_index``). Checked on 3.14.0, 3.15.1."""
    return optimizer._trainable_variables[optimizer._get_variable_index(variable)]


def generator_batch(iterator, rows):
    """The batch an ImageDataGenerator iterator makes of the given rows (the method its own indexing uses,
    ``Iterator._get_batches_of_transformed_samples``). Checked on 3.14.0, 3.15.1."""
    return iterator._get_batches_of_transformed_samples(rows)


# --------------------------------------------------------------------------- TensorFlow


def called_function_graph(graph, name):
    """The graph of the function `name` of `graph`'s library: the one a ``PartitionedCall`` op of `graph` runs.

    TensorFlow's ``Graph._get_function`` (a graph's library has no public accessor to Python
    graphs). Checked on TensorFlow 2.21.0.
    """
    return graph._get_function(name).graph
