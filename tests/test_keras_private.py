"""Every use of Keras's and TensorFlow's private API (`cnnlab.keras_private`) against the installed releases.

A new Keras (or TensorFlow) release is admitted by running this file on it (and raising the bound in
setup.cfg): each test exercises one function of the module the way cnnlab uses it.
"""

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnlab import keras_private

PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab"


def small_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    inner = keras.Sequential([keras.layers.BatchNormalization(name="inner_bn")], name="inner")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inner(x))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))


def test_the_installed_keras_is_one_checked():
    assert keras.__version__ in keras_private.CHECKED, (
        f"Keras {keras.__version__} is not among the releases cnnlab.keras_private was checked on "
        f"({', '.join(keras_private.CHECKED)}): run this file on it, then add it to CHECKED and setup.cfg")


def test_flatten_layers_reaches_into_nested_models():
    names = [layer.name for layer in keras_private.flatten_layers(small_model(), include_self=False)]
    assert "inner_bn" in names and "conv" in names and "inner" in names


def test_replace_call_runs_the_function_and_keeps_the_layer_keras_s(tmp_path):
    model = small_model()
    layer = model.get_layer("pool")
    assert not keras_private.has_replaced_call(layer)
    keras_private.replace_call(layer, lambda x, **_: keras.ops.mean(x, axis=(1, 2)) * 0.0)
    assert keras_private.has_replaced_call(layer)
    out = model.predict_on_batch(np.ones((2, 8, 8, 1), np.float32))
    assert np.allclose(out, 1 / 3)  # the replaced call gave zeros to the softmax
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("pool")) is keras.layers.GlobalAveragePooling2D
    assert not keras_private.has_replaced_call(loaded.get_layer("pool"))


def test_record_compiled_optimizer_is_what_the_saved_file_holds(tmp_path):
    model = small_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    keras_private.record_compiled_optimizer(model, keras.optimizers.Adam(0.01))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)


def test_checkpoint_with_save_calls_save_with_keras_s_arguments(tmp_path):
    calls = []

    class Spy(keras_private.checkpoint_with_save(keras.callbacks.ModelCheckpoint)):
        def save(self, epoch, batch, logs):
            calls.append((epoch, logs.get("loss") is not None))
            super().save(epoch, batch, logs)

    model = small_model()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = np.ones((4, 8, 8, 1), np.float32), np.eye(3)[[0, 1, 2, 0]]
    model.fit(x, y, epochs=2, verbose=0, callbacks=[Spy(str(tmp_path / "best.keras"))])
    assert calls == [(0, True), (1, True)]
    assert (tmp_path / "best.keras").is_file()


def test_producer_walks_back_one_layer():
    model = small_model()
    layer, inputs = keras_private.producer(model.outputs[0])
    assert layer.name == "predictions" and tuple(inputs[0].shape) == (None, 2)


def test_saving_skipsets_are_cached_under_the_key_keras_reads():
    from cnnlab.files import SKIPSET_TYPES

    keras.backend.clear_session()
    keras_private.cache_saving_skipsets(SKIPSET_TYPES)
    from keras.src.backend.common import global_state

    assert all(global_state.get_global_attribute(f"saving_attr_skiplist_{kind}") for kind in SKIPSET_TYPES)


def test_application_module_has_preprocess_input():
    assert callable(keras_private.application_module("mobilenet_v3").preprocess_input)


def test_optimizer_variable_finds_the_keras_variable():
    model = small_model()
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    variable = model.trainable_variables[1]
    backend = variable.value if hasattr(variable, "value") else variable
    assert keras_private.optimizer_variable(optimizer, backend) is variable


def test_generator_batch_makes_the_rows_batch():
    import tensorflow as tf

    flow = tf.keras.preprocessing.image.ImageDataGenerator().flow(
        np.arange(5 * 4 * 4 * 1, dtype=np.float32).reshape(5, 4, 4, 1), np.arange(5), batch_size=2, shuffle=False)
    x, y = keras_private.generator_batch(flow, np.array([3, 1]))
    assert y.tolist() == [3, 1] and x.shape == (2, 4, 4, 1)


def test_the_installed_tensorflow_is_one_checked():
    import tensorflow as tf

    assert tf.__version__ in keras_private.TENSORFLOW_CHECKED, (
        f"TensorFlow {tf.__version__} is not among the releases cnnlab.keras_private was checked on "
        f"({', '.join(keras_private.TENSORFLOW_CHECKED)}): run this file on it, then add it to TENSORFLOW_CHECKED "
        "and setup.cfg")


def test_called_function_graph_is_the_graph_a_call_runs():
    import tensorflow as tf

    @tf.function(autograph=False)
    def inner(x):
        return tf.square(x)

    @tf.function(autograph=False)
    def outer(x):
        return inner(x) + 1.0

    graph = outer.get_concrete_function(tf.TensorSpec((2,), tf.float32)).graph
    (call,) = [op for op in graph.get_operations() if op.type in ("PartitionedCall", "StatefulPartitionedCall")]
    called = keras_private.called_function_graph(graph, call.get_attr("f").name)
    assert [op.type for op in called.get_operations() if op.type == "Square"] == ["Square"]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "keras_private.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_other_module_touches_keras_private_names(path):
    """Outside keras_private: no ``keras.src`` import and no ``._name`` attribute of Keras's or TensorFlow's that
    cnnlab reads."""
    tree = ast.parse(path.read_text())
    imports = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imports += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imports if m.startswith("keras.src")]
    private = {"_flatten_layers", "_compile_config", "_keras_history", "_inbound_nodes", "_save_model",
               "_trainable_variables", "_get_variable_index", "_get_batches_of_transformed_samples",
               "_get_function"}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & private
    assert not used
