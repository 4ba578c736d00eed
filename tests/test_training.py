"""Optimizers, schedules, class weights and callback plumbing, driven by configs and fake logs."""

import numpy as np
import pytest

from cnnlab.config import build_config
from cnnlab.errors import ConfigError
from cnnlab.training.callbacks import direction, make_callbacks
from cnnlab.tasks.classification import class_weight
from cnnlab.training.optimizers import build_learning_rate, build_optimizer


def training(**keys):
    return build_config({"data": {"dataset": "digits"}, "training": keys}).training


@pytest.mark.parametrize("name, cls, extra", [
    ("sgd", "SGD", {"momentum": 0.0}), ("momentum", "SGD", {"momentum": 0.9, "nesterov": False}),
    ("nesterov", "SGD", {"momentum": 0.9, "nesterov": True}), ("adagrad", "Adagrad", {}),
    ("rmsprop", "RMSprop", {}), ("adam", "Adam", {}), ("adamw", "AdamW", {}),
])
def test_optimizers_by_name(name, cls, extra):
    optimizer = build_optimizer(training(optimizer=name), 0.01)
    assert type(optimizer).__name__ == cls
    for key, value in extra.items():
        assert getattr(optimizer, key) == value
    assert float(optimizer.learning_rate) == pytest.approx(0.01)


def test_optimizer_options_are_keras_arguments():
    optimizer = build_optimizer(training(optimizer={"name": "adamw", "weight_decay": 0.05}), 1e-3)
    assert optimizer.weight_decay == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="unknown key 'training.optimizer.beta_one'.*Allowed here: beta_1, beta_2"):
        build_optimizer(training(optimizer={"name": "adam", "beta_one": 0.8}), 1e-3)


def test_step_schedule_counts_in_epochs():
    lr = build_learning_rate(training(learning_rate=0.1, epochs=10,
                                      lr_schedule={"name": "step", "milestones": [3, 6], "gamma": 0.1}), 100, 10)
    assert [float(lr(step)) for step in (0, 299, 301, 599, 601)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_cosine_and_onecycle_schedules():
    cosine = build_learning_rate(training(learning_rate=0.1, lr_schedule="cosine"), 10, 10)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0, abs=1e-6)
    onecycle = build_learning_rate(training(learning_rate=0.1, lr_schedule={"name": "onecycle"}), 10, 10)
    assert float(onecycle(0)) == pytest.approx(0.1 / 25) and float(onecycle(30)) == pytest.approx(0.1, rel=1e-3)
    assert float(onecycle(100)) < 1e-4
    with pytest.raises(ConfigError, match="unknown key 'training.lr_schedule.gama'.*Did you mean 'gamma'"):
        build_learning_rate(training(lr_schedule={"name": "step", "gama": 0.5}), 10, 10)


def test_class_weights():
    cfg = build_config({"data": {"dataset": "digits"}, "training": {"class_weight": "balanced"}})
    weights = class_weight(cfg, np.array([0, 0, 0, 1]), ["a", "b"])
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0})
    cfg = build_config({"data": {"dataset": "digits"}, "training": {"class_weight": {"1": 3.0}}})
    assert class_weight(cfg, np.array([0, 1]), ["0", "1"]) == {0: 1.0, 1: 3.0}
    cfg = build_config({"data": {"dataset": "directory", "path": "."}, "training": {"class_weight": {"zebra": 3.0}}})
    with pytest.raises(ConfigError, match="'zebra' is not a class"):
        class_weight(cfg, np.array([0, 1]), ["a", "b"])


def test_monitor_direction():
    assert direction("val_loss", "auto") == "min" and direction("val_predictions_accuracy", "auto") == "max"
    assert direction("val_loss", "max") == "max"


def test_callbacks_follow_the_config(tmp_path):
    cfg = build_config({"data": {"dataset": "digits"},
                        "callbacks": {"early_stopping": {"patience": 3}, "reduce_lr_on_plateau": False,
                                      "tensorboard": True}}).callbacks
    names = [type(c).__name__ for c in make_callbacks(cfg, tmp_path)]
    assert names == ["TerminateOnNaN", "AtomicModelCheckpoint", "EarlyStopping", "TensorBoard"]
    early = make_callbacks(cfg, tmp_path)[2]
    assert early.patience == 3 and early.monitor == "val_loss"


def test_steps_per_execution_is_the_largest_divisor_of_an_epoch():
    from cnnlab.training.fit import steps_per_execution

    assert [steps_per_execution(steps, 8) for steps in (469, 120, 100, 13, 1)] == [7, 8, 5, 1, 1]
    assert steps_per_execution(120, 1) == 1


def test_several_steps_per_execution_train_the_same_model(cli, write_experiment, tmp_path):
    """Same batches, same updates, same epoch ends: only fewer calls into the compiled step."""
    import keras

    histories, weights = [], []
    for most in (1, 4):
        path = write_experiment({"output_dir": str(tmp_path / f"runs{most}"), "runtime": {"steps_per_execution": most},
                                 "training": {"epochs": 3, "learning_rate": 0.003, "lr_schedule": "onecycle"}})
        assert cli("train", path, "--quiet").exit_code == 0
        run = next((tmp_path / f"runs{most}" / "tiny").iterdir())
        histories.append(np.genfromtxt(run / "history.csv", delimiter=",", names=True))
        weights.append(keras.saving.load_model(run / "model.keras").get_weights())
    assert len(histories[1]) == 3
    for column in histories[0].dtype.names:  # loss, accuracy and the val_ columns
        assert np.allclose(histories[0][column], histories[1][column], rtol=1e-5), column
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(*weights))


def test_compile_model_gives_keras_a_divisor_of_the_epoch():
    import keras

    from cnnlab.training.fit import compile_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    cfg = build_config({"data": {"dataset": "digits"}, "runtime": {"steps_per_execution": 8}})
    assert compile_model(model, cfg, 2, 18).steps_per_execution == 6
    assert compile_model(model, cfg, 2, 17).steps_per_execution == 1
