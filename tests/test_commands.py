"""Every command as a user runs it: a fresh process, the shipped experiment files, the README's words."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def cnnlab(*args, cwd):
    """Run ``python -m cnnlab ARGS`` in a fresh process; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def cifar_npz(tmp_path):
    """A CIFAR-shaped .npz (32x32x3, 10 classes) in keras.datasets' layout: 200 training, 50 test images."""
    rng = np.random.default_rng(0)
    path = tmp_path / "c.npz"
    np.savez(path, x_train=rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8), y_train=np.arange(200) % 10,
             x_test=rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), y_test=np.arange(50) % 10)
    return path


@pytest.mark.slow
def test_the_readme_session_on_the_shipped_vgg_experiment(cifar_npz, tmp_path):
    """README: ``cnnlab train experiments/vgg.yaml``, ``cnnlab finetune --freeze 100``, ``cnnlab evaluate``."""
    experiment = ROOT / "experiments" / "vgg.yaml"
    ok(cnnlab("train", experiment, "--set", "data.dataset=npz", "--set", f"data.path={cifar_npz}", "--epochs", "1",
              cwd=tmp_path))
    out = ok(cnnlab("finetune", "--freeze", "100", "--head-epochs", "1", "--epochs", "1", cwd=tmp_path))
    assert "Note: --freeze 100 covers the whole base" in out
    out = ok(cnnlab("evaluate", cwd=tmp_path))
    assert "test: 50 images" in out
    runs = sorted(p.parent.parent.name for p in (tmp_path / "runs").glob("*/*/model.keras"))
    assert runs == ["vgg16-cifar10", "vgg16-cifar10-finetune"]
    finetuned = next((tmp_path / "runs" / "vgg16-cifar10-finetune").iterdir())
    assert json.loads((finetuned / "metrics.json").read_text())["images"] == 50
    out = ok(cnnlab("runs", cwd=tmp_path))
    assert out.count("completed") == 2


@pytest.mark.slow
def test_check_models_runs_and_preview_in_fresh_processes(write_experiment, tmp_path):
    path = write_experiment({"training": {"epochs": 1}})
    out = ok(cnnlab("check", path, "--layers", cwd=tmp_path))
    assert "fc1" in out and "Dense" in out and "parameters" in out
    out = ok(cnnlab("check", ROOT / "experiments" / "vgg.yaml", cwd=tmp_path))  # no CIFAR download needed
    assert "block5_conv3" in out and "architecture: vgg16" in out
    out = ok(cnnlab("models", "--family", "vgg", "--input-shape", "32,32,3", "--classes", "10", cwd=tmp_path))
    assert "vgg16" in out and "resnet" not in out
    ok(cnnlab("train", path, cwd=tmp_path))
    assert "completed" in ok(cnnlab("runs", tmp_path / "runs", cwd=tmp_path))
    ok(cnnlab("augment-preview", path, "-n", "4", "-o", tmp_path / "p.png", cwd=tmp_path))
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.slow
def test_finetune_imports_in_a_fresh_process_and_names_a_misspelt_base(write_experiment, tmp_path):
    """A fresh `cnnlab finetune` imports the model families in its own order (it once registered vgg16 twice)."""
    path = write_experiment({"finetune": {"base": "mobilenet_v3"}})
    result = cnnlab("finetune", path, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error:") and "finetune.base" in errors[0]
    assert "Did you mean" in errors[0] and "Traceback" not in result.stderr
