"""MLflow tracking against a real ``mlflow server`` on 127.0.0.1 started here, read back with MlflowClient:
what a run logs, a resumed run going on in its MLflow run, and a server that is down costing one warning."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from tests.conftest import sigkill_after_epoch

pytest.importorskip("mlflow", reason="tracking needs the track extra (pip install 'cnnlab[track]')")

CNNLAB = [sys.executable, "-m", "cnnlab"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 (a SQLite store, artifacts served from a folder): its URL; skipped, saying
    why, if it does not answer within a minute."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                               "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            if server.poll() is not None:
                pytest.skip(f"mlflow server exited: {(folder / 'server.log').read_text()[-300:]}")
            time.sleep(0.5)
    else:
        server.kill()
        pytest.skip("mlflow server did not answer on 127.0.0.1 within 90 s")
    try:
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def experiment(folder, uri, epochs=3, name="tracked"):
    cfg = {"name": name, "seed": 1, "output_dir": str(folder / "runs"),
           "data": {"dataset": "digits", "batch_size": 64, "validation_split": 0.2},
           "model": {"architecture": "mlp"}, "training": {"epochs": epochs},
           "tracking": {"mlflow": {"uri": uri, "experiment": f"cnnlab-{name}"}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def mlflow_run(folder, uri):
    """The MLflow run that the only run under `folder`/runs records, read back from the server."""
    from mlflow import MlflowClient

    (run,) = [p.parent for p in (folder / "runs").glob("*/*/run.json")]
    run_id = json.loads((run / "run.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=uri)
    return run, client, client.get_run(run_id)


@pytest.mark.slow
def test_a_tracked_run_logs_config_epochs_evaluation_tags_and_artifacts(tmp_path, mlflow_server):
    path = experiment(tmp_path, mlflow_server)
    done = subprocess.run([*CNNLAB, "train", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run, client, tracked = mlflow_run(tmp_path, mlflow_server)
    assert tracked.info.status == "FINISHED"
    assert client.get_experiment(tracked.info.experiment_id).name == "cnnlab-tracked"
    params = tracked.data.params
    assert params["training.learning_rate"] == "0.001" and params["model.architecture"] == "mlp"
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "val_accuracy")] == [1, 2, 3]
    metrics = json.loads((run / "metrics.json").read_text())
    assert tracked.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert tracked.data.tags["task"] == "classification" and tracked.data.tags["architecture"] == "mlp"
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    assert {"model.keras", "config.yaml", "history.csv", "metrics.json", "plots"} <= artifacts


@pytest.mark.slow
def test_a_resumed_run_goes_on_in_its_mlflow_run(tmp_path, mlflow_server):
    path = experiment(tmp_path, mlflow_server, epochs=30, name="resumed")
    sigkill_after_epoch([*CNNLAB, "train", str(path)], tmp_path, epoch=2)
    _, _, before = mlflow_run(tmp_path, mlflow_server)
    done = subprocess.run([*CNNLAB, "train", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "going on after epoch" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    _, client, after = mlflow_run(tmp_path, mlflow_server)
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(after.info.run_id, "val_loss")]
    assert sorted(set(steps)) == list(range(1, 31))  # every epoch, before the kill and after


@pytest.mark.slow
def test_a_tracking_server_that_is_down_is_one_warning_and_the_run_completes(tmp_path):
    path = experiment(tmp_path, f"http://127.0.0.1:{free_port()}", epochs=2, name="untracked")
    done = subprocess.run([*CNNLAB, "train", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert output.count("Warning: MLflow tracking stopped") == 1
    (run,) = [p.parent for p in (tmp_path / "runs").glob("*/*/metrics.json")]
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_tune_trials_are_child_runs_of_the_study_s_run(tmp_path, mlflow_server):
    pytest.importorskip("optuna", reason="cnnlab tune needs the tune extra (pip install 'cnnlab[tune]')")
    from mlflow import MlflowClient

    path = experiment(tmp_path, mlflow_server, epochs=2, name="study")
    data = yaml.safe_load(path.read_text())
    data["tune"] = {"trials": 2, "parameters": {"model.dropout": {"space": "uniform", "low": 0.0, "high": 0.5}}}
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run([*CNNLAB, "tune", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("cnnlab-study").experiment_id])
    (study,) = [r for r in runs if r.info.run_name == "study/tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.info.run_id]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert "best_val_loss" in study.data.metrics
    assert {"trials.csv", "best.yaml", "report.html"} <= {a.path for a in client.list_artifacts(study.info.run_id)}


def test_track_mlflow_on_the_command_line_turns_tracking_on(tmp_path, cli, monkeypatch):
    from cnnlab.cli import tracked
    from cnnlab.config import load_config

    path = experiment(tmp_path, None)
    data = yaml.safe_load(path.read_text())
    del data["tracking"]
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert cfg.tracking.mlflow is None and tracked(cfg, "mlflow").tracking.mlflow is not None
    result = cli("check", str(path), "--set", "tracking.mlflow.urii=x")
    assert result.exit_code == 2 and "unknown key" in result.output


def test_tracking_does_not_change_which_runs_are_the_same():
    from cnnlab.rundir.identity import comparable

    config = {"name": "x", "seed": 1, "data": {"dataset": "digits"}}
    tracked = {**config, "tracking": {"mlflow": {"uri": "http://127.0.0.1:5000"}}}
    assert comparable(tracked, "interrupted") == comparable(config, "interrupted")
