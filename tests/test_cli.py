"""The command line end to end: start-up, train -> evaluate, runs never overwritten, resume, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cnnlab import rundir
from tests.conftest import error_line


def test_help_and_version_do_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from cnnlab.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(main, ['--version']); assert 'cnnlab' in r.output; "
            "r = CliRunner().invoke(main, ['train', '--help']); assert '--set' in r.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_has_help(cli):
    result = cli("--help")
    for command in ("train", "evaluate", "check", "models"):
        assert command in result.output
        assert cli(command, "--help").exit_code == 0


@pytest.mark.slow
def test_train_ends_with_the_test_figures_and_the_next_commands(cli, write_experiment, tmp_path, monkeypatch):
    from cnnlab.data import pipeline

    loads = []
    original = pipeline.load_data
    monkeypatch.setattr(pipeline, "load_data", lambda cfg: loads.append(cfg) or original(cfg))
    result = cli("train", write_experiment({"training": {"epochs": 1}}))
    assert result.exit_code == 0, result.output
    run = rundir.latest_run(tmp_path / "runs")
    lines = result.output.splitlines()
    assert lines[-1] == f"Done: {run}"
    assert lines[-2] == f"Next: cnnlab report {run}  |  cnnlab predict {run} IMAGE...  |  cnnlab finetune {run}"
    test = json.loads((run / "metrics.json").read_text())
    assert f"test: {test['images']} images  loss {test['loss']:.4f}  accuracy {test['accuracy']:.4f}" in result.output
    assert len(loads) == 1  # the test split is scored from the data training loaded


@pytest.mark.parametrize("checkpoint", [False, {"monitor": "val_loss"}])
def test_train_scores_the_model_it_saved(cli, write_experiment, tmp_path, monkeypatch, checkpoint):
    """Without a checkpoint the scored model is the one in memory, not read back: the figures are the saved one's."""
    from cnnlab.rundir import targets as target

    reads = []
    original = target.load_model
    monkeypatch.setattr(target, "load_model", lambda *a, **k: reads.append(a) or original(*a, **k))
    result = cli("train", write_experiment({"training": {"epochs": 2}, "callbacks": {"model_checkpoint": checkpoint}}))
    assert result.exit_code == 0, result.output
    assert len(reads) == (0 if checkpoint is False else 1)
    run = rundir.latest_run(tmp_path / "runs")
    scored = json.loads((run / "metrics.json").read_text())
    again = cli("evaluate", str(run), "--json")
    assert json.loads(again.stdout)["loss"] == pytest.approx(scored["loss"], abs=1e-6)


@pytest.mark.slow
def test_train_without_a_test_split_says_it_is_not_evaluated(cli, write_experiment, tmp_path):
    path = write_experiment({"data": {"dataset": "digits", "test_split": 0.0}, "training": {"epochs": 1}})
    result = cli("train", path)
    assert result.exit_code == 0, result.output
    run = rundir.latest_run(tmp_path / "runs")
    assert f"Note: {run} is not evaluated:" in result.output and not (run / "metrics.json").exists()
    assert result.output.splitlines()[-1] == f"Done: {run}"


@pytest.mark.slow
def test_train_then_evaluate_the_latest_run(cli, write_experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_experiment({"output_dir": "runs", "training": {"epochs": 3}})
    result = cli("train", path)
    assert result.exit_code == 0, result.output
    run = rundir.latest_run("runs")
    for name in ("config.yaml", "model.keras", "history.csv", "class_names.json", "run.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "class_names.json").read_text()) == [str(i) for i in range(10)]
    assert rundir.run_info(run)["status"] == "completed"
    assert "versions" in (run / "config.yaml").read_text()

    result = cli("evaluate", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{"):])
    assert metrics["images"] == 360 and metrics["accuracy"] > 0.8
    assert set(metrics["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    assert np.array(metrics["confusion_matrix"]).sum() == 360
    assert "top5" in metrics["top_k_accuracy"]
    assert json.loads((run / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    result = cli("evaluate", "--quiet")
    assert result.exit_code == 0 and result.output.splitlines() == [result.output.strip()]
    assert result.output.startswith("test: 360 images")
    assert (run / "plots" / "confusion_matrix.png").is_file() and (run / "plots" / "curves.png").is_file()

    result = cli("runs")
    assert result.exit_code == 0 and str(run) in result.output and "completed" in result.output
    assert f"{metrics['accuracy']:.4f}" in result.output


@pytest.mark.slow
def test_a_second_train_never_overwrites_the_first(cli, write_experiment, tmp_path):
    path = write_experiment({"training": {"epochs": 1}})
    assert cli("train", path).exit_code == 0
    first = rundir.latest_run(tmp_path / "runs")
    before = (first / "model.keras").read_bytes()
    assert cli("train", path).exit_code == 0
    runs = rundir.list_runs(tmp_path / "runs")
    assert len(runs) == 2 and runs[0] == first
    assert (first / "model.keras").read_bytes() == before


def test_bad_inputs_are_one_error_line(cli, write_experiment, tmp_path):
    result = cli("runs", tmp_path)
    assert result.exit_code == 2 and "no runs under" in error_line(result)
    result = cli("evaluate", tmp_path)
    assert result.exit_code == 2 and "is not a run folder" in error_line(result)
    result = cli("train", write_experiment({"model": {"architecture": "vgg-16"}}))
    assert result.exit_code == 2 and "model.architecture" in error_line(result)
    result = cli("train", write_experiment({"model": {"architecture": "mlp", "activation": "rleu"}}))
    assert result.exit_code == 2 and "model.activation" in error_line(result)
    result = cli("train", write_experiment({"training": {"optimizer": {"name": "sgd", "momentun": 0.9}}}))
    assert result.exit_code == 2 and "Did you mean 'momentum'" in error_line(result)
    result = cli("train", write_experiment({"data": {"dataset": "directory", "path": str(tmp_path / "none")}}))
    assert result.exit_code == 2 and "is not a folder" in error_line(result)


def test_check_prints_config_and_summary(cli, write_experiment):
    result = cli("check", write_experiment())
    assert result.exit_code == 0, result.output
    assert "architecture: mlp" in result.output and "Total params" in result.output
    assert result.output.splitlines()[-1].startswith("Valid: ")


def test_check_validates_before_it_prints(write_experiment, tmp_path):
    np.savez(tmp_path / "wrong.npz", a=np.zeros(3))  # found out only when the data is read
    path = write_experiment({"data": {"dataset": "npz", "path": str(tmp_path / "wrong.npz")}})
    result = subprocess.run([sys.executable, "-m", "cnnlab", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "x_train" in result.stderr


def test_model_loading_commands_take_unsafe_and_check_lists_layers(cli):
    for command in ("evaluate", "finetune"):
        assert "safe_mode=False" in cli(command, "--help").output
    assert "--freeze N" in cli("check", "--help").output


@pytest.mark.slow
def test_evaluate_on_another_folder_and_a_bare_model(cli, write_experiment, image_folder, tmp_path):
    import shutil

    path = write_experiment({"data": {"dataset": "directory", "path": str(image_folder), "batch_size": 8},
                             "model": {"architecture": "simple_cnn"}, "training": {"epochs": 1}})
    assert cli("train", path).exit_code == 0
    run = rundir.latest_run(tmp_path / "runs")
    result = cli("evaluate", run, "--data-dir", image_folder, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["images"] == 36

    bare = tmp_path / "elsewhere"
    bare.mkdir()
    shutil.copy(run / "model.keras", bare / "model.keras")
    result = cli("evaluate", bare / "model.keras")
    assert result.exit_code == 2 and "give --data-dir" in error_line(result)
    result = cli("evaluate", bare / "model.keras", "--data-dir", image_folder)
    assert result.exit_code == 0 and list(bare.rglob("metrics.json"))

    (image_folder / "class_9").mkdir()
    result = cli("evaluate", run, "--data-dir", image_folder)
    assert result.exit_code == 2 and "class_9" in error_line(result)


def test_a_command_that_ran_tensorflow_exits_at_once_with_its_exit_handlers_run(write_experiment, tmp_path):
    """`cli.console_entry` skips Python's teardown of TensorFlow (seconds) but not what a normal exit does:
    the exit handlers run, the output is whole, a failure keeps its exit code and exits as usual."""
    path = write_experiment({"training": {"epochs": 1}})
    marker, teardown = tmp_path / "atexit-ran", tmp_path / "teardown-ran"
    code = ("import atexit, pathlib, sys; "
            f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('ran')); "
            f"Teardown = type('Teardown', (), {{'__del__': lambda self: pathlib.Path({str(teardown)!r}).touch()}}); "
            "kept = Teardown(); "  # deleted by Python's teardown of __main__, which a quick exit skips
            "import concurrent.futures; pool = concurrent.futures.ThreadPoolExecutor(1); pool.submit(int).result(); "
            # an idle pool's worker thread waits until the threading exit hooks wake it: joined alone, it never ends
            "from cnnlab.cli import console_entry; sys.argv[0] = 'cnnlab'; console_entry()")
    done = subprocess.run([sys.executable, "-c", code, "train", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "ran" and not teardown.exists()
    assert done.stdout.splitlines()[-1].startswith("Done: ")  # flushed before leaving
    marker.unlink()
    failed = subprocess.run([sys.executable, "-c", code, "evaluate", str(tmp_path / "nowhere")],
                            capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.startswith("Error: ") and "Traceback" not in failed.stderr
    assert marker.read_text() == "ran" and teardown.exists()
