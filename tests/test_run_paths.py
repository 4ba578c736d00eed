"""A run records where its data is: trained from one folder, every later command finds the data from any other."""

import shutil
from pathlib import Path

import pytest
import yaml

from cnnlab import rundir
from cnnlab.config import absolute_paths
from tests.test_resume import interrupt_at

NPZ = {"dataset": "npz", "validation_split": 0.2, "batch_size": 32}


def saved_config(run):
    return yaml.safe_load((run / rundir.CONFIG_FILE).read_text())


def test_absolute_paths_makes_paths_absolute_and_leaves_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base_run").mkdir()
    config = {"data": {"path": "../shared/mnist.npz", "test_path": None},
              "model": {"weights": "imagenet"}, "finetune": {"base": "base_run"}}
    out = absolute_paths(config)
    assert out["data"] == {"path": str(tmp_path.parent / "shared" / "mnist.npz"), "test_path": None}
    assert out["model"]["weights"] == "imagenet" and out["finetune"]["base"] == str(tmp_path / "base_run")
    assert absolute_paths({"finetune": {"base": "mobilenet_v2"}, "model": {"weights": "w.h5"}}) == {
        "finetune": {"base": "mobilenet_v2"}, "model": {"weights": str(tmp_path / "w.h5")}}
    assert config["data"]["path"] == "../shared/mnist.npz"  # the input is left as it was
    assert absolute_paths({"name": "no sections"}) == {"name": "no sections"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["npz", "directory"])
def test_a_run_trained_on_a_relative_path_evaluates_from_another_folder(cli, write_experiment, npz_path,
                                                                        image_folder, tmp_path, monkeypatch, kind):
    shared = tmp_path / "shared"
    shared.mkdir()
    data = Path(shutil.move(npz_path if kind == "npz" else image_folder, shared))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    relative = f"../shared/{data.name}"  # as in --set data.path=../shared/datasets/mnist.npz
    path = write_experiment({"data": {**NPZ, "dataset": kind}, "training": {"epochs": 1}})
    assert cli("train", path, "--set", f"data.path={relative}").exit_code == 0
    run = rundir.latest_run(tmp_path / "runs")
    assert saved_config(run)["data"]["path"] == str(data)
    monkeypatch.chdir(tmp_path)
    result = cli("evaluate", run)
    assert result.exit_code == 0, result.output
    assert "test:" in result.output


@pytest.mark.slow
def test_an_old_run_with_a_relative_path_still_resumes_and_evaluates(cli, write_experiment, npz_path, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_experiment({"data": {**NPZ, "path": "tiny.npz"}, "training": {"epochs": 2}})
    restore = interrupt_at(monkeypatch, 0)
    assert cli("train", path).exit_code == 130
    restore()
    run = rundir.latest_run(tmp_path / "runs")
    config = saved_config(run)
    config["data"]["path"] = "tiny.npz"  # as cnnlab wrote it before runs recorded their paths absolute
    (run / rundir.CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("train", path, "--set", "data.path=./tiny.npz")  # another spelling of the same file
    assert result.exit_code == 0, result.output
    assert f"Resuming the interrupted run {run}" in result.output
    assert rundir.list_runs(tmp_path / "runs") == [run] and rundir.status(run) == "completed"
    result = cli("evaluate", run)
    assert result.exit_code == 0 and "test: 30 images" in result.output
