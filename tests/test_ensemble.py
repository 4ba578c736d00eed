"""`cnnlab ensemble`: averaged probabilities, the checks that refuse a bad ensemble, and the saved model."""

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from cnnlab import rundir
from cnnlab.commands.ensemble import ensemble
from cnnlab.commands.evaluate import evaluate
from cnnlab.config import build_config
from cnnlab.rundir import open_target
from tests.conftest import error_line

BASE = {"seed": 1, "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
        "model": {"architecture": "mlp", "dropout": 0.1}, "training": {"epochs": 2, "learning_rate": 0.003},
        "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                      "reduce_lr_on_plateau": False, "early_stopping": False}}


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four tiny digits runs: an MLP, a CNN on the same data and seed, the MLP with another seed, and the MLP
    with another data.split_seed."""
    from cnnlab.commands.train import train

    root = tmp_path_factory.mktemp("ensemble") / "runs"

    def run(name, **changes):
        cfg = build_config({**BASE, "name": name, "output_dir": str(root), **changes})
        path = train(cfg, echo=quiet, verbose=0)
        evaluate(path, echo=quiet)  # writes the run's own metrics.json
        keras.backend.clear_session()
        return path

    return {"mlp": run("mlp"), "cnn": run("cnn", model={"architecture": "simple_cnn"}),
            "seed2": run("seed2", seed=2), "split2": run("split2", data={**BASE["data"], "split_seed": 3})}


def own_metrics(run):
    return json.loads((run / rundir.METRICS_FILE).read_text())


def test_the_same_run_twice_equals_it(runs):
    result = ensemble([runs["mlp"], runs["mlp"]], echo=quiet)
    alone = own_metrics(runs["mlp"])
    assert result["accuracy"] == alone["accuracy"]
    assert result["loss"] == pytest.approx(alone["loss"], rel=1e-5)
    assert [m["accuracy"] for m in result["members"]] == [alone["accuracy"]] * 2


def test_two_different_runs_are_no_worse_than_the_worse(runs):
    """Accuracy: seeded CPU training is reproducible, so this holds every time on these runs (0.95 against
    0.94 and 0.92 when written). Loss: Jensen's inequality (-log is convex), so it holds for any members."""
    result = ensemble([runs["mlp"], runs["cnn"]], echo=quiet)
    members = result["members"]
    assert result["accuracy"] >= min(m["accuracy"] for m in members)
    assert result["loss"] <= np.mean([m["loss"] for m in members]) + 1e-6
    assert [m["accuracy"] for m in members] == [own_metrics(runs[k])["accuracy"] for k in ("mlp", "cnn")]


def test_weights_pick_members(runs):
    result = ensemble([runs["mlp"], runs["cnn"]], weights="1,0", echo=quiet)
    assert result["weights"] == [1.0, 0.0]
    assert result["accuracy"] == result["members"][0]["accuracy"]
    assert result["loss"] == pytest.approx(result["members"][0]["loss"], rel=1e-5)


def test_the_report_names_each_member_and_the_ensemble(cli, runs):
    result = cli("ensemble", runs["mlp"], runs["cnn"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "test: 360 images, 2 members"
    assert lines[1].split()[:2] == ["member_0", str(runs["mlp"])] and "accuracy" in lines[1] and "loss" in lines[1]
    assert lines[3].split()[0] == "ensemble"
    result = cli("ensemble", runs["mlp"], runs["cnn"], "--quiet")
    assert len(result.output.splitlines()) == 1
    assert result.output.split() == ["test:", "360", "images,", "2", "members", *lines[3].split()]


def refused(cli, *args):
    result = cli("ensemble", *args)
    assert result.exit_code == 2, result.output
    return error_line(result)


def copy_run(run, tmp_path, name="copy"):
    copy = tmp_path / name
    shutil.copytree(run, copy)
    return copy


def test_refuses_different_class_names_or_order(cli, runs, tmp_path):
    copy = copy_run(runs["mlp"], tmp_path)
    (copy / rundir.CLASSES_FILE).write_text(json.dumps([str(i) for i in reversed(range(10))]))
    assert "different class names or order" in refused(cli, runs["mlp"], copy)


def test_refuses_a_different_test_split(cli, runs):
    """digits has no test split: data.split_seed draws it, so another split_seed tests on other images."""
    assert "different test data" in refused(cli, runs["mlp"], runs["split2"])
    assert "different val data" in refused(cli, runs["mlp"], runs["split2"], "--split", "val")


def test_two_seeds_of_one_experiment_ensemble(cli, runs):
    """The seed varies training only (data.split_seed draws the splits): two seeds share their test images."""
    result = cli("ensemble", runs["mlp"], runs["seed2"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "test: 360 images, 2 members"


def test_refuses_different_input_shapes(cli, runs, tmp_path):
    copy = copy_run(runs["mlp"], tmp_path)
    inputs = keras.Input((10, 10, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).save(copy / rundir.MODEL_FILE)
    assert "images of different shapes" in refused(cli, runs["mlp"], copy)


def test_refuses_bad_usage(cli, runs, tmp_path):
    assert "at least 2 runs" in refused(cli, runs["mlp"])
    assert "--weights must be 2" in refused(cli, runs["mlp"], runs["cnn"], "--weights", "1,2,3")
    assert "--weights must be 2" in refused(cli, runs["mlp"], runs["cnn"], "--weights", "0,0")
    assert "--weights must be 2" in refused(cli, runs["mlp"], runs["cnn"], "--weights", "a,b")
    bare = tmp_path / "bare.keras"
    shutil.copy(runs["mlp"] / rundir.MODEL_FILE, bare)
    assert "outside a run folder" in refused(cli, runs["mlp"], bare)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("")
    assert "not an empty folder" in refused(cli, runs["mlp"], runs["cnn"], "--save", tmp_path / "taken")


@pytest.mark.parametrize("weights", [None, "3,1"])
def test_the_saved_ensemble_is_a_run_that_evaluate_accepts(cli, runs, tmp_path, weights):
    saved = tmp_path / "ensemble"
    args = [runs["mlp"], runs["cnn"], "--save", saved] + (["--weights", weights] if weights else [])
    result = cli("ensemble", *args)
    assert result.exit_code == 0, result.output
    expected = json.loads((saved / rundir.METRICS_FILE).read_text())
    opened = open_target(saved)
    assert opened.run == saved and opened.config().name == "ensemble"
    assert opened.class_names() == [str(i) for i in range(10)]
    info = rundir.run_info(saved)
    assert info["kind"] == "ensemble" and info["members"] == [str(runs[k].resolve()) for k in ("mlp", "cnn")]

    model = opened.load_model()  # safe mode: no Lambda layer
    assert [layer.name for layer in model.layers][1:3] == ["member_0", "member_1"]
    assert model.layers[1].name != model.layers[2].name and model.output_shape == (None, 10)

    result = cli("evaluate", saved, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{"):])
    assert metrics["accuracy"] == expected["accuracy"]
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    keras.backend.clear_session()


def test_an_ensemble_of_ensembles_and_evaluate_in_python(runs, tmp_path):
    first = ensemble([runs["mlp"], runs["cnn"]], save=tmp_path / "one", echo=quiet)
    nested = ensemble([tmp_path / "one", runs["mlp"]], echo=quiet)
    assert nested["members"][0]["accuracy"] == first["accuracy"]
    assert evaluate(tmp_path / "one", echo=quiet)["accuracy"] == first["accuracy"]


def test_the_report_of_a_saved_ensemble_looks_inside_its_members(runs, tmp_path):
    """Grad-CAM is the CNN member's (the MLP one named as left out), not "a dense network"; the page lists
    the members with their own epochs and wall times instead of the ensemble's "epochs 0", "wall time 0 s"."""
    from cnnlab.commands.report import report
    from cnnlab.visual.gradcam import GradCam, grad_cam

    saved = tmp_path / "saved"
    ensemble([runs["mlp"], runs["cnn"]], weights="1,3", save=saved, echo=quiet)
    model = open_target(saved).load_model()
    cam = grad_cam(model)
    assert cam.available and cam.layer_name.startswith("member_1/") and "member_0 (a dense network" in cam.note
    images = np.random.default_rng(0).uniform(0, 16, (4, 8, 8, 1)).astype("float32")
    classes = model.predict_on_batch(images).argmax(axis=1)
    alone = GradCam(open_target(runs["cnn"]).load_model()).heatmaps(images, classes)
    np.testing.assert_allclose(cam.heatmaps(images), alone, atol=1e-5)  # the only member with a feature map

    page = report([saved], output=tmp_path / "report.html", echo=quiet).read_text()
    environment = page[page.index('data-section="environment"'):page.index('data-section="metrics"')]
    assert "<td>epochs</td>" not in environment and "<td>wall time</td>" not in environment
    assert "<td>members</td><td>2</td>" in environment
    for number, (key, weight) in enumerate((("mlp", 0.25), ("cnn", 0.75))):
        epochs = len(rundir.read_history(runs[key]))
        assert (f"<td>member_{number}</td><td>{runs[key].resolve()}: weight {weight:.3f}, {epochs} epochs, "
                "wall time ") in environment
    gradcam = page[page.index('data-section="gradcam"'):page.index('data-section="filters"')]
    assert gradcam.count("data:image/png;base64,") == 1 and "no convolutional layer: Grad-CAM" not in gradcam
    assert "Left out: member_0 (a dense network: no convolutional layer)." in gradcam
    keras.backend.clear_session()


@pytest.mark.slow
def test_ensemble_in_a_fresh_process(runs, tmp_path):
    saved = tmp_path / "saved"
    result = subprocess.run([sys.executable, "-m", "cnnlab", "ensemble", runs["mlp"], runs["cnn"], "--save", saved],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[3].split()[0] == "ensemble" and result.stderr == ""
    assert (saved / rundir.MODEL_FILE).is_file() and (saved / rundir.CONFIG_FILE).is_file()


def test_save_alone_makes_a_run_that_is_listed_and_latest_until_a_newer_training(cli, runs, tmp_path, monkeypatch):
    from cnnlab.commands.train import train

    monkeypatch.chdir(tmp_path)
    wrong = cli("ensemble", "--save", runs["mlp"], runs["cnn"])  # click takes the first run for --save's DIR
    assert wrong.exit_code == 2 and "put --save after the runs" in error_line(wrong)
    result = cli("ensemble", runs["mlp"], runs["cnn"], "--save")
    assert result.exit_code == 0, result.output
    (saved,) = (tmp_path / "runs" / "ensemble").iterdir()
    saved = saved.relative_to(tmp_path)
    assert f"Saved: {saved}" in result.output
    assert rundir.run_info(saved)["kind"] == "ensemble"
    listed = json.loads(cli("runs", "--json").output)
    assert [r["run"] for r in listed if r["type"] == "run"] == [str(saved)]
    assert rundir.pick_run(None) == (saved, "latest")

    newer = train(build_config({**BASE, "name": "newer", "output_dir": "runs", "training": {"epochs": 1}}),
                  echo=quiet, verbose=0)
    keras.backend.clear_session()
    assert rundir.list_runs("runs") == [saved, newer]
    result = cli("evaluate", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"Run: {newer} (latest)"]  # not the ensemble saved before it
