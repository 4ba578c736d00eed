"""`cnnlab train --seeds`: one run per seed, each evaluated, summarised as a seed group; run again, it goes on."""

import json

from cnnlab import rundir
from tests.conftest import error_line


def _runs(root):
    return sorted(rundir.list_runs(root))


def test_seeds_train_and_evaluate_one_run_per_seed(cli, write_experiment, tmp_path):
    result = cli("train", write_experiment(), "--seeds", "3,4", "--quiet")
    assert result.exit_code == 0, result.output
    runs = _runs(tmp_path / "runs")
    assert len(runs) == 2
    assert [rundir.status(run) for run in runs] == ["completed"] * 2
    seeds = sorted(int(next(line for line in (run / "config.yaml").read_text().splitlines()
                            if line.startswith("seed:")).split(":")[1]) for run in runs)
    assert seeds == [3, 4]
    accuracies = [json.loads((run / "metrics.json").read_text())["accuracy"] for run in runs]
    rows = json.loads(cli("runs", tmp_path / "runs", "--json").output)
    group = next(r for r in rows if r["type"] == "seed_group")
    assert sorted(group["seeds"]) == [3, 4]
    assert abs(group["mean"]["test_accuracy"] - sum(accuracies) / 2) < 1e-9
    assert result.output.strip().startswith("Done: ")


def test_the_summary_line_gives_mean_spread_and_range(cli, write_experiment, tmp_path):
    result = cli("train", write_experiment(), "--seeds", "5,6")
    assert result.exit_code == 0, result.output
    summary = next(line for line in result.output.splitlines() if "over seeds 5,6" in line)
    assert "test_accuracy " in summary and " ± " in summary and rundir.SPREAD in summary


def test_running_the_same_command_again_trains_no_seed_twice(cli, write_experiment, tmp_path):
    experiment = write_experiment()
    assert cli("train", experiment, "--seeds", "3,4", "--quiet").exit_code == 0
    before = _runs(tmp_path / "runs")
    again = cli("train", experiment, "--seeds", "3,4")
    assert again.exit_code == 0, again.output
    assert again.output.count("is trained already") == 2
    assert _runs(tmp_path / "runs") == before
    fresh = cli("train", experiment, "--seeds", "3,4", "--fresh", "--quiet")
    assert fresh.exit_code == 0, fresh.output
    assert len(_runs(tmp_path / "runs")) == 4


def test_an_interrupted_seed_is_resumed_and_the_finished_one_kept(cli, write_experiment, tmp_path):
    experiment = write_experiment()
    assert cli("train", experiment, "--seeds", "3,4", "--quiet").exit_code == 0
    first, second = sorted(_runs(tmp_path / "runs"), key=lambda run: "seed: 4" in (run / "config.yaml").read_text())
    rundir.update_run_info(second, status="running")  # as a killed process leaves it: no lock, no metrics
    (second / "metrics.json").unlink()
    again = cli("train", experiment, "--seeds", "3,4")
    assert again.exit_code == 0, again.output
    assert f"is trained already: {first}" in again.output
    assert f"Resuming the interrupted run {second}" in again.output
    assert rundir.status(second) == "completed" and (second / "metrics.json").is_file()
    assert len(_runs(tmp_path / "runs")) == 2


def test_the_report_of_a_seed_group_shows_its_mean(cli, write_experiment, tmp_path):
    assert cli("train", write_experiment(), "--seeds", "3,4", "--quiet").exit_code == 0
    page = tmp_path / "compare.html"
    result = cli("report", *_runs(tmp_path / "runs"), "-o", page)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "Seed groups" in text and "[seeds 3,4]" in text and " ± " in text


def test_a_dry_run_with_seeds_trains_nothing(cli, write_experiment, tmp_path):
    result = cli("train", write_experiment(), "--seeds", "3,4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "runs").exists()


def test_bad_seeds_are_one_error_line(cli, write_experiment, tmp_path):
    experiment = write_experiment()
    for text, says in (("1,x", "integers separated by commas"), ("1,1", "distinct"), ("-3", "from 0")):
        result = cli("train", experiment, "--seeds", text)
        assert result.exit_code == 2, result.output
        line = error_line(result)
        assert "--seeds" in line and says in line and repr(text) in line
    assert not (tmp_path / "runs").exists()


def test_seeds_without_a_test_split_train_every_seed_and_say_why_none_is_scored(cli, write_experiment, tmp_path):
    experiment = write_experiment({"data": {"dataset": "digits", "validation_split": 0.2, "test_split": 0.0,
                                            "batch_size": 64}})
    result = cli("train", experiment, "--seeds", "3,4")
    assert result.exit_code == 0, result.output
    assert result.output.count("is not evaluated: the data has no test split") == 2
    assert len(_runs(tmp_path / "runs")) == 2


def test_a_failing_seed_does_not_stop_the_others(cli, write_experiment, tmp_path, monkeypatch):
    from cnnlab.commands import train as experiment_module
    from cnnlab.errors import TrainingError

    original = experiment_module.train

    def train(cfg, **kwargs):
        if cfg.seed == 3:
            raise TrainingError("the loss became NaN at epoch 1")
        return original(cfg, **kwargs)

    monkeypatch.setattr(experiment_module, "train", train)
    result = cli("train", write_experiment(), "--seeds", "3,4,5")
    assert result.exit_code == 2
    line = error_line(result)
    assert "1 of 3 seeds failed (seed 3: the loss became NaN at epoch 1)" in line and "completed" in line
    assert "[seeds 4,5]" in result.output  # the others trained and were summarised
