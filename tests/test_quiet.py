"""Quiet by default, honest when asked: TensorFlow's noise captured, one line per epoch off a terminal,
--verbose/--quiet anywhere, usage errors in one line, TensorBoard logs, offline ImageNet weights."""

import io
import subprocess
import sys
import textwrap

import pytest

from cnnlab import rundir
from cnnlab.console import Console, keras_verbose
from tests.conftest import error_line


def cnnlab(*args, cwd=None):
    """Run cnnlab in a fresh process, stdout and stderr to pipes (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def python(code):
    """Run a Python snippet in a fresh process; return the finished process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_fit_verbosity_follows_the_stream():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert keras_verbose(False, Terminal()) == 1
    assert keras_verbose(False, io.StringIO()) == 2
    assert keras_verbose(True, Terminal()) == 0


def test_quiet_console_prints_nothing_informational(capsys):
    Console(quiet=True).info("Data: ...")
    Console().info("Run: ...")
    assert capsys.readouterr().out == "Run: ...\n"


def test_tensorflow_start_up_lines_are_captured_and_replayed_only_on_failure():
    quiet = python("""
        import warnings
        from cnnlab.console import Console, session
        with session(Console()):
            import tensorflow as tf
            tf.constant(1.0) + 1.0
            warnings.warn("Skipping variable loading for optimizer", UserWarning)
        print("done")
    """)
    assert quiet.returncode == 0 and quiet.stdout == "done\n"
    assert quiet.stderr == ""

    failed = python("""
        import sys, warnings
        from cnnlab.console import Console, session
        with session(Console()):
            print("python's own stderr", file=sys.stderr)
            warnings.warn("a keras warning", UserWarning)
            import tensorflow
            raise RuntimeError("boom")
    """)
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0] == "python's own stderr"  # live, not captured
    assert "a keras warning" in failed.stderr  # replayed with the capture
    assert "RuntimeError: boom" in lines[-1]


def test_a_bad_config_is_exactly_one_stderr_line(write_experiment, tmp_path):
    import numpy as np

    np.savez(tmp_path / "wrong.npz", a=np.zeros(3))
    cases = {"model.architecture": {"model": {"architecture": "vgg17"}},  # caught before TensorFlow
             "x_train": {"data": {"dataset": "npz", "path": str(tmp_path / "wrong.npz")}}}  # after it
    for named, overrides in cases.items():
        result = cnnlab("train", write_experiment(overrides))
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("Error: ") and named in result.stderr


@pytest.mark.slow
def test_redirected_training_prints_one_line_per_epoch(write_experiment, tmp_path):
    result = cnnlab("train", write_experiment({"training": {"epochs": 2}}))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\r" not in result.stdout and "\b" not in result.stdout
    epochs = [line for line in result.stdout.splitlines() if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["Epoch 1/2", "Epoch 2/2"]  # one line each
    assert all("val_accuracy" in line for line in epochs)
    assert result.stdout.splitlines()[-1].startswith("Done: ")
    assert len(result.stdout) < 2000


def test_verbose_anywhere_on_the_line(tmp_path):
    for args in (["runs", tmp_path, "--verbose"], ["--verbose", "runs", tmp_path], ["runs", "-v", tmp_path]):
        result = cnnlab(*args)
        assert result.returncode == 2, args
        assert "Traceback" in result.stderr and result.stderr.splitlines()[-1].startswith("Error: no runs under")
    result = cnnlab("runs", tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_quiet_prints_only_the_result(cli, write_experiment, tmp_path):
    result = cli("train", write_experiment({"training": {"epochs": 1}}), "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"Done: {rundir.latest_run(tmp_path / 'runs')}"]


def test_verbose_and_quiet_exclude_each_other(cli, tmp_path):
    result = cli("--quiet", "runs", tmp_path, "--verbose")
    assert result.exit_code == 2 and "--verbose and --quiet" in error_line(result)


def test_usage_errors_are_one_line(cli, write_experiment, tmp_path):
    path = write_experiment()
    (tmp_path / "a_file").write_text("")
    cases = {("train", tmp_path): "'EXPERIMENT'", ("train", path, "--epochs", "0"): "'--epochs'",
             ("train", path, "--output-dir", tmp_path / "a_file"): "'--output-dir'",
             ("trian", path): "Did you mean 'train'", ("train", path, "--bogus"): "--bogus",
             ("models", "--input-shape", "3,3"): "'--input-shape'", ("evaluate", "--split", "tset"): "'--split'"}
    for args, named in cases.items():
        result = cli(*args)
        assert result.exit_code == 2, args
        assert result.output.count("\n") == 1 and named in error_line(result), result.output
    result = cli("train", "--help")
    assert result.exit_code == 0 and result.output.startswith("Usage:") and "--quiet" in result.output


@pytest.mark.slow
def test_tensorboard_logs_get_event_files(cli, write_experiment, tmp_path):
    path = write_experiment({"training": {"epochs": 1}, "callbacks": {"tensorboard": True}})
    result = cli("train", path, "--quiet")
    assert result.exit_code == 0, result.output
    events = list((rundir.latest_run(tmp_path / "runs") / "tensorboard").rglob("events.out.tfevents*"))
    assert events and all(event.stat().st_size > 0 for event in events)


def test_offline_imagenet_weights_are_a_config_error(monkeypatch):
    from keras.src.utils import file_utils

    from cnnlab.config import ModelConfig
    from cnnlab.errors import ConfigError
    from cnnlab.models.registry import build_model

    url = "https://storage.googleapis.com/x/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

    def offline(fname, origin=None, **kwargs):  # what Keras raises with no network
        raise Exception(f"URL fetch failure on {origin or url}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ConfigError) as caught:
        build_model(ModelConfig(architecture="mobilenet_v2", weights="imagenet"), (32, 32, 3), 10)
    message = str(caught.value)
    assert "\n" not in message and "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in message
    assert ".keras/models" in message and "model.weights: /path/to/" in message
