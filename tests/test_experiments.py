"""Every shipped experiment file loads strictly and builds its model (no download, no training)."""

from pathlib import Path

import keras
import pytest

from cnnlab.commands.check import check
from cnnlab.config import load_config

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


def test_experiments_are_shipped():
    names = {p.stem for p in EXPERIMENTS}
    assert {"digits_mlp", "mnist_deep_cnn", "vgg", "alexnet", "googlenet", "resnet20", "resnet56"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_loads_and_builds(path):
    cfg = load_config(path)
    if cfg.data.dataset in ("npz", "directory", "csv") and not Path(cfg.data.path).exists():
        pytest.skip(f"{path.name} needs {cfg.data.path}, which this machine does not have")
    lines = []
    model = check(cfg, echo=lines.append)
    assert model.name == cfg.model.architecture
    assert any("Total params" in line for line in lines)
    keras.backend.clear_session()
