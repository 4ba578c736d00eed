"""Folders cnnlab may not write: one ``Error:`` line, exit code 2, before any data is read.

Root passes every permission check, so the cases that need a denial run cnnlab in a
subprocess as an ordinary user (`ordinary_user` in conftest.py: uid 65534 through
setpriv when the tests run as root, the user running them otherwise). None of them
trains: every command must stop before it reads data or loads a model.
"""

import errno
import json

import pytest
import yaml

from cnnlab import files
from cnnlab.config import load_config, save_config
from cnnlab.errors import CnnlabError
from tests.conftest import TINY_EXPERIMENT, error_line

BASE = TINY_EXPERIMENT


def experiment(user, output_dir):
    """The tiny experiment in the user's scratch folder, its runs going to `output_dir`."""
    path = user.root / "tiny.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output_dir": str(output_dir)}, sort_keys=False))
    return path


def fake_run(user, output_dir, status="completed"):
    """A run of the tiny experiment under `output_dir`, read-only; its model is no model: the commands
    must stop before they load it."""
    run = output_dir / "tiny" / "20240101-000000"
    run.mkdir(parents=True)
    save_config(load_config(experiment(user, output_dir)), run / "config.yaml")
    (run / "model.keras").write_bytes(b"not a model")
    (run / "class_names.json").write_text(json.dumps([str(i) for i in range(10)]))
    if status == "completed":
        (run / "run.json").write_text(json.dumps({"status": status}))  # none: an interrupted run
    for folder in (run, run.parent, output_dir):
        folder.chmod(0o555)
    return run


def refused(done, *names):
    """Exit code 2 and one ``Error:`` line naming each of `names`; no traceback, no unexpected failure,
    no matplotlib warning, no data read."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    for name in names:
        assert str(name) in lines[0], output
    for noise in ("Traceback", "unexpected", "atplotlib", "MPLCONFIGDIR"):
        assert noise not in output, output
    assert "Data:" not in done.stdout, output
    return lines[0]


OUTPUT_DIRS = [  # (id, --output-dir under the scratch folder, or None for the experiment's own, what is named)
    ("read-only", "ro", "ro"),
    ("under-a-read-only-folder", "ro/new/deeper", "ro/new/deeper"),
    ("the-experiments-own", None, "ro"),
    ("a-file-in-the-way", "tiny.yaml/runs", "tiny.yaml"),
]


@pytest.mark.parametrize("output_dir, named", [c[1:] for c in OUTPUT_DIRS], ids=[c[0] for c in OUTPUT_DIRS])
def test_train_into_an_unwritable_folder_stops_before_the_data(ordinary_user, output_dir, named):
    path = experiment(ordinary_user, ordinary_user.read_only("ro"))
    line = refused(ordinary_user.run("train", path, *(["--output-dir", output_dir] if output_dir else [])), named)
    assert "--output-dir" in line


def test_a_read_only_interrupted_run_is_not_resumed(ordinary_user):
    run = fake_run(ordinary_user, ordinary_user.owned("runs"), status="interrupted")
    path = experiment(ordinary_user, run.parents[1])
    line = refused(ordinary_user.run("train", path), run.relative_to(ordinary_user.root))
    assert "interrupted run" in line and "--fresh" in line


WRITERS = [  # (id, the command's arguments after the run, what its Error line names); the run is read-only
    ("evaluate", lambda run: ["evaluate", run], ["evaluation", "RUN"]),
    ("evaluate-other-split", lambda run: ["evaluate", run, "--split", "val"], ["RUN/evaluations/val"]),
    ("report", lambda run: ["report", run], ["RUN/report.html"]),
    ("report-o", lambda run: ["report", run, "-o", "ro/report.html"], ["ro/report.html"]),
    ("export", lambda run: ["export", run, "--format", "tflite"], ["RUN/export"]),
    ("predict-o", lambda run: ["predict", run, "tiny.yaml", "-o", "ro/predictions.csv"], ["ro/predictions.csv"]),
    ("ensemble-save", lambda run: ["ensemble", run, run, "--save", "ro/ensemble"], ["ro/ensemble"]),
    ("finetune", lambda run: ["finetune", run], ["ro/tiny-finetune", "--output-dir"]),
    ("lr-find-o", lambda run: ["lr-find", "tiny.yaml", "-o", "ro/lr.png"], ["ro/lr.png"]),
    ("augment-preview-o", lambda run: ["augment-preview", "tiny.yaml", "-o", "ro/preview.png"], ["ro/preview.png"]),
]


@pytest.mark.parametrize("arguments, named", [c[1:] for c in WRITERS], ids=[c[0] for c in WRITERS])
def test_every_writing_command_checks_its_folder_first(ordinary_user, arguments, named):
    run = fake_run(ordinary_user, ordinary_user.root / "ro")
    relative = run.relative_to(ordinary_user.root)
    refused(ordinary_user.run(*arguments(relative)), *(n.replace("RUN", str(relative)) for n in named))


def test_an_unwritable_home_is_quiet(ordinary_user):
    """Matplotlib (imported by TensorFlow) cannot write ~/.config: no warning, as nothing of cnnlab's is there."""
    path = experiment(ordinary_user, ordinary_user.owned("runs"))
    done = ordinary_user.run("check", path, home=ordinary_user.read_only("home-ro"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "atplotlib" not in done.stderr and "MPLCONFIGDIR" not in done.stderr, done.stderr


def test_a_keras_dataset_cache_it_may_not_write_is_one_error_line(cli, write_experiment, monkeypatch):
    import keras

    def denied():
        raise PermissionError(errno.EACCES, "Permission denied", "/tmp/.keras/datasets")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", denied)
    monkeypatch.setenv("KERAS_HOME", "/read-only/keras")
    result = cli("train", write_experiment({"data": {"dataset": "mnist"}}))
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "/tmp/.keras/datasets" in line and "KERAS_HOME" in line and "/read-only/keras" in line, line


def test_unwritable_says_why_without_privileges(tmp_path):
    (tmp_path / "file").write_text("")
    assert files.unwritable(tmp_path / "new" / "deeper") is None
    assert "is a file" in files.unwritable(tmp_path / "file")
    assert f"{str(tmp_path / 'file')!r} is a file" in files.unwritable(tmp_path / "file" / "runs")


def test_a_denial_deep_inside_a_command_is_one_line():
    with pytest.raises(CnnlabError, match="Permission denied: '/x/run.json'"):
        with files.permission_errors():
            raise PermissionError(errno.EACCES, "Permission denied", "/x/run.json")
    with pytest.raises(FileNotFoundError):  # not a denial: not turned into bad input
        with files.permission_errors():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")
