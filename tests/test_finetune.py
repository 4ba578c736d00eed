"""Two-phase fine-tuning: freezing by count and by name, BatchNorm, weights untouched, records, errors."""

import csv
import json

import keras
import numpy as np
import pytest

from cnnlab import rundir
from cnnlab.commands.finetune import finetune, freeze_base, freeze_index, replace_head, unfreeze_after
from cnnlab.config import ModelConfig
from cnnlab.models.heads import head_start, last_weighted
from cnnlab.errors import ConfigError
from cnnlab.models.registry import build_model
from tests.conftest import error_line, make_images

QUIET = {"echo": lambda *_: None, "verbose": 0}


def small_cnn():
    return build_model(ModelConfig(architecture="deep_cnn", batch_norm=True), (12, 12, 1), 3)


def test_freeze_by_count_and_by_name():
    model = small_cnn()
    names = [layer.name for layer in model.layers]
    assert freeze_index(model, 5) == 5
    assert freeze_index(model, "block2_pool") == names.index("block2_pool") + 1
    notes = []
    assert freeze_index(model, len(names) + 50, notes.append) == head_start(model)  # the whole base, said once
    assert len(notes) == 1 and notes[0].startswith("Note: --freeze") and "whole base" in notes[0]
    with pytest.raises(ConfigError, match="a number of layers .0 or more. or a layer name. Received: '-1'"):
        freeze_index(model, "-1")
    with pytest.raises(ConfigError, match="no layer named .block2_conv9.. Nearest: block2_conv2, block2_conv1"):
        freeze_index(model, "block2_conv9")


def test_phase1_trains_only_the_head_and_phase2_keeps_batchnorm_frozen():
    model = small_cnn()
    freeze_base(model)  # the classifier after `flatten` trains; the convolutional base is frozen
    assert [layer.name for layer in model.layers if layer.trainable and layer.weights] == ["fc1", "fc1_bn", "fc2"]
    first, head = freeze_index(model, "block2_pool"), head_start(model)
    unfreeze_after(model, first)
    for index, layer in enumerate(model.layers):
        if index >= head:  # the classifier trains in both phases, its BatchNormalization too
            assert layer.trainable, layer.name
        elif isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        elif layer.weights:
            assert layer.trainable == (index >= first), layer.name
    unfreeze_after(model, first, train_batch_norm=True)
    assert model.get_layer("block3_conv1_bn").trainable and not model.get_layer("block1_conv1_bn").trainable


def test_a_new_head_for_a_different_class_count():
    model = small_cnn()
    new = replace_head(model, 7)
    assert new.output_shape == (None, 7)
    assert new.layers[last_weighted(new)].name == "fc2" and new.layers[-1].name == "predictions"
    kept = new.get_layer("block1_conv1").get_weights()[0]
    assert np.array_equal(kept, model.get_layer("block1_conv1").get_weights()[0])


@pytest.fixture
def npz_pair(tmp_path):
    """Two small datasets: A with 3 classes to pretrain on, B with 2 other classes."""
    x, y = make_images(30, classes=3)
    a = tmp_path / "a.npz"
    np.savez(a, x_train=x[..., 0], y_train=y, x_test=x[::3, ..., 0], y_test=y[::3])
    x, y = make_images(30, classes=2, seed=5)
    b = tmp_path / "b.npz"
    np.savez(b, x_train=255 - x[..., 0], y_train=y, x_test=255 - x[::3, ..., 0], y_test=y[::3],
             class_names=np.array(["left", "right"]))
    return a, b


@pytest.fixture
def pretrained(npz_pair, write_experiment, tmp_path):
    from cnnlab.commands.train import train
    from cnnlab.config import load_config

    path = write_experiment({"data": {"dataset": "npz", "path": str(npz_pair[0]), "batch_size": 16},
                             "model": {"architecture": "deep_cnn", "batch_norm": True}, "training": {"epochs": 2}},
                            name="pre")
    return train(load_config(path), **QUIET)


@pytest.mark.slow
def test_two_phases_on_new_classes(pretrained, npz_pair, tmp_path, monkeypatch):
    from cnnlab.training import fit as fit_module

    base = keras.saving.load_model(pretrained / "model.keras")
    seen = []
    original = fit_module.fit

    def spy(model, *args, **kwargs):
        seen.append({"phase": kwargs["phase"], "lr": float(model.optimizer.learning_rate),
                     "weights": {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}})
        result = original(model, *args, **kwargs)
        seen[-1]["after"] = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
        return result

    monkeypatch.setattr(fit_module, "fit", spy)
    run = finetune(pretrained, freeze="block2_pool", head_epochs=2, epochs=2,
                   overrides=[f"data.path={npz_pair[1]}"], **QUIET)
    model = keras.saving.load_model(run / "model.keras")
    assert model.output_shape == (None, 2)
    assert json.loads((run / "class_names.json").read_text()) == ["left", "right"]
    phase1, phase2 = seen
    assert phase1["lr"] == pytest.approx(3e-3) and phase2["lr"] == pytest.approx(1e-5)  # training, then finetune
    names = [layer.name for layer in model.layers]
    first = names.index("block2_pool") + 1
    for name in names[:names.index("flatten") + 1]:  # phase 1: the whole base untouched, bit for bit
        for before, after in zip(phase1["weights"][name], phase1["after"][name]):
            assert np.array_equal(before, after), name
        if base.get_layer(name).weights:
            assert np.array_equal(phase1["weights"][name][0], base.get_layer(name).get_weights()[0])
    for name in names[:first]:  # phase 2: the first layers untouched
        for before, after in zip(phase2["weights"][name], phase2["after"][name]):
            assert np.array_equal(before, after), name
    assert not np.array_equal(phase2["weights"]["block3_conv1"][0], phase2["after"]["block3_conv1"][0])
    for name in ("block3_conv1_bn",):  # BatchNorm frozen in phase 2, moving statistics included
        for before, after in zip(phase2["weights"][name], phase2["after"][name]):
            assert np.array_equal(before, after)
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["phase"]) for r in rows] == [("0", "1"), ("1", "1"), ("2", "2"), ("3", "2")]
    info = rundir.run_info(run)
    assert info["status"] == "completed" and str(pretrained.resolve()) in info["base"]
    assert str(pretrained.resolve()) in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_cli_finetunes_the_latest_run_and_evaluates(cli, pretrained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the runs of `pretrained` live in tmp_path/runs
    result = cli("finetune", "--freeze", "3", "--head-epochs", "1", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "Phase 1: base frozen" in result.output and "Phase 2: layers 3.. trainable" in result.output
    assert "trainable and" in result.output
    result = cli("evaluate")
    assert result.exit_code == 0 and "accuracy" in result.output


def test_bad_freeze_fails_before_training(cli, pretrained, tmp_path):
    result = cli("finetune", pretrained, "--freeze", "nonexistent_layer")
    assert result.exit_code == 2 and "no layer named 'nonexistent_layer'" in error_line(result)
    result = cli("finetune", pretrained, "--freeze", "-1")
    assert result.exit_code == 2 and "or a layer name" in error_line(result)
    assert [r for r in rundir.list_runs(tmp_path / "runs") if "finetune" in str(r)] == []


def test_an_input_shape_the_base_cannot_take(cli, pretrained):
    result = cli("finetune", pretrained, "--set", "data.image_size=[16, 16]")
    assert result.exit_code == 2 and "takes images of (12, 12, 1)" in error_line(result)


def test_an_experiment_file_fine_tunes_into_name_finetune(write_experiment):
    from cnnlab.commands.finetune import resolve_config

    assert resolve_config(write_experiment(name="exp")).name == "exp-finetune"  # README: <name>-finetune
    assert resolve_config(write_experiment(name="exp"), ["name=other"]).name == "other-finetune"
    assert resolve_config(write_experiment(name="mnist-5to9-finetune")).name == "mnist-5to9-finetune"


def test_a_base_that_is_nothing(cli, write_experiment):
    path = write_experiment({"finetune": {"base": "mobilenet_v9"}})
    result = cli("finetune", path)
    assert result.exit_code == 2 and "Did you mean 'mobilenet_v2'" in error_line(result)
    result = cli("finetune", write_experiment({"model": {"architecture": "mlp"}}, name="plain"))
    assert result.exit_code == 2 and "needs something pretrained" in error_line(result)


@pytest.mark.slow
def test_keras_application_base_with_local_weights(write_experiment, tmp_path):

    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = tmp_path / "mobilenet_v2_notop.weights.h5"
    backbone.save_weights(weights)
    x, y = make_images(12, classes=2, size=32, channels=3)
    data = tmp_path / "rgb.npz"
    np.savez(data, x_train=x, y_train=y, x_test=x[::2], y_test=y[::2])
    path = write_experiment({"data": {"dataset": "npz", "path": str(data), "batch_size": 8},  # scaling: backbone
                             "model": {"architecture": "mobilenet_v2", "weights": str(weights)},
                             "finetune": {"freeze": 100, "head_epochs": 1, "epochs": 1}}, name="mobile")
    run = finetune(path, **QUIET)
    assert run.parent.name == "mobile-finetune"  # an experiment file's fine-tune: <name>-finetune, as a run's
    model = keras.saving.load_model(run / "model.keras")
    assert model.get_layer("scaling").__class__.__name__ == "BackbonePreprocessing"  # chosen for the backbone
    assert "scaling: backbone" in (run / "config.yaml").read_text()
    assert model.output_shape == (None, 2)


def test_discriminative_rates_rise_layer_by_layer_to_the_head():
    from cnnlab.commands.finetune import rate_multipliers

    model = small_cnn()
    first = freeze_index(model, "block1_pool")
    unfreeze_after(model, first)
    assert rate_multipliers(model, first, 1.0) is None
    factors = rate_multipliers(model, first, 100.0)
    weighted = [layer for layer in model.layers[first:head_start(model)] if layer.trainable_weights]
    per_layer = [factors[layer.trainable_weights[0].path] for layer in weighted]
    assert per_layer[0] == pytest.approx(0.01)  # the first trainable layer: 1 / lr_mult
    assert all(b > a for a, b in zip(per_layer, per_layer[1:])) and per_layer[-1] < 1.0
    head = model.layers[head_start(model):]
    assert not any(w.path in factors for layer in head for w in layer.trainable_weights)  # the head: full rate
    frozen_bn = model.get_layer("block2_conv1_bn")
    assert not any(w.path in factors for w in frozen_bn.weights)


def _two_dense():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, name="b")(keras.layers.Dense(3, name="a")(inputs)))


def test_a_discriminative_optimizer_scales_each_variable():
    import tensorflow as tf

    from cnnlab.training.optimizers import with_multipliers

    model = _two_dense()
    model.compile(with_multipliers(keras.optimizers.SGD(0.1), {"a/kernel": 0.0, "a/bias": 0.5}), "mse")
    x, y = np.ones((8, 4), "float32"), np.ones((8, 2), "float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x)))
    grads = {w.path: g.numpy() for w, g in zip(model.trainable_weights, tape.gradient(loss, model.trainable_weights))}
    before = {w.path: w.numpy().copy() for w in model.weights}
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    step = {w.path: before[w.path] - w.numpy() for w in model.weights}
    assert not step["a/kernel"].any()  # factor 0: untouched
    np.testing.assert_allclose(step["a/bias"], 0.05 * grads["a/bias"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(step["b/kernel"], 0.1 * grads["b/kernel"], rtol=1e-4, atol=1e-7)


def test_adamw_decays_each_variable_at_its_own_rate():
    from cnnlab.training.optimizers import with_multipliers

    model = _two_dense()
    model.compile(with_multipliers(keras.optimizers.AdamW(0.1, weight_decay=0.5), {"a/kernel": 0.0}), "mse")
    before = model.get_layer("a").kernel.numpy().copy()
    x = np.ones((8, 4), "float32")
    model.fit(x, np.zeros((8, 2), "float32"), batch_size=8, epochs=3, verbose=0)
    assert np.array_equal(model.get_layer("a").kernel.numpy(), before)  # no update, no decay either


def test_a_model_trained_with_discriminative_rates_loads_in_plain_keras(tmp_path):
    import subprocess
    import sys

    from cnnlab.config import build_config
    from cnnlab.training.fit import compile_model

    model = _two_dense()
    cfg = build_config({"data": {"dataset": "digits"}})
    compile_model(model, cfg, 2, 10, learning_rate=1e-3, multipliers={"a/kernel": 0.1})
    assert type(model.optimizer).__name__ == "DiscriminativeAdam"
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    code = ("import keras, sys; m = keras.saving.load_model(sys.argv[1]); "
            "print(type(m.optimizer).__name__, 'cnnlab' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["Adam", "False"]


@pytest.mark.slow
def test_phase2_one_cycle_with_discriminative_rates_from_the_cli(cli, pretrained, npz_pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("finetune", pretrained, "--freeze", "block1_pool", "--head-epochs", "1", "--epochs", "2",
                 "--set", f"data.path={npz_pair[1]}", "--set", "finetune.lr_schedule=onecycle",
                 "--set", "finetune.lr_mult=10", "--set", "callbacks.reduce_lr_on_plateau=false",
                 "--learning-rate", "1e-3")
    assert result.exit_code == 0, result.output
    assert "learning rate 0.001 (onecycle), the first trainable layer's 10x lower" in result.output
    run = rundir.latest_run(tmp_path / "runs")
    with open(run / "history.csv") as f:
        rates = [float(r["learning_rate"]) for r in csv.DictReader(f) if r["phase"] == "2"]
    assert len(rates) == 2 and rates[0] != rates[1]  # the cycle moves the rate within phase 2
    assert cli("evaluate", run).exit_code == 0  # the best model, whichever phase saved it, loads


@pytest.mark.slow
def test_a_phase2_schedule_replaces_reduce_on_plateau_in_phase2_only(pretrained, npz_pair, monkeypatch):
    from cnnlab.training import fit as fit_module

    seen = []
    original = fit_module.fit

    def spy(model, data, cfg, *args, **kwargs):
        seen.append((kwargs["phase"], cfg.callbacks.reduce_lr_on_plateau is not None))
        return original(model, data, cfg, *args, **kwargs)

    monkeypatch.setattr(fit_module, "fit", spy)
    overrides = [f"data.path={npz_pair[1]}", "finetune.lr_schedule=onecycle", "callbacks.reduce_lr_on_plateau=true"]
    finetune(pretrained, head_epochs=1, epochs=1, overrides=overrides, **QUIET)
    assert seen == [(1, True), (2, False)]
