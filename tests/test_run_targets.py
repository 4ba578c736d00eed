"""Which run a command acts on: the latest by creation, the folder you are in, said on every command;
`cnnlab runs` lists every folder the other commands accept; `predict IMAGE RUN_DIR` refused."""

import datetime
import json
import os
import shutil

import keras
import pytest
import yaml

from cnnlab import rundir
from cnnlab.config import build_config
from tests.conftest import error_line

TINY = {"name": "tiny", "seed": 1, "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
        "model": {"architecture": "mlp", "dropout": 0.1}, "training": {"epochs": 1, "learning_rate": 0.003},
        "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                      "reduce_lr_on_plateau": False, "early_stopping": False}}


def fake_run(root, folder, created=None, kind=None):
    """A run folder as far as listing goes: config.yaml (with ``provenance.created`` if given) and run.json."""
    run = root / folder
    run.mkdir(parents=True)
    config = {"name": run.parent.name if run.parent != root else run.name, "seed": 1}
    if created is not None:
        config["provenance"] = {"created": created}
    (run / rundir.CONFIG_FILE).write_text(yaml.safe_dump(config))
    (run / rundir.RUN_FILE).write_text(json.dumps({"status": "completed", **({"kind": kind} if kind else {})}))
    return run


# --------------------------------------------------------------------------- latest = most recently created


def test_latest_is_the_most_recently_created_run_not_the_last_name(tmp_path):
    root = tmp_path / "runs"
    older = fake_run(root, "mlp/20261202-011500", "2026-12-02T01:15:00")
    newer = fake_run(root, "mlp/20200101-000000", "2026-12-02T02:00:00")  # a clock set back when it was made
    assert rundir.latest_run(root) == newer
    assert rundir.list_runs(root) == [older, newer]


def test_an_ensemble_saved_before_a_training_does_not_beat_it(tmp_path):
    root = tmp_path / "runs"
    training = fake_run(root, "mlp/20261202-011500", "2026-12-02T01:15:00")
    ensemble = fake_run(root, "ensembles/e2", "2026-12-02T01:00:00", kind="ensemble")  # "e2" sorts after digits
    assert rundir.latest_run(root) == training
    assert rundir.list_runs(root) == [ensemble, training]


def test_runs_without_a_record_fall_back_to_their_folder_name_then_their_config_time(tmp_path):
    root = tmp_path / "runs"
    named = fake_run(root, "mlp/20261202-011500")
    unnamed = fake_run(root, "mlp/odd-name")
    early = datetime.datetime(2020, 1, 1).timestamp()
    os.utime(unnamed / rundir.CONFIG_FILE, (early, early))
    recorded = fake_run(root, "cnn/x", "2025-06-01T12:00:00")
    assert rundir.created(named) == datetime.datetime(2026, 12, 2, 1, 15)
    assert rundir.list_runs(root) == [unnamed, recorded, named]


def test_runs_made_in_one_second_are_ordered_by_when_their_config_was_written(tmp_path):
    root = tmp_path / "runs"
    first = fake_run(root, "b/20261202-011500", "2026-12-02T01:15:00")
    second = fake_run(root, "a/20261202-011500", "2026-12-02T01:15:00")
    os.utime(first / rundir.CONFIG_FILE, ns=(1, 1))
    assert rundir.latest_run(root) == second


# --------------------------------------------------------------------------- `cnnlab runs` lists what they accept


def listed(cli, *args):
    result = cli("runs", *args, "--json")
    assert result.exit_code == 0, result.output
    return [record["run"] for record in json.loads(result.output) if record["type"] == "run"]


def test_runs_lists_an_ensemble_saved_directly_under_the_root(cli, tmp_path):
    root = tmp_path / "runs"
    run = fake_run(root, "mlp/20261202-011500", "2026-12-02T01:15:00")
    ensemble = fake_run(root, "ens1", "2026-12-02T01:30:00", kind="ensemble")
    assert listed(cli, root) == [str(run), str(ensemble)]
    assert rundir.resolve_run(root) == ensemble  # what `cnnlab evaluate runs` acts on is listed


def test_runs_accepts_an_experiment_folder_a_run_and_the_folder_you_are_in(cli, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    first = fake_run(root, "mlp/20261202-011500", "2026-12-02T01:15:00")
    second = fake_run(root, "mlp/20261202-021500", "2026-12-02T02:15:00")
    fake_run(root, "cnn/20261202-031500", "2026-12-02T03:15:00")
    assert listed(cli, root / "mlp") == [str(first), str(second)]
    assert listed(cli, second) == [str(second)]
    monkeypatch.chdir(root / "mlp")
    assert listed(cli) == [first.name, second.name]


def test_no_runs_anywhere_is_one_error_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("runs")
    assert result.exit_code == 2 and "no runs under 'runs'" in error_line(result)


# --------------------------------------------------------------------------- the run of a real command, and said


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder holding runs/tiny/<stamp>: one digits MLP trained for an epoch."""
    from cnnlab.commands.train import train

    folder = tmp_path_factory.mktemp("targets")
    train(build_config({**TINY, "output_dir": str(folder / "runs")}), echo=lambda *_: None, verbose=0)
    keras.backend.clear_session()
    return folder


@pytest.fixture
def run(project):
    return rundir.latest_run(project / "runs")


def test_evaluate_says_which_run_it_picked(cli, project, run, monkeypatch):
    monkeypatch.chdir(project)
    result = cli("evaluate")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Run: {run.relative_to(project)} (latest)"
    named = cli("evaluate", run, "--json")
    assert named.exit_code == 0, named.output
    assert named.stderr.splitlines() == [f"Run: {run}"]
    assert json.loads(named.stdout)["images"] == 360  # stdout is the JSON alone


def test_inside_a_run_folder_that_run_is_the_target(cli, run, tmp_path, monkeypatch):
    image = digit_image(tmp_path / "digit.png")
    mine = tmp_path / "runs" / "tiny" / run.name
    shutil.copytree(run, mine)
    fake_run(tmp_path / "runs", "newer/20990101-000000", "2099-01-01T00:00:00")  # the latest, but not where we are
    monkeypatch.chdir(mine)
    result = cli("predict", image, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"Run: {mine} (the current folder)"]
    monkeypatch.chdir(mine.parent)
    result = cli("predict", image, "--json")
    assert result.stderr.splitlines() == [f"Run: {mine.name} (latest in the current folder)"]
    assert cli("predict", image, "--json", "--quiet").stderr == ""


def test_report_says_which_run_it_picked(cli, project, run, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    result = cli("report", "-o", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Run: {run.relative_to(project)} (latest)"


def test_finetune_says_which_run_is_its_base(project, run, monkeypatch):
    from cnnlab.commands.finetune import resolve_config

    monkeypatch.chdir(project)
    lines = []
    cfg = resolve_config(None, echo=lines.append)
    assert lines == [f"Base run: {run.relative_to(project)} (latest)"]
    assert cfg.finetune.base == str(run.resolve())


def digit_image(path):
    from PIL import Image
    from sklearn.datasets import load_digits

    Image.fromarray((load_digits().images[0] * 255 / 16).astype("uint8")).save(path)
    return path


def test_predict_says_which_run_and_refuses_the_run_named_last(cli, project, run, tmp_path, monkeypatch):
    image = digit_image(tmp_path / "digit.png")
    monkeypatch.chdir(project)
    result = cli("predict", image, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"Run: {run.relative_to(project)} (latest)"
    assert [row["path"] for row in json.loads(result.stdout)] == [str(image)]

    result = cli("predict", image, run)
    assert result.exit_code == 2
    line = error_line(result)
    assert f"'{run}' is a run folder, not images: name the run first: cnnlab predict RUN_DIR PATH..." in line
    result = cli("predict", run, image, project / "runs")
    assert "is a folder of runs, not images: name the run first (one run or model)" in error_line(result)
    shutil.copy(run / rundir.MODEL_FILE, tmp_path / "bare.keras")
    result = cli("predict", image, tmp_path / "bare.keras")
    assert "is a .keras model, not images: name the model first: cnnlab predict MODEL.keras" in error_line(result)
