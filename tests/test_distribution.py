"""`distribution`: one model trained by 2 local workers on JAX, as on 2 machines; and the rules for it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab import distribution, rundir
from cnnlab.config import load_config
from tests.conftest import error_line, wait_for_epoch
from tests.test_backends import CNNLAB, needs_jax

TIMEOUT = 300  # seconds for a whole 2-worker job; each worker's own limit on a silent peer is shorter

# A worker as a user starts one per machine, which also keeps its final weights for the test to compare.
WORKER = textwrap.dedent("""
    import os
    import sys
    os.environ["KERAS_BACKEND"] = "jax"  # before the import below imports Keras (the CLI alone chooses it itself)
    import numpy as np
    import cnnlab.training.fit as fit_module
    from cnnlab.cli import main

    out, args = sys.argv[1], sys.argv[2:]
    plain_fit = fit_module.fit

    def fit(model, *a, **k):
        state = plain_fit(model, *a, **k)
        np.savez(out, *[np.asarray(w) for w in model.weights])
        return state

    fit_module.fit = fit
    main(args)
""")


@pytest.fixture
def two_worker_experiment(write_experiment):
    """A tiny CNN on digits, augmented, on JAX; the final model kept (no checkpoint picks an earlier one)."""
    return write_experiment({
        "runtime": {"backend": "jax"}, "distribution": {"timeout": 60},
        "model": {"architecture": "simple_cnn", "dropout": 0.1, "batch_norm": True},
        "augmentation": {"rotation_range": 10, "zoom_range": 0.1},
        "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
        "training": {"epochs": 2, "learning_rate": 0.003},
        "callbacks": {"model_checkpoint": None, "reduce_lr_on_plateau": False, "early_stopping": False}})


@needs_jax
@pytest.mark.slow
def test_two_workers_train_one_model_and_only_process_0_writes(two_worker_experiment, tmp_path):
    import keras

    coordinator = f"127.0.0.1:{distribution.free_port()}"
    (tmp_path / "worker.py").write_text(WORKER)
    workers = []
    for number in range(2):
        folder = tmp_path / f"machine{number}"  # each worker in its own folder, as on its own machine
        folder.mkdir()
        command = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path / f"weights{number}.npz"), "train",
                   str(two_worker_experiment), "--output-dir", "runs", "--set", "distribution.workers=2",
                   "--set", f"distribution.coordinator={coordinator}", "--set", f"distribution.process_id={number}"]
        workers.append(subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True))
    outputs = [w.communicate(timeout=TIMEOUT)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    assert not (tmp_path / "machine1" / "runs").exists()  # process 1 wrote nothing
    run_dir = rundir.latest_run(tmp_path / "machine0" / "runs")
    assert rundir.status(run_dir) == "completed" and len(rundir.read_history(run_dir)) == 2
    with np.load(tmp_path / "weights0.npz") as w0, np.load(tmp_path / "weights1.npz") as w1:
        final = [[f[k] for k in f.files] for f in (w0, w1)]
    saved = [np.asarray(w) for w in keras.models.load_model(run_dir / rundir.MODEL_FILE).weights]
    assert len(final[0]) == len(saved) > 0
    for a, b, c in zip(*final, saved):
        np.testing.assert_array_equal(a, b)  # one model: bit-identical on both workers
        np.testing.assert_array_equal(a, c)  # and what process 0 saved


@needs_jax
@pytest.mark.slow
@pytest.mark.parametrize("machine1, message", [
    ([], "cannot write the runs folder"),  # process 0 alone fails (runs/tiny is a file): every worker says why
    (["--set", "data.validation_split=0.3"], "do not have the same experiment and data"),
])
def test_a_failure_on_one_worker_ends_every_worker_with_the_same_error(two_worker_experiment, tmp_path, machine1,
                                                                         message):
    coordinator = f"127.0.0.1:{distribution.free_port()}"
    workers = []
    for number in range(2):
        folder = tmp_path / f"machine{number}"
        folder.mkdir()
        if number == 0 and not machine1:
            (folder / "runs").mkdir()
            (folder / "runs" / "tiny").write_text("not a folder")
        command = [*CNNLAB, "train", str(two_worker_experiment), "--output-dir", "runs",
                   "--set", "distribution.workers=2", "--set", f"distribution.coordinator={coordinator}",
                   "--set", f"distribution.process_id={number}", *(machine1 if number else [])]
        workers.append(subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    results = [w.communicate(timeout=TIMEOUT) for w in workers]
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 2, out[-2000:] + err[-3000:]
        lines = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err[-3000:]


def test_a_worker_takes_every_nth_example_and_tops_up_a_short_batch(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(distribution, "_cluster", distribution.Cluster(workers=2, process_id=1, devices=2))
    assert distribution.shard(tf.range(10, 18)).numpy().tolist() == [11, 13, 15, 17]
    index, weights = distribution.shard(tf.range(10, 15), weights=True)  # 5 over 2: a copy of the first tops it up
    assert index.numpy().tolist() == [11, 13, 10] and weights.numpy().tolist() == [1, 1, 0]
    monkeypatch.setattr(distribution, "_cluster", distribution.Cluster(workers=2, process_id=0, devices=2))
    assert distribution.shard(tf.range(10, 15)).numpy().tolist() == [10, 12, 14]


def _worker_pid(launcher, number, timeout=120):
    """The process id of local worker `number` started by the `cnnlab train --workers` process `launcher`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
            if f"distribution.process_id={number}" in Path(f"/proc/{child}/cmdline").read_text():
                return int(child)
        time.sleep(0.1)
    raise AssertionError(f"worker {number} did not start")


@needs_jax
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through Linux's /proc")
def test_a_killed_worker_ends_the_job_with_one_error_and_the_run_resumes(two_worker_experiment, tmp_path):
    from cnnlab.training import resume

    command = [*CNNLAB, "train", str(two_worker_experiment), "--workers", "2", "--epochs", "6"]
    launcher = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    primary = _worker_pid(launcher, 0)
    wait_for_epoch(tmp_path, 2, TIMEOUT)
    os.kill(primary, signal.SIGKILL)
    started = time.time()
    out, err = launcher.communicate(timeout=TIMEOUT)
    assert launcher.returncode == 2, out[-2000:] + err[-3000:]
    assert time.time() - started < 60  # the other worker was stopped, not left waiting
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "worker 0 of 2" in lines[0] and "resume" in lines[0], err[-3000:]
    assert "Traceback" not in err

    run_dir = rundir.latest_run(tmp_path / "runs")
    done = resume.load(run_dir)["epoch"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"going on after epoch {done}" in result.stdout
    assert rundir.list_runs(tmp_path / "runs") == [run_dir]
    assert len(rundir.read_history(run_dir)) == 6


# --------------------------------------------------------------------------- the rules, in-process


def test_one_worker_is_the_default_and_changes_nothing(write_experiment, monkeypatch):
    monkeypatch.delenv(distribution.ENV_WORKERS, raising=False)
    assert distribution.plan(load_config(write_experiment())) == (1, None, 0)


def test_unset_keys_come_from_the_environment_keras_reads(write_experiment, monkeypatch):
    cfg = load_config(write_experiment({"runtime": {"backend": "jax"}}))
    monkeypatch.setenv(distribution.ENV_WORKERS, "4")
    monkeypatch.setenv(distribution.ENV_ADDRESSES, "10.0.0.1:1234,10.0.0.2:1234,10.0.0.3:1234,10.0.0.4:1234")
    monkeypatch.setenv(distribution.ENV_PROCESS_ID, "3")
    assert distribution.plan(cfg) == (4, "10.0.0.1:1234", 3)
    cfg = load_config(write_experiment({"runtime": {"backend": "jax"},
                                        "distribution": {"workers": 2, "coordinator": "head:99", "process_id": 1}}))
    assert distribution.plan(cfg) == (2, "head:99", 1)  # the file's keys first


@pytest.mark.parametrize("overrides, message", [
    ({"distribution": {"workers": 2}}, "needs runtime.backend: jax"),
    ({"runtime": {"backend": "jax"}, "distribution": {"workers": 3}}, "multiple of 3"),
    ({"runtime": {"backend": "jax"}, "distribution": {"workers": 2, "process_id": 2}}, "from 0 to 1"),
    ({"runtime": {"backend": "jax"}, "distribution": {"workers": 2}, "augmentation": {"engine": "generator",
                                                                                        "rotation_range": 5}},
     "engine: layers"),
])
def test_what_cannot_run_on_several_workers_is_one_error(cli, write_experiment, overrides, message):
    result = cli("train", write_experiment(overrides))
    assert result.exit_code == 2 and message in error_line(result)


def test_a_bad_coordinator_and_a_bad_environment_are_errors(cli, write_experiment, monkeypatch):
    result = cli("train", write_experiment({"distribution": {"coordinator": "10.0.0.1"}}))
    assert result.exit_code == 2 and "HOST:PORT" in error_line(result)
    monkeypatch.setenv(distribution.ENV_WORKERS, "two")
    result = cli("train", write_experiment({"runtime": {"backend": "jax"}}))
    assert result.exit_code == 2 and distribution.ENV_WORKERS in error_line(result)


def test_only_train_runs_on_several_workers(cli, write_experiment, monkeypatch):
    path = write_experiment({"runtime": {"backend": "jax"}})
    result = cli("train", path, "--workers", "2", "--seeds", "1,2")
    assert result.exit_code == 2 and "(one seed)" in error_line(result)
    result = cli("train", write_experiment(), "--workers", "2")  # on TensorFlow: refused before any worker starts
    assert result.exit_code == 2 and "needs runtime.backend: jax" in error_line(result)
    monkeypatch.setenv(distribution.ENV_WORKERS, "2")
    result = cli("lr-find", path)
    assert result.exit_code == 2 and "only `cnnlab train`" in error_line(result)


def test_a_run_resumes_whatever_the_number_of_workers(write_experiment):
    one = load_config(write_experiment()).to_dict()
    two = load_config(write_experiment({"distribution": {"workers": 2, "coordinator": "head:1234"}})).to_dict()
    assert rundir.comparable(one, "interrupted") == rundir.comparable(two, "interrupted")
