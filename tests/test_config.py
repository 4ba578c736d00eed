"""The experiment file: strict loading, typed values, --set, one Error line and exit code 2."""

import re

import pytest

from cnnlab.config import apply_overrides, build_config, load_config
from cnnlab.errors import ConfigError
from tests.conftest import error_line


def test_defaults_follow_the_spec():
    cfg = build_config({"data": {"dataset": "cifar10"}})
    assert cfg.data.validation_split == 0.1 and cfg.data.batch_size == 128
    assert cfg.training.optimizer.name == "adam" and cfg.training.learning_rate == 0.001
    assert cfg.callbacks.early_stopping.patience == 15
    assert cfg.callbacks.model_checkpoint.save_best_only is True
    assert cfg.finetune.learning_rate == 1e-5


def test_name_defaults_to_the_file_stem(write_experiment):
    path = write_experiment()
    path.write_text(path.read_text().replace("name: tiny\n", ""))
    assert load_config(path).name == "tiny"


@pytest.mark.parametrize("data, expected", [
    ({"data": {"dataset": "cifar-10"}}, "Did you mean 'cifar10'?"),
    ({"data": {"dataset": "mnist", "batchsize": 3}}, "unknown key 'data.batchsize'. Did you mean 'batch_size'?"),
    ({"data": {"dataset": "mnist"}, "trainig": {}}, "unknown key 'trainig'. Did you mean 'training'?"),
    ({"data": {"dataset": "mnist", "batch_size": -1}}, "'data.batch_size': Input should be greater than 0"),
    ({"data": {"dataset": "mnist"}, "training": {"epochs": "ten"}}, "'training.epochs'"),
    ({"data": {"dataset": "mnist", "validation_split": 1.5}}, "'data.validation_split'"),
    ({"data": {"dataset": "mnist"}, "training": {"optimizer": "adm"}}, "Did you mean 'adam'?"),
    ({"data": {"dataset": "mnist"}, "callbacks": {"early_stopping": {"patiense": 3}}},
     "unknown key 'callbacks.early_stopping.patiense'. Did you mean 'patience'?"),
    ({"data": {"dataset": "npz"}}, "data.path is required"),
    ({"data": {"dataset": "mnist", "validation_split": 0}}, "no validation data"),
    ({}, "'data' is required"),
])
def test_bad_values_name_the_key_and_what_is_allowed(data, expected):
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_received_value_is_quoted():
    with pytest.raises(ConfigError, match=r"Received: 'cifar-10'"):
        build_config({"data": {"dataset": "cifar-10"}})


def test_duplicate_keys_are_rejected(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data:\n  dataset: mnist\n  batch_size: 3\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match="duplicate key 'batch_size' at line 4"):
        load_config(path)


def test_invalid_yaml_says_where(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  dataset: [mnist\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_set_overrides_are_yaml_typed_and_validated(write_experiment):
    path = write_experiment()
    cfg = load_config(path, ["training.epochs=3", "augmentation.horizontal_flip=true",
                             "training.optimizer=sgd", "training.optimizer.momentum=0.9",
                             "data.image_size=[16, 16]"])
    assert cfg.training.epochs == 3 and cfg.augmentation.horizontal_flip is True
    assert cfg.training.optimizer.name == "sgd"  # "sgd" became {name: sgd, momentum: 0.9}
    assert cfg.training.optimizer.model_extra == {"momentum": 0.9}
    assert cfg.data.image_size == (16, 16)
    with pytest.raises(ConfigError, match="unknown key 'training.epoch'. Did you mean 'training.epochs'"):
        load_config(path, ["training.epoch=3"])
    with pytest.raises(ConfigError, match="--set takes KEY=VALUE"):
        load_config(path, ["training.epochs"])


def test_dedicated_options_win_over_set(write_experiment):
    cfg = load_config(write_experiment(), ["training.epochs=3"], **{"training.epochs": 7})
    assert cfg.training.epochs == 7


def test_apply_overrides_does_not_touch_its_input():
    data = {"training": {"epochs": 1}}
    apply_overrides(data, ["training.epochs=2"])
    assert data == {"training": {"epochs": 1}}


def test_callbacks_switch_off_and_on():
    cfg = build_config({"data": {"dataset": "mnist"},
                        "callbacks": {"early_stopping": False, "reduce_lr_on_plateau": True}})
    assert cfg.callbacks.early_stopping is None
    assert cfg.callbacks.reduce_lr_on_plateau.patience == 10


@pytest.mark.parametrize("content, expected", [
    ("data:\n  dataset: mnist\n  batchsize: 3\n", "unknown key 'data.batchsize'"),
    ("data:\n  dataset: mnist\ntraining:\n  epochs: -3\n", "'training.epochs'"),
    ("data:\n  dataset: mnist\ndata:\n  dataset: mnist\n", "duplicate key 'data'"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_cli_bad_config_is_one_error_line_with_exit_code_2(cli, tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    for command in ("train", "check"):
        result = cli(command, path)
        assert result.exit_code == 2
        assert expected in error_line(result)


def test_cli_missing_file_and_bad_set(cli, write_experiment, tmp_path):
    result = cli("train", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "does not exist" in error_line(result)
    result = cli("train", write_experiment(), "--set", "model.dropuot=0.3")
    assert result.exit_code == 2 and "Did you mean 'model.dropout'" in error_line(result)


def test_a_set_typo_is_reported_as_the_set_and_a_file_typo_as_the_file(cli, write_experiment):
    path = write_experiment()
    result = cli("train", path, "--set", "training.epohcs=3")
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: --set training.epohcs=3: unknown key 'training.epohcs'. "
                                         "Did you mean 'training.epochs'?")
    assert str(path) not in error_line(result)
    path.write_text(path.read_text().replace("epochs:", "epohcs:"))
    with pytest.raises(ConfigError, match=f"^{path}: unknown key 'training.epohcs'. Did you mean 'epochs'"):
        load_config(path, ["model.dropout=0.2"])
    with pytest.raises(ConfigError, match="^--set training={epohcs: 3}: unknown key 'training.epohcs'"):
        load_config(write_experiment(), ["training={epohcs: 3}"])  # a whole section given by --set


@pytest.mark.parametrize("item, expected", [
    ("data.image_size=32,32",
     "--set data.image_size=32,32: `data.image_size` must be [H, W], e.g. --set data.image_size=[32,32]. "
     "Received: '32,32'."),
    ("data.image_size=[32]", "`data.image_size` must be [H, W], e.g. --set data.image_size=[32,32]. Received: [32]."),
    ("augmentation.brightness_range=0.8,1.2",
     "`augmentation.brightness_range` must be [low, high], e.g. --set augmentation.brightness_range=[0.8,1.2]."),
    ("augmentation.zoom_range=0.1,0.2",
     "`augmentation.zoom_range` must be a number or [low, high], e.g. --set augmentation.zoom_range=[0.1,0.2]. "
     "Received: '0.1,0.2'."),
    ("evaluate.top_k=1,5", "`evaluate.top_k` must be a list of k values, e.g. --set evaluate.top_k=[1,5]."),
])
def test_a_list_in_another_form_is_told_the_form(write_experiment, item, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write_experiment(), [item])
    assert expected in str(caught.value) and "valid tuple" not in str(caught.value)


def test_a_list_in_another_form_in_the_file_gets_a_yaml_example(write_experiment):
    path = write_experiment({"data": {"dataset": "digits", "image_size": "16x16"}})
    with pytest.raises(ConfigError, match=r"`data.image_size` must be \[H, W\], e.g. image_size: \[32, 32\]. "
                                          "Received: '16x16'."):
        load_config(path)


def test_a_schedule_switches_plateau_off_unless_both_are_asked_for():
    cfg = build_config({"data": {"dataset": "mnist"}, "training": {"lr_schedule": "cosine"}})
    assert cfg.callbacks.reduce_lr_on_plateau is None and cfg.training.lr_schedule.name == "cosine"
    with pytest.raises(ConfigError, match="both set the learning rate"):
        build_config({"data": {"dataset": "mnist"}, "training": {"lr_schedule": "cosine"},
                      "callbacks": {"reduce_lr_on_plateau": {"patience": 3}}})


# --------------------------------------------------------------------------- validate first, without TensorFlow


def test_a_bad_config_is_rejected_without_importing_tensorflow(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text("data: {dataset: digits}\nmodel: {architecture: vgg17}\n")
    code = ("import sys\nfrom cnnlab.config import load_config\nfrom cnnlab.errors import ConfigError\n"
            f"try:\n    load_config({str(path)!r})\nexcept ConfigError as exc:\n    print(exc)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Did you mean 'vgg19'" in done.stdout and "`cnnlab models` lists all" in done.stdout
    assert done.stdout.strip().endswith("[]"), done.stdout


@pytest.mark.parametrize("changes, expected", [
    ({"model": {"architecture": "vgg17"}}, "Close names: vgg19, vgg16"),
    ({"model": {"architecture": "resnet50", "batch_norm": True}}, "not an option of 'resnet50'"),
    ({"model": {"architecture": "mlp", "weights": "imagenet"}}, "has no pretrained weights"),
    ({"model": {"kernel_initializer": "he_norml"}}, "Did you mean 'he_normal'"),
    ({"training": {"optimizer": {"name": "sgd", "momentun": 0.9}}}, "Did you mean 'momentum'"),
    ({"training": {"optimizer": {"name": "adam", "beta_1": "fast"}}}, "`training.optimizer.beta_1` must be a number"),
    ({"training": {"optimizer": {"name": "adamw", "amsgrad": 1}}}, "must be true or false"),
    ({"training": {"lr_schedule": {"name": "step", "milestones": "abc"}}}, "milestones` must be a list"),
    ({"training": {"lr_schedule": {"name": "exponential", "gama": 0.5}}}, "Did you mean 'gamma'"),
    ({"callbacks": {"early_stopping": {"monitor": "val_acc"}}}, "Did you mean 'val_accuracy'"),
    ({"callbacks": {"model_checkpoint": {"monitor": "val_top5_accuracy"}}, "evaluate": {"top_k": [1, 3]}},
     "val_top3_accuracy"),
    ({"training": {"class_weight": {10: 2.0}}}, "not a class of digits"),
    ({"name": "../../x"}, "one folder name"),
    ({"name": ".."}, "one folder name"),
    ({"output_dir": "../outside"}, "'..' components"),
    ({"seed": -1}, "'seed'"),
])
def test_everything_checkable_from_the_config_is_checked_when_it_loads(changes, expected):
    data = {"data": {"dataset": "digits"}, **changes}
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert expected in str(info.value)


def test_good_values_pass_the_load_time_checks():
    cfg = build_config({"name": "run-1.a_b", "output_dir": "/tmp/abs/runs", "data": {"dataset": "cifar10"},
                        "model": {"architecture": "vgg16", "weights": "imagenet", "activation": "gelu"},
                        "training": {"optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True, "clipnorm": None},
                                     "lr_schedule": {"name": "step", "milestones": [2, 4], "gamma": 0.2},
                                     "class_weight": {"cat": 2.0, 0: 1.5}},
                        "callbacks": {"early_stopping": {"monitor": "val_top5_accuracy"}}})
    assert cfg.training.optimizer.model_extra["momentum"] == 0.9
    assert build_config({"data": {"dataset": "digits"}, "model": {"architecture": "googlenet", "aux_logits": True},
                         "callbacks": {"model_checkpoint": {"monitor": "val_accuracy"}}}).model.aux_logits


def test_exponent_numbers_are_numbers(write_experiment):
    cfg = load_config(write_experiment(), ["training.learning_rate=1e-4",
                                           "training.optimizer={name: adam, epsilon: 1e-7}"])
    assert cfg.training.learning_rate == 1e-4 and cfg.training.optimizer.model_extra["epsilon"] == 1e-7


def test_a_missing_name_is_the_file_stem_made_safe(tmp_path):
    path = tmp_path / "my experiment (2).yaml"
    path.write_text("name: null\ndata: {dataset: digits}\n")
    assert load_config(path).name == "my_experiment__2_"


@pytest.mark.parametrize("data, expected", [
    ({"dataset": "npz", "path": "missing.npz"}, "does not exist"),
    ({"dataset": "directory", "path": "missing"}, "is not a folder"),
    ({"dataset": "directory", "path": ".", "test_path": "missing"}, "data.test_path"),
])
def test_paths_the_experiment_reads_are_checked_on_request(write_experiment, data, expected):
    path = write_experiment({"data": data})
    with pytest.raises(ConfigError, match=expected):
        load_config(path, check_paths=True)


@pytest.mark.parametrize("content, expected", [
    ("training: fast\ndata: {dataset: digits}\n", "must be a section"),
    ("? [1]\n: 2\n", "keys must be plain names"),
    ("Model: {}\ndata: {dataset: digits}\n", "unknown key 'Model'. Did you mean 'model'?"),
    ("x: &x [*x]\n", "refers to the value that holds it"),
    ("A:\n", "unknown key 'A'"),
    ("training: true\ndata: {dataset: digits}\n", "must be a section"),
    (b"name: caf\xe9\n", "not UTF-8"),
])
def test_the_loader_raises_only_config_errors(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path)


def test_an_alias_bomb_is_rejected_fast(tmp_path):
    import time

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(path)
    assert time.perf_counter() - start < 1.0
