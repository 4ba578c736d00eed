"""runtime.fast_kernels: fused BatchNormalization and float32 strided depthwise give Keras's results."""

import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.training.kernels import speed_up  # noqa: E402

BN_OPTIONS = [{"epsilon": 1.001e-5}, {"center": False}, {"scale": False, "momentum": 0.9}]


def _network(policy, seed=0):
    """Conv → BN variants → strided depthwise → BN → pooled Dense → BN on 2-D → softmax."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, padding="same")(inputs)
    for i, options in enumerate(BN_OPTIONS):
        x = keras.layers.BatchNormalization(name=f"bn{i}", **options)(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu", name="dw_strided")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn_after_dw")(x)
    x = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    x = keras.layers.BatchNormalization(name="bn_2d")(x)  # not 4-D: Keras's own path
    outputs = keras.layers.Dense(4, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def _data(n=48):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(n, 12, 12, 3)).astype("float32")
    return x, keras.utils.to_categorical(rng.integers(0, 4, n), 4)


def _twins(policy):
    """The network twice with the same weights; the second has the fast kernels."""
    plain, fast = _network(policy), _network(policy)
    fast.set_weights(plain.get_weights())
    return plain, fast


def _train(*models):
    x, y = _data()
    for model in models:
        model.compile(keras.optimizers.SGD(0.05), "categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)


def test_float32_training_matches_keras_weights_moving_averages_and_outputs():
    plain, fast = _twins("float32")
    assert speed_up(fast) == 4  # the four 4-D BatchNormalizations; float32 depthwise stays
    _train(plain, fast)
    for variable, a, b in zip(plain.weights, plain.get_weights(), fast.get_weights()):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5), variable.path
    moving = plain.get_layer("bn0").moving_variance.numpy()
    assert not np.allclose(moving, 1.0)  # the averages moved, and agree with Keras's (biased) batch variance
    x, _ = _data()
    assert np.allclose(plain.predict(x, verbose=0), fast.predict(x, verbose=0), atol=1e-5)


def test_bfloat16_training_stays_close_to_keras_and_strided_depthwise_runs_in_float32():
    plain, fast = _twins("mixed_bfloat16")
    assert speed_up(fast) == 5  # + the strided depthwise layer; the stride-1 one stays bfloat16
    assert "call" in vars(fast.get_layer("dw_strided")) and "call" not in vars(fast.get_layer("dw"))
    x, _ = _data()
    assert fast.get_layer("dw_strided")(np.ones((2, 12, 12, 6), "float32")).dtype == "bfloat16"
    _train(plain, fast)
    for name in ("bn0", "bn_after_dw"):
        a, b = plain.get_layer(name), fast.get_layer(name)
        assert np.allclose(a.moving_variance.numpy(), b.moving_variance.numpy(), rtol=0.05, atol=1e-3), name
    assert np.abs(plain.predict(x, verbose=0) - fast.predict(x, verbose=0)).max() < 0.05


def test_layers_it_does_not_cover_keep_kerass_call():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.BatchNormalization(epsilon=1e-6, name="small_epsilon")(inputs)
    x = keras.layers.BatchNormalization(renorm=True, name="renorm")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, name="float32_dw")(x)
    model = keras.Model(inputs, x)
    assert speed_up(model) == 0
    assert not any("call" in vars(layer) for layer in model.layers)


def test_idempotent_disabled_and_nested_applications():
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(base(inputs)))
    assert speed_up(model, enabled=False) == 0
    batch_norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers)
    assert speed_up(model) == batch_norms == 52
    assert speed_up(model) == 0  # fine-tuning compiles twice


def test_compile_model_follows_runtime_fast_kernels():
    from cnnlab.config import build_config
    from cnnlab.training.fit import compile_model

    for enabled, deterministic in ((True, False), (False, False), (True, True)):
        model = _network("float32")
        cfg = build_config({"data": {"dataset": "digits"}, "runtime": {"fast_kernels": enabled},
                            "deterministic": deterministic})
        compile_model(model, cfg, 4, 10)
        assert ("call" in vars(model.get_layer("bn0"))) is (enabled and not deterministic)


def test_a_model_trained_with_fast_kernels_saves_plain_keras_layers(tmp_path):
    plain, fast = _twins("float32")
    speed_up(fast)
    _train(fast)
    fast.save(tmp_path / "m.keras")
    def configs(model):
        return [{**layer.get_config(), "name": None} for layer in model.layers]

    assert configs(fast) == configs(plain)
    code = ("import keras, sys; m = keras.saving.load_model(sys.argv[1]); "
            "print(type(m.get_layer('bn0')).__module__, 'cnnlab' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["keras.src.layers.normalization.batch_normalization", "False"]
    x, _ = _data()
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert np.allclose(loaded.predict(x, verbose=0), fast.predict(x, verbose=0), atol=1e-5)


def test_a_run_resumes_under_either_kernels_but_a_completed_one_counts_for_its_own(write_experiment):
    from cnnlab import rundir
    from cnnlab.config import load_config

    on = load_config(write_experiment()).to_dict()
    off = load_config(write_experiment({"runtime": {"fast_kernels": False}})).to_dict()
    batched = load_config(write_experiment({"runtime": {"steps_per_execution": 1}})).to_dict()
    before = {**on, "runtime": {"backend": "tensorflow"}}  # config.yaml of a run from before both keys: Keras's layers
    same = [rundir.comparable(c, "interrupted") for c in (on, off, batched, before)]
    assert all(c == same[0] for c in same)
    assert rundir.comparable(on, "completed") == rundir.comparable(batched, "completed")
    assert rundir.comparable(on, "completed") != rundir.comparable(off, "completed")
    assert rundir.comparable(off, "completed") == rundir.comparable(before, "completed")
    other = load_config(write_experiment({"training": {"epochs": 9}})).to_dict()
    assert rundir.comparable(on, "interrupted") != rundir.comparable(other, "interrupted")


def test_frozen_batch_norm_trains_the_layers_around_it_as_keras_does():
    """Fine-tuning's case: BatchNormalization frozen (inference mode) while gradients flow through it."""
    plain, fast = _twins("float32")
    for model in (plain, fast):
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    speed_up(fast)
    moving = fast.get_layer("bn0").moving_variance.numpy().copy()
    _train(plain, fast)
    for variable, a, b in zip(plain.weights, plain.get_weights(), fast.get_weights()):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5), variable.path
    assert np.array_equal(fast.get_layer("bn0").moving_variance.numpy(), moving)


def test_the_strided_depthwise_kernel_runs_in_float32():
    import tensorflow as tf

    _, fast = _twins("mixed_bfloat16")
    speed_up(fast)
    graph = tf.function(fast).get_concrete_function(tf.TensorSpec((2, 12, 12, 3), tf.float32)).graph
    types = {op.name: op.get_attr("T") for op in graph.get_operations() if op.type == "DepthwiseConv2dNative"}
    assert sorted(types.values(), key=str) == [tf.bfloat16, tf.float32], types  # the stride-1 layer stays bf16
