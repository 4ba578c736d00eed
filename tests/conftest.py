"""Shared fixtures: tiny data the tests make themselves, experiment files, the CLI runner."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
    """A run sets Keras's global dtype policy to its precision; no test inherits another's."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].config.set_dtype_policy("float32")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke cnnlab in-process; returns the click Result."""
    from cnnlab.cli import main

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def make_images(n_per_class, classes=3, size=12, channels=1, seed=0):
    """Images whose class is a bright square in a class-specific corner, plus noise."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label in range(classes):
        for _ in range(n_per_class):
            image = rng.integers(0, 60, size=(size, size, channels))
            r, c = divmod(label % 4, 2)
            half = size // 2
            image[r * half:(r + 1) * half, c * half:(c + 1) * half] += 180
            x.append(image)
            y.append(label)
    return np.clip(np.array(x), 0, 255).astype(np.uint8), np.array(y)


@pytest.fixture
def npz_path(tmp_path):
    """A small .npz in keras.datasets layout: 3 classes of 12x12 grayscale images."""
    x, y = make_images(40)
    xt, yt = make_images(10, seed=1)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x[..., 0], y_train=y, x_test=xt[..., 0], y_test=yt)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """A folder of class sub-folders holding PNGs (RGB and grayscale mixed) and a hidden folder."""
    from PIL import Image

    root = tmp_path / "images"
    x, y = make_images(12, channels=3)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if i % 3 == 0:
            picture = picture.convert("L")
        picture.save(folder / f"img_{i}.{'png' if i % 2 else 'bmp'}")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "junk.txt").write_text("not a class")
    return root


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment file from a dict (merged over a tiny, fast default)."""

    def write(overrides=None, name="tiny"):
        base = {
            "name": name,
            "seed": 1,
            "output_dir": str(tmp_path / "runs"),
            "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
            "model": {"architecture": "mlp", "dropout": 0.1},
            "training": {"epochs": 2, "learning_rate": 0.003},
            "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                          "reduce_lr_on_plateau": False, "early_stopping": False},
        }
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(base))
        return path

    return write


def error_line(result):
    """The single ``Error:`` line of a failed command (asserts there is exactly one and no traceback)."""
    output = result.output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    return lines[0]


def sigkill_after_epoch(command, cwd, epoch=2, timeout=180):
    """Start `command` (a training) in `cwd`, SIGKILL it once its resume state has `epoch` epochs; its run."""
    import signal
    import subprocess

    from cnnlab import artifacts

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    wait_for_epoch(cwd, epoch, timeout)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return artifacts.latest_run(Path(cwd) / "runs")


def wait_for_epoch(cwd, epoch, timeout=180):
    """Wait until the newest run under `cwd`/runs has saved the resume state of `epoch` epochs (or `timeout` s)."""
    import time

    from cnnlab import artifacts
    from cnnlab.training import resume

    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = artifacts.list_runs(Path(cwd) / "runs")
        if runs and (resume.load(runs[-1]) or {}).get("epoch", 0) >= epoch:
            return
        time.sleep(0.05)
