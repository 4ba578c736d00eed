"""`cnnlab runs` (--sort, --json, seed groups) on run folders the tests write, and `cnnlab models` (fast,
TensorFlow-free listing; the stored parameter counts checked against real builds)."""

import json
import subprocess
import sys
import time

import pytest
import yaml

from cnnlab import catalog, rundir
from tests.conftest import error_line

# --------------------------------------------------------------------------- cnnlab runs

CONFIG = {"name": "tiny", "seed": 1, "output_dir": "runs", "data": {"dataset": "digits"},
          "model": {"architecture": "mlp"}, "training": {"epochs": 2, "learning_rate": 0.003}}


def fake_run(root, stamp, *, val=None, test=None, loss=None, status="completed", info=None, **config):
    """A run folder as cnnlab leaves it: config.yaml, run.json, history.csv, metrics.json."""
    config = {**CONFIG, **config}
    run = root / config["name"] / stamp
    run.mkdir(parents=True)
    (run / rundir.CONFIG_FILE).write_text(yaml.safe_dump({**config, "provenance": {"created": stamp}}))
    (run / rundir.RUN_FILE).write_text(json.dumps({"status": status, **(info or {})}))
    if val is not None:
        rows = "".join(f"{e},{v},{v + 0.1}\n" for e, v in enumerate((val - 0.1, val)))
        (run / rundir.HISTORY_FILE).write_text("epoch,val_accuracy,accuracy\n" + rows)
    if test is not None:
        (run / rundir.METRICS_FILE).write_text(json.dumps({"split": "test", "accuracy": test, "loss": loss}))
    return run


@pytest.fixture
def runs_root(tmp_path):
    """Three seeds of one config, one with another learning rate, one unfinished, one ensemble copy."""
    root = tmp_path / "runs"
    fake_run(root, "20240101-000001", val=0.90, test=0.80, loss=0.5)
    fake_run(root, "20240101-000002", val=0.92, test=0.84, loss=0.4, seed=2)
    fake_run(root, "20240101-000003", val=0.94, test=0.88, loss=0.3, seed=3)
    fake_run(root, "20240101-000004", val=0.99, test=0.70, loss=0.9, training={"epochs": 2, "learning_rate": 0.1})
    fake_run(root, "20240101-000005", status="interrupted", name="other")
    fake_run(root, "20240101-000006", test=0.95, loss=0.2, name="ensemble", info={"kind": "ensemble"})
    return root


def records(cli, root, *args):
    result = cli("runs", root, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_is_a_list_of_runs_then_seed_groups(cli, runs_root):
    rows = records(cli, runs_root)
    assert [r["type"] for r in rows] == ["run"] * 6 + ["seed_group"]
    assert set(rows[0]) >= set(rundir.RUN_COLUMNS)
    first = rows[0]
    assert (first["name"], first["seed"], first["status"], first["epochs"]) == ("tiny", 1, "completed", 2)
    assert (first["best_val_accuracy"], first["test_accuracy"], first["test_loss"]) == (0.90, 0.80, 0.5)
    assert rows[5]["name"] == "ensemble" and rows[5]["epochs"] is None  # it trained no epochs: not 0


def test_runs_differing_only_in_seed_form_a_group(cli, runs_root):
    """The learning-rate run, the unfinished one and the ensemble (same config, kind ensemble) stay out."""
    rows = records(cli, runs_root)
    group = rows[-1]
    assert group["seeds"] == [1, 2, 3] and len(group["runs"]) == 3
    assert group["mean"]["test_accuracy"] == pytest.approx(0.84)
    assert group["std"]["test_accuracy"] == pytest.approx(0.04)  # sample standard deviation of .80 .84 .88
    assert (group["min"]["test_accuracy"], group["max"]["test_accuracy"]) == (0.80, 0.88)
    assert group["mean"]["best_val_accuracy"] == pytest.approx(0.92) and group["count"]["test_loss"] == 3
    assert [r["group"] is not None for r in rows[:6]] == [True, True, True, False, False, False]


def test_the_table_has_a_group_line_with_mean_and_spread(cli, runs_root):
    result = cli("runs", runs_root)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == list(rundir.RUN_COLUMNS)
    assert lines[7] == f"seed groups ({rundir.SPREAD}):"
    group = lines[8]
    assert group.startswith("tiny [seeds 1,2,3]") and "3 seeds" in group
    assert "0.8400 ± 0.0400" in group and "0.9200 ± 0.0200" in group and "2.0 ± 0.0" in group
    assert "other/20240101-000005" in lines[5] and "interrupted" in lines[5] and " - " in lines[5]


def test_a_seed_trained_again_counts_once_by_its_newest_run(cli, tmp_path):
    """``[seeds 42,42,42,42,1]`` with ``± 0.0000`` was four draws of one seed; now seed 42 is one draw."""
    root = tmp_path / "runs"
    for stamp, test in (("20240101-000001", 0.60), ("20240101-000002", 0.62), ("20240101-000003", 0.64)):
        fake_run(root, stamp, val=0.9, test=test, loss=0.5, seed=42)
    newest = fake_run(root, "20240101-000004", val=0.9, test=0.80, loss=0.5, seed=42)
    fake_run(root, "20240101-000005", val=0.9, test=0.90, loss=0.3, seed=1)
    rows = records(cli, root)
    group = rows[-1]
    assert [r["type"] for r in rows].count("seed_group") == 1
    assert group["group"] == "tiny [seeds 1,42]" and group["seeds"] == [1, 42]
    assert group["runs"][1] == str(newest) and len(group["repeats"]) == 3
    assert group["mean"]["test_accuracy"] == pytest.approx(0.85) and group["count"]["test_accuracy"] == 2
    assert group["std"]["test_accuracy"] == pytest.approx(0.0707107)  # of .80 and .90: n - 1 = 1
    assert [r["group"] for r in rows[:5]] == [None, None, None, group["group"], group["group"]]
    line = cli("runs", root).output.splitlines()[-1]
    assert line.startswith("tiny [seeds 1,42]") and "2 seeds (5 runs)" in line and "0.8500 ± 0.0707" in line


def test_runs_of_another_name_are_not_joined(cli, tmp_path):
    """Two experiment names with one config are two experiments: each forms its own group, or none."""
    root = tmp_path / "runs"
    fake_run(root, "20240101-000001", test=0.80, loss=0.5, seed=1)
    fake_run(root, "20240101-000002", test=0.84, loss=0.4, seed=2, name="copy")
    fake_run(root, "20240101-000003", test=0.88, loss=0.3, seed=3, name="copy")
    groups = [r for r in records(cli, root) if r["type"] == "seed_group"]
    assert [(g["group"], g["name"], g["seeds"]) for g in groups] == [("copy [seeds 2,3]", "copy", [2, 3])]
    assert groups[0]["mean"]["test_accuracy"] == pytest.approx(0.86)


def test_one_seed_shows_no_spread(cli, tmp_path):
    """One seed trained three times is no seed group; a metric only one seed has is that value, '(1 seed)'."""
    root = tmp_path / "runs"
    for stamp in ("20240101-000001", "20240101-000002", "20240101-000003"):
        fake_run(root, stamp, val=0.9, test=0.80, loss=0.5, seed=42)
    assert all(r["type"] == "run" for r in records(cli, root))
    output = cli("runs", root).output
    assert "±" not in output and "seed groups" not in output
    fake_run(root, "20240101-000004", val=0.92, seed=7)  # trained, not evaluated: no test metrics
    line = cli("runs", root).output.splitlines()[-1]
    assert line.startswith("tiny [seeds 7,42]") and "0.9100 ± 0.0141" in line  # best_val_accuracy: two seeds
    assert "0.8000 (1 seed)" in line and "0.5000 (1 seed)" in line and "± 0.0000" not in line


def test_sort_numerically_with_missing_values_last(cli, runs_root):
    by_test = [r["test_accuracy"] for r in records(cli, runs_root, "--sort", "test_accuracy") if r["type"] == "run"]
    assert by_test == [0.70, 0.80, 0.84, 0.88, 0.95, None]
    by_test = [r["test_accuracy"] for r in records(cli, runs_root, "--sort", "test-accuracy", "--reverse")
               if r["type"] == "run"]
    assert by_test == [0.95, 0.88, 0.84, 0.80, 0.70, None]
    lines = cli("runs", runs_root, "--sort", "best_val_accuracy", "-r").output.splitlines()
    assert "20240101-000004" in lines[1] and "20240101-000005" in lines[5] and "20240101-000006" in lines[6]
    names = [r["name"] for r in records(cli, runs_root, "--sort", "name") if r["type"] == "run"]
    assert names == sorted(names)


def test_unknown_sort_column_lists_the_columns(cli, runs_root):
    result = cli("runs", runs_root, "--sort", "test_acc")
    line = error_line(result)
    assert result.exit_code == 2 and "`--sort` must be one of run, name, seed" in line
    assert "Did you mean 'test_accuracy'?" in line


def test_no_runs_is_one_error_line(cli, tmp_path):
    result = cli("runs", tmp_path, "--json")
    assert result.exit_code == 2 and "no runs under" in error_line(result)


# --------------------------------------------------------------------------- cnnlab models

NO_TENSORFLOW = """
import sys, time
from click.testing import CliRunner
from cnnlab.cli import main
start = time.perf_counter()
result = CliRunner().invoke(main, {args!r})
print(result.output)
print("SECONDS", time.perf_counter() - start)
print("IMPORTED", "tensorflow" in sys.modules or "keras" in sys.modules)
"""


def models_in_fresh_process(*args):
    """`cnnlab models ARGS` in a new interpreter: its output, its time, and whether it imported TF or Keras."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", NO_TENSORFLOW.format(args=["models", *args])], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    elapsed = time.perf_counter() - start
    return out, elapsed, "IMPORTED True" in out


def listed(output):
    return [line.split()[0] for line in output.splitlines()[1:] if line and line.split()[0] in catalog.ARCHITECTURES]


def test_models_glob_lists_only_matches_fast_without_tensorflow():
    out, elapsed, imported = models_in_fresh_process("resnet*")
    names = listed(out)
    assert names and all(n.startswith("resnet") for n in names)
    assert set(names) == {n for n in catalog.ARCHITECTURES if n.startswith("resnet")}
    assert not imported and elapsed < 3, (elapsed, out)
    assert "He et al. 2015" in out


def test_models_params_at_the_default_shape_come_from_the_table():
    out, elapsed, imported = models_in_fresh_process("vgg16", "--params")
    assert not imported and elapsed < 3, (elapsed, out)
    assert "138,357,544" in out and "15,470.3M" in out  # VGG-16's 138M parameters, 15.5G multiply-adds


def test_models_family_and_pattern(cli):
    result = cli("models", "--family", "resnet-cifar")
    assert listed(result.output) == ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    result = cli("models", "*net*", "--family", "keras.applications")
    assert listed(result.output) and all("net" in n for n in listed(result.output))
    assert len(listed(cli("models").output)) == len(catalog.ARCHITECTURES) == 59


def test_models_unknown_family_or_no_match_is_one_error_line(cli):
    result = cli("models", "--family", "resnets")
    line = error_line(result)
    assert result.exit_code == 2 and "`--family` must be one of perceptron" in line and "Did you mean 'resnet'" in line
    result = cli("models", "resnt50")
    line = error_line(result)
    assert result.exit_code == 2 and "no architecture matches 'resnt50'" in line and "'resnet50'" in line
    result = cli("models", "vgg*", "--family", "resnet")
    assert result.exit_code == 2 and "in family 'resnet'" in error_line(result)


def test_models_at_another_shape_builds_them(cli):
    """resnet20 ends in global pooling: the same parameters at 32x32, 49 times fewer multiply-adds."""
    params, madds = catalog.PARAMETER_COUNTS["resnet20"]
    result = cli("models", "resnet20", "--input-shape", "32,32,3")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Building 1 model(s) for (32, 32, 3) images and 1000 classes")
    row = result.output.splitlines()[-1].split()
    assert row[0] == "resnet20" and row[2] == f"{params:,}"
    assert float(row[3].rstrip("M").replace(",", "")) == pytest.approx(madds / 49 / 1e6, rel=0.01)
    row = cli("models", "resnet20", "--classes", "10").output.splitlines()[-1].split()
    assert row[2] == f"{params - 990 * 65:,}"  # a 64 -> 10 head instead of 64 -> 1000, biases included


def test_the_table_covers_every_architecture():
    assert list(catalog.PARAMETER_COUNTS) == list(catalog.ARCHITECTURES)
    assert all(isinstance(v, tuple) and v[0] > 0 and v[1] > 0 for n, v in catalog.PARAMETER_COUNTS.items()
               if "classification" in catalog.ARCHITECTURES[n].tasks)


def check_counts(name):
    from cnnlab.models.summary import count

    assert count(name, catalog.COUNTS_SHAPE, catalog.COUNTS_CLASSES) == catalog.PARAMETER_COUNTS[name], (
        f"{name}'s stored counts are stale: regenerate with `python -m cnnlab.models.summary`")


# Every zoo builder once, and keras.applications backbones (ConvNeXt: its grouped convolutions run as
# nested functions the counter must enter): the table is built by the same code for all 55, so a
# stale table shows here. A full check rebuilds all 55 (minutes):
# `python -m cnnlab.models.summary` regenerates the table and its diff shows what changed.
@pytest.mark.parametrize("name", ["slp", "mlp", "simple_cnn", "deep_cnn", "alexnet", "vgg11", "googlenet",
                                  "resnet18", "resnet20", "mobilenet_v3_small", "convnext_tiny"])
def test_stored_counts_match_a_real_build(name):
    check_counts(name)
