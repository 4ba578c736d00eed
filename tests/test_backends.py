"""`runtime.backend`: the core commands on JAX in fresh processes (as a user runs them), and the backend's rules."""

import importlib.util
import json
import subprocess
import sys

import pytest

from cnnlab import rundir
from tests.conftest import error_line, sigkill_after_epoch

HAS_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed (pip install 'cnnlab[jax]')")
CNNLAB = [sys.executable, "-m", "cnnlab"]


def run(*args, cwd):
    result = subprocess.run([*CNNLAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def jax_experiment(write_experiment):
    """A tiny CNN on digits with the layers engine's affine transform and pad-and-crop, on JAX."""
    return write_experiment({"runtime": {"backend": "jax"}, "model": {"architecture": "simple_cnn", "dropout": 0.1},
                             "augmentation": {"rotation_range": 10, "zoom_range": 0.1, "crop_padding": 1},
                             "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64}})


@needs_jax
@pytest.mark.slow
def test_train_evaluate_finetune_and_report_on_jax(jax_experiment, tmp_path):
    out = run("train", jax_experiment, cwd=tmp_path)
    run_dir = rundir.latest_run(tmp_path / "runs")
    assert "Done: " in out and rundir.status(run_dir) == "completed"
    metrics = json.loads(run("evaluate", run_dir, "--json", cwd=tmp_path))
    assert metrics["accuracy"] > 0.2  # 10 classes: better than chance after 2 epochs
    out = run("finetune", run_dir, "--freeze", "2", "--head-epochs", "1", "--epochs", "1",
              "--set", "finetune.lr_mult=10", "--set", "finetune.lr_schedule=onecycle", cwd=tmp_path)
    assert "the first trainable layer's 10x lower" in out
    tuned = rundir.latest_run(tmp_path / "runs")
    assert rundir.run_info(tuned)["kind"] == "finetune" and rundir.status(tuned) == "completed"
    run("report", tuned, "-o", tmp_path / "page.html", cwd=tmp_path)  # on TensorFlow: a JAX run's model loads
    assert "Grad-CAM" in (tmp_path / "page.html").read_text()


@needs_jax
@pytest.mark.slow
def test_the_generator_engine_and_seeds_on_jax(jax_experiment, tmp_path):
    out = run("train", jax_experiment, "--set", "augmentation.engine=generator", "--set", "augmentation.crop_padding=0",
              "--seeds", "1,2", cwd=tmp_path)
    assert "[seeds 1,2]" in out and len(rundir.list_runs(tmp_path / "runs")) == 2


@needs_jax
@pytest.mark.slow
def test_sigkill_on_jax_then_the_same_command_resumes(write_experiment, tmp_path):
    from cnnlab.training import resume

    path = write_experiment({"runtime": {"backend": "jax"}, "training": {"epochs": 8}, "data": {"batch_size": 16}})
    command = [*CNNLAB, "train", str(path)]
    run_dir = sigkill_after_epoch(command, tmp_path)
    assert rundir.status(run_dir) == "interrupted"
    done = resume.load(run_dir)["epoch"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"going on after epoch {done}" in result.stdout
    assert rundir.list_runs(tmp_path / "runs") == [run_dir]
    assert len(rundir.read_history(run_dir)) == 8


def test_a_backend_other_than_the_running_one_is_one_error(cli, write_experiment, tmp_path):
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    result = cli("train", write_experiment({"runtime": {"backend": other}}))
    assert result.exit_code == 2
    line = error_line(result)
    assert f"`runtime.backend` is {other}, but Keras already runs on" in line and "new process" in line
    assert not (tmp_path / "runs").exists()


def test_a_backend_that_is_not_installed_says_how_to_install_it(monkeypatch):
    from cnnlab.backend import use_backend
    from cnnlab.errors import ConfigError

    monkeypatch.delitem(sys.modules, "keras")  # as in a fresh process, before Keras is imported
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    with pytest.raises(ConfigError, match=r"needs jax, which is not installed: pip install 'cnnlab\[jax\]'"):
        use_backend("jax")
    use_backend("tensorflow")
    import os

    assert os.environ["KERAS_BACKEND"] == "tensorflow"


def test_an_unknown_backend_is_a_config_error(cli, write_experiment):
    result = cli("check", write_experiment({"runtime": {"backend": "torch"}}))
    assert result.exit_code == 2
    assert "runtime.backend" in error_line(result) and "'tensorflow' or 'jax'" in error_line(result)
