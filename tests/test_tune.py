"""`cnnlab tune`: the search space checked with the config, a study on SQLite whose trials are ordinary runs,
a failed trial recorded and passed, Ctrl-C and resume, and two processes sharing one study on PostgreSQL."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import error_line

pytest.importorskip("optuna", reason="cnnlab tune needs the tune extra (pip install 'cnnlab[tune]')")

CNNLAB = [sys.executable, "-m", "cnnlab"]
SPACE = {"training.learning_rate": {"space": "loguniform", "low": 3.0e-3, "high": 3.0e-2},
         "model.dropout": {"space": "uniform", "low": 0.0, "high": 0.4},
         "training.optimizer": {"space": "choice", "values": ["adam", "nesterov"]}}


def experiment(folder, epochs=3, name="dig", **tune):
    """A digits MLP experiment with a tune: section (`tune` keys over three trials of SPACE); its path."""
    cfg = {"name": name, "seed": 1, "output_dir": str(folder / "runs"),
           "data": {"dataset": "digits", "batch_size": 64, "validation_split": 0.2},
           "model": {"architecture": "mlp"}, "training": {"epochs": epochs},
           "callbacks": {"model_checkpoint": {"monitor": "val_accuracy"}, "reduce_lr_on_plateau": False,
                         "early_stopping": False},
           "tune": {"trials": 3, "parameters": SPACE, **tune}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def tune(path, *args, timeout=600):
    return subprocess.run([*CNNLAB, "tune", str(path), *args], capture_output=True, text=True, cwd=path.parent,
                          timeout=timeout)


def trials_of(folder, name="dig"):
    with open(folder / "runs" / name / "tune" / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- the search space, checked first


@pytest.mark.parametrize("change, words", [
    ({"metric": "val_acuracy"}, "Did you mean 'val_accuracy'"),
    ({"parameters": {"training.learning_rat": {"space": "uniform", "low": 0.1, "high": 0.2}}},
     "unknown key 'training.learning_rat'"),
    ({"parameters": {"data.batch_size": {"space": "uniform", "low": 16, "high": 64}}}, "valid integer"),
    ({"parameters": {"model.dropout": {"space": "uniform", "low": 0.5, "high": 0.2}}}, "needs low < high"),
    ({"parameters": {"training.learning_rate": {"space": "loguniform", "low": 0, "high": 0.2}}}, "low > 0"),
    ({"parameters": {"model.dropout": {"space": "choice", "values": [0.1, 2]}}}, "can draw 2"),
    ({"parameters": {"model.dropout": {"space": "normal", "low": 0, "high": 1}}}, "uniform, loguniform, int or choice"),
    ({"parameters": {"name": {"space": "choice", "values": ["a", "b"]}}}, "cannot be searched"),
    ({"sampler": "grid"}, "grid sampler cannot enumerate"),
    ({"sampler": "bayes"}, "'tpe', 'random', 'grid' or 'cmaes'"),
    ({"pruner": "asha"}, "'median', 'hyperband' or 'none'"),
    ({"trials": 0}, "tune.trials"),
    ({"parameters": {}}, "no tune.parameters"),
    ({"parameters": {"callbacks.csv_logger": {"space": "choice", "values": [True, False]}}}, "csv_logger: true"),
])
def test_a_bad_search_is_one_error_line_before_anything_runs(tmp_path, cli, change, words):
    path = experiment(tmp_path, **change)
    result = cli("tune", str(path))
    assert result.exit_code == 2 and words in error_line(result), result.output
    assert not (tmp_path / "runs").exists()


def test_a_searched_key_can_be_set_on_the_command_line(tmp_path, cli):
    path = experiment(tmp_path)
    result = cli("tune", str(path), "--set", "tune.parameters.model.dropout={space: uniform, low: 0.3, high: 0.2}")
    assert result.exit_code == 2 and "--set tune.parameters.model.dropout" in error_line(result)


def test_a_training_run_ignores_the_search_and_resumes_runs_from_before_it():
    from cnnlab.rundir.identity import comparable

    config = {"name": "x", "seed": 1, "data": {"dataset": "digits"}}
    assert comparable({**config, "tune": {"trials": 3}}, "interrupted") == comparable(config, "interrupted")


def test_the_kept_epoch_s_metric_is_the_trial_s_value():
    from cnnlab.tuning.trial import TrialFailed, objective_value

    rows = [{"val_accuracy": "0.5", "val_loss": "1.0"}, {"val_accuracy": "0.8", "val_loss": "0.7"},
            {"val_accuracy": "0.8", "val_loss": "0.9"}, {"val_accuracy": "0.6", "val_loss": "0.6"}]
    by_accuracy = {"callbacks": {"model_checkpoint": {"monitor": "val_accuracy"}}}
    assert objective_value(rows, "val_loss", by_accuracy) == 0.7  # the first epoch of the best accuracy
    by_loss = {"callbacks": {"model_checkpoint": {"monitor": "val_loss", "mode": "min"}}}
    assert objective_value(rows, "val_accuracy", by_loss) == 0.6
    assert objective_value(rows, "val_accuracy", {"callbacks": {"model_checkpoint": None}}) == 0.6  # the last
    with pytest.raises(TrialFailed, match="no finite val_f1"):
        objective_value(rows, "val_f1", by_accuracy)


def test_an_interrupted_trial_is_taken_up_once_and_counts_once():
    import optuna

    from cnnlab.tuning.study import predecessor, requeue, spent

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    interrupted = study.ask()
    interrupted.suggest_float("x", 0, 1)
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    requeue(study, interrupted.number)
    assert spent(study) == 2  # the interrupted trial is not spent: its copy waits
    again = study.ask()
    assert predecessor(study.trials[again.number]) == interrupted.number
    assert again.suggest_float("x", 0, 1) == interrupted.params["x"]
    study.tell(again, 0.5)
    assert spent(study) == 3


def test_an_epoch_behind_the_other_trials_prunes_the_trial(tmp_path):
    import optuna

    from cnnlab.tuning.trial import Search, Watch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1))
    first = study.ask()
    for epoch in range(3):
        first.report(0.9, epoch)
    study.tell(first, 0.9)
    watch = Watch(study.ask(), Search(base={}, parameters={}, metric="val_accuracy", direction="maximize",
                                      folder=tmp_path, study="s", storage="memory"))
    watch.run = tmp_path
    (tmp_path / "history.csv").write_text("epoch,val_accuracy\n0,0.50\n")
    assert watch._report() is False  # the first epoch is the pruner's warm-up
    (tmp_path / "history.csv").write_text("epoch,val_accuracy\n0,0.50\n1,0.55\n")
    assert watch._report() is True and len(watch.rows) == 2  # still behind the other trial's 0.9
    assert study.trials[-1].intermediate_values == {0: 0.50, 1: 0.55}


# --------------------------------------------------------------------------- studies, end to end


@pytest.mark.slow
def test_a_study_on_sqlite_trains_each_trial_as_a_run_and_writes_its_results(tmp_path, cli):
    path = experiment(tmp_path, pruner="none")
    done = tune(path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = trials_of(tmp_path)
    assert [t["state"] for t in trials] == ["complete"] * 3 and all(t["epochs"] == "3" for t in trials)
    study = tmp_path / "runs" / "dig" / "tune"
    assert (study / "study.db").is_file() and (study / "report.html").is_file()
    assert (study / "optimization_history.png").is_file() and (study / "parallel_coordinate.png").is_file()
    for trial in trials:  # each an ordinary run, its config the trial's values
        run = Path(trial["run"])
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["training"]["learning_rate"] == pytest.approx(float(trial["params_training.learning_rate"]))
        assert config["model"]["dropout"] == pytest.approx(float(trial["params_model.dropout"]))
        assert json.loads((run / "run.json").read_text())["tune"]["trial"] == int(trial["number"])
        assert (run / "metrics.json").is_file()
        history = list(csv.DictReader((run / "history.csv").open()))
        assert float(trial["value"]) == pytest.approx(max(float(r["val_accuracy"]) for r in history))
    best = max(trials, key=lambda t: float(t["value"]))
    best_config = yaml.safe_load((study / "best.yaml").read_text())
    assert best_config["training"]["learning_rate"] == pytest.approx(float(best["params_training.learning_rate"]))
    assert "tune" not in best_config and cli("check", str(study / "best.yaml")).exit_code == 0
    assert "dig#0" in cli("runs", str(tmp_path / "runs")).output
    again = tune(path)  # the budget is spent: nothing more is trained
    assert again.returncode == 0 and "3 of 3 trials done" in again.stdout and "Trial 3" not in again.stdout
    assert len(trials_of(tmp_path)) == 3


@pytest.mark.slow
def test_a_failed_trial_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path):
    path = experiment(tmp_path, epochs=2, trials=2, sampler="grid", pruner="none",
                      parameters={"training.learning_rate": {"space": "choice", "values": [0.01, 1.0e12]}})
    done = tune(path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = {t["params_training.learning_rate"]: t for t in trials_of(tmp_path)}
    assert trials["0.01"]["state"] == "complete"
    assert trials["1000000000000.0"]["state"] == "fail" and "NaN" in trials["1000000000000.0"]["reason"]


@pytest.mark.slow
def test_ctrl_c_queues_the_trial_again_and_the_same_command_resumes_its_run(tmp_path):
    path = experiment(tmp_path, epochs=80, trials=1, pruner="none")
    # As a shell starts it: SIGINT at its default (a worker of the test runner may ignore it, and a child inherits
    # an ignored signal)
    proc = subprocess.Popen([*CNNLAB, "tune", str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "runs" / "dig").glob("*/history.csv")):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    time.sleep(0.5)  # a few epochs of 80
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "queued again" in output
    first = trials_of(tmp_path)
    assert [t["state"] for t in first] == ["fail", "waiting"] and "interrupted" in first[0]["reason"]
    run = Path(first[0]["run"])
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    done = tune(path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "going on after epoch" in done.stdout
    again = trials_of(tmp_path)
    assert [t["state"] for t in again] == ["fail", "complete"] and again[1]["takes_up"] == "0"
    assert again[1]["run"] == str(run) and again[1]["epochs"] == "80"  # the interrupted run, trained to its end


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 for this module (Debian's postgresql binaries; as the user postgres when
    run as root): its URL; skipped, saying why, where it cannot start."""
    import glob

    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("no PostgreSQL server binaries (initdb): `make postgres` installs Debian's postgresql")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    prefix = []
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    if os.geteuid() == 0:  # initdb refuses root
        if shutil.which("setpriv") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without the user postgres (or setpriv) to run PostgreSQL as")
        prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        shutil.chown(folder, "postgres", "postgres")
    from cnnlab.distribution import free_port

    port, data = free_port(), folder / "data"
    steps = [[initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
             [pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
              f"-h 127.0.0.1 -p {port} -k {folder}", "start"]]
    for step in steps:
        done = subprocess.run([*prefix, *step], capture_output=True, text=True, cwd=folder)
        if done.returncode:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip(f"PostgreSQL did not start: {(done.stderr or done.stdout).strip()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_study_on_postgresql(tmp_path, postgres):
    pytest.importorskip("psycopg", reason="the tune extra's PostgreSQL driver (psycopg) is not installed")
    path = experiment(tmp_path, epochs=1, trials=4, pruner="none")
    procs = [subprocess.Popen([*CNNLAB, "tune", str(path), "--storage", postgres], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    import optuna

    trials = optuna.load_study(study_name="dig", storage=postgres).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # the budget once, numbers unique
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # each process's sampler draws its own
    assert all(any(f"Trial {t.number}:" in out for out in outputs) for t in trials)
    assert not any(f"Trial {t.number}:" in outputs[0] and f"Trial {t.number}:" in outputs[1] for t in trials)
    runs = {t.user_attrs["run"] for t in trials}
    assert len(runs) == 4 and all(Path(r, "metrics.json").is_file() for r in runs)
