"""A run's life: interrupted anywhere, the same command resumes it; nothing half-written, nothing lost."""

import csv
import errno
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from cnnlab import files, rundir
from cnnlab.errors import CnnlabError
from cnnlab.training import fit as fit_module
from cnnlab.training import resume
from tests.conftest import error_line, sigkill_after_epoch

# Reduce-on-plateau with patience 1 lowers the rate during the run and early stopping counts:
# a resumed run only matches an uninterrupted one if their counters carry over too.
COUNTING = {"callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                          "reduce_lr_on_plateau": {"monitor": "val_loss", "patience": 1, "factor": 0.5,
                                                   "min_delta": 10.0},
                          "early_stopping": {"monitor": "val_loss", "patience": 20, "min_delta": 10.0}},
            "training": {"epochs": 5, "learning_rate": 0.003}, "deterministic": True}


def rows(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def interrupt_at(monkeypatch, epoch):
    """Make the next fit raise KeyboardInterrupt at the end of `epoch`, before its state is saved."""

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, index, logs=None):
            if index == epoch:
                raise KeyboardInterrupt

    original = fit_module.make_callbacks
    monkeypatch.setattr(fit_module, "make_callbacks", lambda *a, **k: original(*a, **k) + [Interrupt()])
    return lambda: monkeypatch.setattr(fit_module, "make_callbacks", original)


def weights_of(run):
    return keras.saving.load_model(run / "model.keras").get_weights()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_history_and_weights(cli, write_experiment, tmp_path, monkeypatch):
    path = write_experiment(COUNTING)
    assert cli("train", path, "--output-dir", tmp_path / "straight").exit_code == 0
    straight = rundir.latest_run(tmp_path / "straight")

    restore = interrupt_at(monkeypatch, 2)
    result = cli("train", path)
    assert result.exit_code == 130
    run = rundir.latest_run(tmp_path / "runs")
    assert rundir.status(run) == "interrupted" and resume.load(run)["epoch"] == 2
    restore()
    result = cli("train", path)
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.output and "going on after epoch 2" in result.output
    assert rundir.list_runs(tmp_path / "runs") == [run]
    assert rows(run) == rows(straight)  # epochs, losses, learning rate lowered by the plateau callback
    assert float(rows(run)[-1]["learning_rate"]) < 0.003
    for ours, theirs in zip(weights_of(run), weights_of(straight)):
        np.testing.assert_array_equal(ours, theirs)
    assert not (run / "backup").exists() and rundir.status(run) == "completed"


@pytest.mark.slow
def test_early_stopping_counters_survive_a_resume(cli, write_experiment, monkeypatch):
    path = write_experiment({**COUNTING, "callbacks": {**COUNTING["callbacks"], "reduce_lr_on_plateau": False,
                                                       "early_stopping": {"monitor": "val_loss", "patience": 3,
                                                                          "min_delta": 10.0}},
                             "training": {"epochs": 10}})
    restore = interrupt_at(monkeypatch, 2)
    assert cli("train", path).exit_code == 130
    restore()
    result = cli("train", path)
    assert result.exit_code == 0, result.output
    run = rundir.latest_run(path.parent / "runs")
    # min_delta 10 means no epoch improves: patience 3 stops after epoch index 3, as without the interruption
    assert [r["epoch"] for r in rows(run)] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_a_kill_in_the_first_epoch_and_another_config_in_between(cli, write_experiment, monkeypatch):
    path = write_experiment({"training": {"epochs": 3}})
    restore = interrupt_at(monkeypatch, 0)
    assert cli("train", path).exit_code == 130
    restore()
    run = rundir.latest_run(path.parent / "runs")
    assert resume.load(run) is None and rundir.status(run) == "interrupted"
    assert cli("train", path, "--epochs", "1").exit_code == 0  # another configuration of the same experiment
    result = cli("train", path)
    assert result.exit_code == 0, result.output
    assert f"Resuming the interrupted run {run}" in result.output
    assert [r["epoch"] for r in rows(run)] == ["0", "1", "2"] and rundir.status(run) == "completed"
    assert len(rundir.list_runs(path.parent / "runs")) == 2


@pytest.mark.slow
def test_a_kill_while_the_state_is_written_resumes_from_the_epoch_before(cli, write_experiment, monkeypatch):
    path = write_experiment({"training": {"epochs": 4}})
    original = files.write_json

    def dies_on_third_state(target, data):
        if str(target).endswith(resume.STATE_FILE) and data["epoch"] == 3:
            with files.atomic_path(target) as tmp:
                tmp.write_text('{"epoch": 3, "weigh')  # half-written, then killed
                raise KeyboardInterrupt
        return original(target, data)

    monkeypatch.setattr(files, "write_json", dies_on_third_state)
    assert cli("train", path).exit_code == 130
    run = rundir.latest_run(path.parent / "runs")
    assert resume.load(run)["epoch"] == 2 and not list(run.rglob(".partial-*"))
    monkeypatch.setattr(files, "write_json", original)
    result = cli("train", path)
    assert result.exit_code == 0 and "going on after epoch 2" in result.output
    assert [r["epoch"] for r in rows(run)] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_sigkill_in_a_fresh_process_then_the_same_command_resumes(write_experiment, tmp_path):
    path = write_experiment({"training": {"epochs": 8}, "data": {"batch_size": 16}})
    command = [sys.executable, "-m", "cnnlab", "train", str(path)]
    run = sigkill_after_epoch(command, tmp_path, timeout=120)
    assert rundir.run_info(run)["status"] == "running" and rundir.status(run) == "interrupted"
    done = resume.load(run)["epoch"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"going on after epoch {done}" in result.stdout
    assert rundir.list_runs(tmp_path / "runs") == [run]
    assert [int(r["epoch"]) for r in rows(run)] == list(range(8))


@pytest.mark.slow
def test_an_interrupted_finetune_resumes_in_its_phase(cli, write_experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_experiment({"output_dir": "runs", "training": {"epochs": 1}})
    assert cli("train", path).exit_code == 0
    restore = interrupt_at(monkeypatch, 3)  # phase 2's second epoch
    args = ["finetune", "--freeze", "1", "--head-epochs", "2", "--epochs", "3"]
    assert cli(*args).exit_code == 130
    restore()
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "Going on after epoch 3 (phase 2)" in result.output and "Phase 1:" not in result.output
    names = sorted({run.parent.name for run in rundir.list_runs("runs")})
    assert names == ["tiny", "tiny-finetune"]  # not tiny-finetune-finetune
    run = rundir.latest_run("runs")
    assert [(r["epoch"], r["phase"]) for r in rows(run)] == [("0", "1"), ("1", "1"), ("2", "2"), ("3", "2"),
                                                            ("4", "2")]
    assert not (run / "backup").exists() and not list(run.glob("*.h5"))


def test_a_run_held_by_another_process_is_refused_naming_it(tmp_path):
    run = rundir.new_run_dir(tmp_path, "x")
    code = f"from cnnlab import rundir; rundir.lock({str(run)!r}); print('locked', flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rundir.update_run_info(run, status="running")
        assert rundir.status(run) == "running"
        with pytest.raises(CnnlabError, match=f"another process .pid {holder.pid}."):
            rundir.lock(run)
    finally:
        holder.kill()
        holder.wait()
    assert rundir.status(run) == "interrupted"  # died without marking itself


def test_a_run_that_died_before_training_started_is_taken_up(tmp_path):
    from cnnlab.config import build_config
    from cnnlab.rundir import start_run

    cfg = build_config({"name": "x", "data": {"dataset": "digits"}})
    run = start_run(cfg, tmp_path, fresh=False, echo=print)  # locked, config written, no run.json yet
    assert rundir.is_locked(run) and rundir.status(run) == "running"
    rundir.unlock(run)  # as if the process died here
    assert rundir.status(run) == "interrupted"
    notes = []
    assert start_run(cfg, tmp_path, fresh=False, echo=notes.append) == run and "Resuming" in notes[0]
    assert start_run(cfg, tmp_path, fresh=False, echo=print) != run  # held by "another" run now: a new folder
    for held in rundir.list_runs(tmp_path):
        rundir.unlock(held)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    first, second = rundir.new_run_dir(tmp_path, "x"), rundir.new_run_dir(tmp_path, "x")
    assert first != second and first.parent == second.parent
    for name in ("..", "../x", "/etc", "a/b", ""):
        with pytest.raises(CnnlabError, match="one folder name"):
            rundir.new_run_dir(tmp_path, name)


def test_atomic_writes_keep_the_old_file_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "model.keras"
    target.write_text("old")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", full)
    with pytest.raises(CnnlabError, match="No space left on device.*previous version"):
        files.write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and not list(tmp_path.glob(".partial-*"))


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_best_model(cli, write_experiment, monkeypatch):
    path = write_experiment({"training": {"epochs": 3},
                             "callbacks": {"model_checkpoint": {"monitor": "loss", "mode": "min"}}})
    saves = []
    original = keras.Model.save

    def save(self, filepath, *args, **kwargs):
        saves.append(filepath)
        if len(saves) == 2:
            with open(filepath, "wb") as f:
                f.write(b"PK\x03\x04 half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    result = cli("train", path)
    assert result.exit_code == 2 and "No space left on device" in error_line(result)
    run = rundir.latest_run(path.parent / "runs")
    assert rundir.status(run) == "failed"
    assert len(weights_of(run)) > 0 and not list(run.glob(".partial-*"))  # epoch 1's model, whole


@pytest.mark.slow
def test_nan_loss_keeps_no_nan_model_and_evaluate_says_so(cli, write_experiment, tmp_path):
    path = write_experiment({"training": {"epochs": 3, "optimizer": "sgd", "learning_rate": 1e30},
                             "model": {"architecture": "mlp", "dropout": 0.0}})
    result = cli("train", path)
    assert result.exit_code == 2
    assert "loss became NaN" in error_line(result) and "learning_rate" in error_line(result)
    # the first epoch was NaN: the message says no model was saved, not that a best one is kept
    assert "no model was saved before it: the run is kept as failed" in error_line(result)
    assert "best model" not in error_line(result)
    run = rundir.latest_run(tmp_path / "runs")
    assert rundir.status(run) == "failed" and not (run / "backup").exists()
    assert not (run / "model.keras").exists()  # the only epoch was NaN: nothing to keep
    result = cli("evaluate", run)
    assert result.exit_code == 2 and "no model" in error_line(result) and "failed" in error_line(result)
    result = cli("train", path)  # a failed run is not resumed: a new one starts
    assert len(rundir.list_runs(tmp_path / "runs")) == 2


@pytest.mark.slow
def test_evaluating_another_split_keeps_the_test_metrics(cli, write_experiment, tmp_path):
    path = write_experiment({"training": {"epochs": 1}})
    assert cli("train", path).exit_code == 0
    run = rundir.latest_run(tmp_path / "runs")
    assert cli("evaluate", run).exit_code == 0
    test_metrics = (run / "metrics.json").read_text()
    assert cli("evaluate", run, "--split", "val").exit_code == 0
    assert (run / "metrics.json").read_text() == test_metrics
    assert json.loads((run / "evaluations" / "val" / "metrics.json").read_text())["split"] == "val"
    assert (run / "evaluations" / "val" / "plots" / "confusion_matrix.png").is_file()
    assert (run / "plots" / "confusion_matrix.png").is_file()


def lambda_model(path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    keras.Model(inputs, outputs).save(path)


def test_models_load_in_safe_mode_unless_unsafe(tmp_path):
    from cnnlab.rundir import load_model

    path = tmp_path / "lambda.keras"
    lambda_model(path)
    with pytest.raises(CnnlabError, match="Lambda layer.*--unsafe"):
        load_model(path)
    assert load_model(path, unsafe=True).output_shape == (None, 2)


def test_a_truncated_model_is_named_as_such(tmp_path):
    from cnnlab.rundir import load_model

    path = tmp_path / "model.keras"
    lambda_model(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CnnlabError, match="truncated or corrupt"):
        load_model(path, unsafe=True)


def trained_pair(policy="float32"):
    """Two compiled models of one architecture (dropout, batch norm, Adam): the first trained a few steps."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        def make(seed):
            keras.utils.set_random_seed(seed)
            inputs = keras.Input((8, 8, 1))
            x = keras.layers.Conv2D(4, 3)(inputs)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Dropout(0.5)(keras.layers.Flatten()(x))
            model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", dtype="float32")(x))
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            return model

        rng = np.random.default_rng(0)
        x, y = rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 32)
        trained, fresh = make(1), make(2)
        trained.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return trained, fresh, (x, y)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def state_of(model):
    return [np.asarray(v) for v in [*model.variables, *model.optimizer.variables]]


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])  # mixed_float16: the loss scale's variables too
def test_the_variables_file_restores_weights_optimizer_and_dropout_seeds(tmp_path, policy):
    trained, fresh, (x, y) = trained_pair(policy)
    (tmp_path / rundir.BACKUP_DIR).mkdir()
    resume.save_variables(trained, tmp_path / rundir.BACKUP_DIR / "epoch-0002.npz")
    resume.restore_variables(fresh, tmp_path, {"weights": "epoch-0002.npz"})
    assert len(resume.seed_states(fresh)) == 1  # the dropout layer's
    for ours, theirs in zip(state_of(fresh), state_of(trained), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # and both go on alike: the same dropout masks, the same Adam moments and step
    for model in (trained, fresh):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for ours, theirs in zip(state_of(fresh), state_of(trained), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_backup_written_as_keras_weights_still_resumes(tmp_path):
    """Runs interrupted before the variables file kept Keras's .weights.h5 and the seeds in state.json."""
    trained, fresh, _ = trained_pair()
    (tmp_path / rundir.BACKUP_DIR).mkdir()
    trained.save_weights(tmp_path / rundir.BACKUP_DIR / "epoch-0002.weights.h5")
    seeds = [np.asarray(v).tolist() for v in resume.seed_states(trained)]
    resume.restore_variables(fresh, tmp_path, {"weights": "epoch-0002.weights.h5", "seeds": seeds})
    for ours, theirs in zip(state_of(fresh), state_of(trained), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_saving_finds_the_skip_sets_it_cached_and_writes_the_same_model(tmp_path):
    from keras.src.saving import saving_lib

    from cnnlab.training.callbacks import AtomicModelCheckpoint

    model, _, _ = trained_pair()
    checkpoint = AtomicModelCheckpoint(tmp_path / "best.keras", monitor="loss")
    checkpoint.set_model(model)
    saves = {"model.keras": lambda: files.save_model(model, tmp_path / "model.keras"),
             "best.keras": lambda: checkpoint.on_epoch_end(0, {"loss": 1.0})}
    for name, save in saves.items():
        keras.backend.clear_session()  # Keras's caches empty, as in a fresh process
        save()
        assert saving_lib.get_attr_skipset("Layer") is saving_lib.get_attr_skipset("Layer")  # found, not rebuilt
        loaded = keras.saving.load_model(tmp_path / name)
        assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(model.get_config(), sort_keys=True)
        saved = [np.asarray(v) for v in [*model.weights, *model.optimizer.variables]]  # seed states are not saved
        for ours, theirs in zip([np.asarray(v) for v in [*loaded.weights, *loaded.optimizer.variables]], saved,
                                strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_a_backup_that_is_damaged_or_of_another_model_is_one_error(tmp_path):
    trained, _, _ = trained_pair()
    backup = tmp_path / rundir.BACKUP_DIR
    backup.mkdir()
    (backup / "epoch-0002.npz").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(CnnlabError, match="cannot resume from .*epoch-0002.npz.*starts a new run"):
        resume.restore_variables(trained, tmp_path, {"weights": "epoch-0002.npz"})
    resume.save_variables(trained, backup / "epoch-0002.npz")
    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(CnnlabError, match="cannot resume from .*optimizer variables saved"):
        resume.restore_variables(other, tmp_path, {"weights": "epoch-0002.npz"})
