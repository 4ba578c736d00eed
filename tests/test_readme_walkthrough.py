"""A newcomer's walkthrough of README.md: every command and option it shows, in fresh processes.

Each step runs ``python -m cnnlab ...`` in a folder outside the project (``elsewhere/``), with
the project's experiments named by path as someone who cloned it would, a fresh
``KERAS_HOME`` (no dataset cached by an earlier download) and no ``TF_CPP_MIN_LOG_LEVEL``
(the CLI itself must hold TensorFlow's chatter back). The commands are read from README.md
where it writes them out in full (the opening three, ``lr-find``'s offline line, the
accuracy table's rows); each step's comment says what was changed and why: only what a
download (cifar10, mnist) or a long training needs.

``WALKED`` lists the options each walkthrough passes, and each checks at its end that it
passed them all; the fast tests check that ``WALKED`` covers every ``cnnlab <verb>`` and every
option of README's Commands section, and that the README shows every option of the CLI.
"""

import csv
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import SHARED_MNIST, make_images, wait_for_epoch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CNNLAB = [sys.executable, "-m", "cnnlab"]
TIMEOUT = 600  # seconds for one command; the whole file takes a few minutes on 2 cores
GLOBAL = "cnnlab"  # WALKED's key for the options every command takes (README: "anywhere on the line")
GLOBAL_OPTIONS = {"--quiet", "-q", "--verbose", "-v"}
HAS_EXPORT_EXTRA = importlib.util.find_spec("ai_edge_litert") is not None  # pip install "cnnlab[export]"

# The options each walkthrough passes, per verb (as README spells them).
WALKED = {
    "test_opening_three_then_predict_report_and_export": {
        "train": {"--set", "--epochs"},
        "finetune": {"--freeze", "--epochs", "--head-epochs"},
        "evaluate": set(),
        "predict": {"--top-k", "-o", "--json", "--all-probs", "--tta", "--batch-size", "--unsafe"},
        "report": set(),
        "export": {"--format"},
        GLOBAL: {"--quiet"},
    },
    "test_make_demo_experiment_interrupted_resumed_ensembled_finetuned_by_layer_name": {
        "train": {"--epochs", "--fresh"},
        "ensemble": {"--weights", "--split", "--save", "--unsafe"},
        "evaluate": {"--split", "--json", "--tta", "--data-dir", "--unsafe"},
        "export": {"--format", "--quantize", "-o", "--data-dir", "--unsafe"},
        "check": {"--layers"},
        "finetune": {"--freeze", "--epochs", "--head-epochs", "--learning-rate", "--set", "--output-dir", "--fresh",
                     "--unsafe"},
        "report": {"-o", "--unsafe"},
        "runs": set(),
        GLOBAL: {"--verbose"},
    },
    "test_seeds_runs_lr_find_augment_preview_dry_run_check_and_models": {
        "train": {"--seeds", "--epochs", "--output-dir", "--dry-run"},
        "runs": {"--sort", "--reverse", "--json"},
        "lr-find": {"--set", "--start", "--end", "--steps", "-o", "--json"},
        "augment-preview": {"--set", "-n", "-o"},
        "check": {"--set"},
        "models": {"--family", "--params", "--input-shape", "--classes"},
        GLOBAL: {"--help", "--version"},
    },
    "test_accuracy_table_command_reads_mnist_from_the_readme_path": {
        "train": {"--seeds", "--set", "--epochs"},
    },
    "test_visualize_benchmark_and_serve_as_the_readme_shows": {
        "train": {"--set", "--epochs"},
        "visualize": {"-o", "--unsafe"},
        "benchmark": {"--input-shape", "--batch-size", "--repeats", "-o", "--unsafe"},
        "serve": {"--host", "--port", "--unsafe"},
    },
    "test_tune_track_and_doctor_as_the_readme_shows": {
        "tune": {"--trials", "--storage", "--set", "--track"},
        "train": {"--track", "--set"},
        "doctor": {"--folds", "-o", "--set", "--unsafe"},
    },
}
# What README shows that no walkthrough runs, and where it is tested instead.
NOT_WALKED = {
    ("train", "--workers"): "tests/test_distribution.py runs `train --workers 2`: two JAX workers cost minutes",
}


# --------------------------------------------------------------------------- README.md, read


def code_blocks():
    """The fenced code blocks of README.md, in order."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", README, re.M | re.S)


def code_spans():
    """The inline `code` of README.md outside its fenced blocks, in order."""
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", README, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def readme_command(start):
    """README's first command line that starts with `start`: ``(words, comment)``, the ``# comment`` apart."""
    for line in [line.strip() for code in code_blocks() + code_spans() for line in code.splitlines()]:
        if line.startswith(start):
            command, _, comment = line.partition(" #")
            return shlex.split(command), comment.strip()
    raise AssertionError(f"README.md shows no command starting with {start!r} any more: update this walkthrough")


def as_user(words):
    """A README command's words as someone in another folder types them: ``experiments/`` is the clone's."""
    assert words[0] == "cnnlab", words
    return [str(REPO / word) if word.startswith("experiments/") else word for word in words[1:]]


def opening_commands():
    """The three commands of README's first code block (train, finetune, evaluate), as the user's words."""
    lines = [line.partition("#")[0].strip() for line in code_blocks()[0].splitlines()]
    commands = [as_user(shlex.split(line)) for line in lines if line]
    assert [words[0] for words in commands] == ["train", "finetune", "evaluate"], commands
    return commands


def commands_shown():
    """Every verb of README's Commands section with the options its synopsis shows (comments apart)."""
    synopsis = README.split("\n## Commands", 1)[1].split("```", 2)[1]
    shown, verb = {}, None
    for line in synopsis.splitlines():
        line = re.sub(r"\s#\s.*$", "", line)
        if line.startswith("cnnlab "):
            verb, line = line.split()[1], line.split(None, 2)[2] if len(line.split()) > 2 else ""
        if verb:
            shown.setdefault(verb, set()).update(re.findall(r"(?:^|[\s\[|])(--?[a-z][a-z-]*)", line))
    return shown


# --------------------------------------------------------------------------- the newcomer's shell


class Session:
    """``cnnlab ARGS`` in a fresh process in `cwd`; records the options it passed, per verb."""

    def __init__(self, cwd, env):
        self.cwd, self.env, self.passed = cwd, env, {}

    def __call__(self, *args, expect=0):
        """Run, assert the exit code and a clean stderr; the finished process (its ``seconds`` too)."""
        args = [str(a) for a in args]
        self.record(args)
        started = time.monotonic()
        done = subprocess.run([*CNNLAB, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        done.seconds = time.monotonic() - started
        assert done.returncode == expect, shown(done)
        if "--verbose" not in args:  # README: TensorFlow's start-up chatter and Keras's warnings are held back
            assert not re.search(r"Traceback|^WARNING|^[IWE]\d{4} |oneDNN", done.stderr, re.M), shown(done)
        return done

    def start(self, *args):
        """Start ``cnnlab ARGS`` in the background (for an interruption); the process."""
        self.record([str(a) for a in args])
        # As a shell starts it: Ctrl-C's SIGINT at its default, whatever this test process does with it
        # (a worker of the test runner may ignore SIGINT, and a child inherits an ignored signal).
        return subprocess.Popen([*CNNLAB, *map(str, args)], cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def record(self, args):
        verb = next((a for a in args if not a.startswith("-")), GLOBAL)
        for arg in args:
            if arg.startswith("-") and not re.fullmatch(r"-[\d.e-]+", arg):
                self.passed.setdefault(GLOBAL if arg in GLOBAL_OPTIONS else verb, set()).add(arg)

    def assert_walked(self, walked):
        """Every option `walked` claims for this walkthrough was really passed."""
        missing = {(verb, option) for verb, options in walked.items() for option in options
                   if option not in self.passed.get(verb, set())}
        assert not missing, f"WALKED claims options this walkthrough never passed: {sorted(missing)}"


def error_line(done):
    """The one ``Error:`` line of a failed command."""
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, shown(done)
    return lines[0]


def shown(done):
    return f"cnnlab {' '.join(done.args[3:])} -> exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture
def elsewhere(tmp_path):
    """A folder outside the project, and a newcomer's shell in it."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "TF_CPP_"))}
    env["KERAS_HOME"] = str(tmp_path / "keras-home")  # a fresh machine: no dataset from an earlier download
    return Session(folder, env)


def run_dir(session, done, prefix="Done: "):
    """The run folder a command names on its ``Done:`` (or other `prefix`) line, under the session's folder."""
    line = next((line for line in done.stdout.splitlines() if line.startswith(prefix)), None)
    assert line, shown(done)
    folder = session.cwd / line.removeprefix(prefix).split(" (")[0]
    assert folder.is_dir(), line
    return folder


def says_run(output, folder, session, label="Run", note=" (latest)"):
    """The command says which run it acts on, ``Run: runs/<name>/<timestamp> (latest)``, naming `folder`."""
    expected = f"{label}: {folder.relative_to(session.cwd)}{note}"
    assert expected in output.splitlines(), f"expected {expected!r} in\n{output[-2000:]}"


def metrics(path):
    """metrics.json's figures, checked to be fractions (loss apart)."""
    record = json.loads(Path(path).read_text())
    fractions = [record["accuracy"], *record["top_k_accuracy"].values(), *record["macro_avg"].values()]
    assert all(0.0 <= value <= 1.0 for value in fractions), record
    assert record["images"] > 0 and record["loss"] >= 0, record
    return record


def history(folder):
    with open(folder / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def status(folder):
    return json.loads((folder / "run.json").read_text())["status"]


def write_digit_pngs(folder, per_class=3):
    """scikit-learn's digits as 8x8 grayscale PNGs in class sub-folders ``0`` .. ``9``; their paths."""
    from sklearn.datasets import load_digits

    digits, paths = load_digits(), []
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
        for i in np.flatnonzero(digits.target == label)[-per_class:]:  # the last ones: mostly test images
            paths.append(folder / str(label) / f"{i}.png")
            Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(paths[-1])
    return paths


# --------------------------------------------------------------------------- the walkthroughs


@pytest.mark.slow
def test_opening_three_then_predict_report_and_export(elsewhere):
    session, here = elsewhere, elsewhere.cwd
    train, finetune, evaluate = opening_commands()
    images = write_digit_pngs(here / "digits_png")
    (here / "broken.png").write_bytes(b"not a png")  # README: a bad file is named, the rest predicted, exit 0
    # Changed: digits, not cifar10 (a download); simple_cnn, not VGG16's 33M parameters (vgg.yaml's
    # batch norm, standardize scaling, crop + flip augmentation, nesterov and cosine schedule kept); 1 epoch.
    done = session(*train, "--set", "data.dataset=digits", "--set", "model.architecture=simple_cnn", "--epochs", "1")
    base = run_dir(session, done)
    assert base.parent.name == "vgg16-cifar10" and status(base) == "completed" and len(history(base)) == 1
    assert yaml.safe_load((base / "config.yaml").read_text())["data"]["dataset"] == "digits"
    assert metrics(base / "metrics.json")["images"] == 360 and (base / "model.keras").is_file()
    assert f"Next: cnnlab report {base.relative_to(here)}" in done.stdout

    # Changed: 1 epoch per phase instead of 5 + 10; --freeze 100 as written (beyond simple_cnn's layers).
    done = session(*finetune, "--head-epochs", "1", "--epochs", "1")
    says_run(done.stdout, base, session, label="Base run")
    assert "Note: --freeze 100 covers the whole base" in done.stdout
    tuned = run_dir(session, done)
    assert tuned.parent.name == "vgg16-cifar10-finetune" and status(tuned) == "completed"
    assert [row["phase"] for row in history(tuned)] == ["1", "2"]
    assert json.loads((tuned / "run.json").read_text())["base"] == str(base)

    done = session(*evaluate)  # as written: the latest run, the fine-tuned one
    says_run(done.stdout, tuned, session)
    assert metrics(tuned / "metrics.json")["images"] == 360 and (tuned / "plots" / "confusion_matrix.png").is_file()

    # Every option of `predict` on one line: a folder of PNGs and a broken file, into a CSV and JSON on stdout.
    done = session("predict", "digits_png", "broken.png", "--top-k", "3", "-o", "predictions.csv", "--json",
                   "--all-probs", "--tta", "--batch-size", "8", "--unsafe")
    says_run(done.stderr, tuned, session)  # on stderr with --json
    assert "broken.png" in done.stderr and len(json.loads(done.stdout)) == len(images) + 1
    rows = list(csv.DictReader((here / "predictions.csv").open(newline="")))
    assert sorted(row["path"] for row in rows) == sorted([str(p.relative_to(here)) for p in images] + ["broken.png"])
    for row in rows:
        if row["path"] == "broken.png":
            assert row["error"] and not row["top1_label"]
            continue
        probs = [float(row[f"prob_{digit}"]) for digit in range(10)]
        assert not row["error"] and row["top1_label"] in "0123456789" and row["top3_label"]
        assert all(0 <= p <= 1 for p in probs) and abs(sum(probs) - 1) < 1e-3
        assert float(row["top1_prob"]) == pytest.approx(max(probs), abs=1e-6)

    done = session("report")
    says_run(done.stdout, tuned, session)
    page = (tuned / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page  # one self-contained page

    done = session("--quiet", "export", "--format", "savedmodel")  # --quiet anywhere on the line
    assert done.stdout.splitlines() == [f"Exported: {(tuned / 'export' / 'savedmodel').relative_to(here)}"]
    assert (tuned / "export" / "savedmodel" / "saved_model.pb").is_file()
    check = json.loads((tuned / "export" / "savedmodel.json").read_text())["check"]
    assert check["passed"] and check["agreement"] >= 0.99
    session.assert_walked(WALKED["test_opening_three_then_predict_report_and_export"])


@pytest.mark.slow
def test_make_demo_experiment_interrupted_resumed_ensembled_finetuned_by_layer_name(elsewhere):
    session, here = elsewhere, elsewhere.cwd
    images = write_digit_pngs(here / "digits_png")
    # `make demo`'s experiment; Changed: 10 epochs instead of 40 (early stopping could end it anywhere).
    train = ["train", REPO / "experiments" / "digits_mlp.yaml", "--epochs", "10"]
    process = session.start(*train)
    wait_for_epoch(here, 1, process=process)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130, (f"SIGINT here: {signal.getsignal(signal.SIGINT)}\n"
                                       + out[-2000:] + err[-2000:])
    assert "Run the same command again to resume" in err
    interrupted, = (here / "runs" / "digits-mlp").iterdir()
    assert status(interrupted) == "interrupted" and (interrupted / "backup").is_dir()

    done = session(*train, "--fresh")  # a new run; the interrupted one waits
    fresh = run_dir(session, done)
    assert fresh != interrupted and status(interrupted) == "interrupted" and status(fresh) == "completed"

    done = session(*train)  # the same command again: resumes
    assert f"Resuming the interrupted run {interrupted.relative_to(here)}" in done.stdout
    assert run_dir(session, done) == interrupted and status(interrupted) == "completed"
    assert not (interrupted / "backup").exists()
    resumed, straight = history(interrupted), history(fresh)
    assert [row["epoch"] for row in resumed] == [row["epoch"] for row in straight] == [str(e) for e in range(10)]
    assert float(resumed[-1]["loss"]) == pytest.approx(float(straight[-1]["loss"]), rel=0.1)

    done = session("ensemble", interrupted.relative_to(here), fresh.relative_to(here), "--weights", "2,1",
                   "--split", "test", "--save", "--unsafe")
    ensemble = run_dir(session, done, prefix="Saved: ")
    assert ensemble.parent == here / "runs" / "ensemble" and "weight 0.667" in done.stdout
    assert json.loads((ensemble / "run.json").read_text())["kind"] == "ensemble"
    assert metrics(ensemble / "metrics.json")["images"] == 360

    done = session("evaluate", "--split", "val", "--json", "--tta")  # the ensemble is the latest run
    says_run(done.stderr, ensemble, session)
    assert 0 <= json.loads(done.stdout)["accuracy"] <= 1
    assert metrics(ensemble / "evaluations" / "val-tta" / "metrics.json").get("tta") is True

    # README: `export DIR` takes a saved ensemble like any run. tflite (float16) when the export extra is
    # installed, else savedmodel: the same options either way.
    fmt, quantize, out = ("tflite", "float16", "model.tflite") if HAS_EXPORT_EXTRA else ("savedmodel", "none", "sm")
    done = session("export", ensemble.relative_to(here), "--format", fmt, "--quantize", quantize, "-o", out,
                   "--data-dir", "digits_png", "--unsafe")
    check = json.loads((here / f"{out}.json").read_text())["check"]
    assert (here / out).exists() and check["passed"] and check["images"] == len(images)

    done = session("evaluate", fresh.relative_to(here), "--data-dir", "digits_png", "--unsafe", "--verbose")
    says_run(done.stdout, fresh, session, note="")
    folder, = (fresh / "evaluations").iterdir()
    assert "digits_png" in folder.name and metrics(folder / "metrics.json")["images"] == len(images)

    # `check --layers` to pick a layer for --freeze LAYER_NAME, then fine-tune the run up to it.
    done = session("check", REPO / "experiments" / "digits_mlp.yaml", "--layers")
    index, layer = re.search(r"^\s*(\d+)\s+(\S+)\s+Dense\s", done.stdout, re.M).groups()  # the first Dense layer
    done = session("finetune", fresh.relative_to(here), "--freeze", layer, "--head-epochs", "1", "--epochs", "1",
                   "--learning-rate", "1e-4", "--set", "data.batch_size=64", "--output-dir", "tuned", "--fresh",
                   "--unsafe")
    says_run(done.stdout, fresh, session, label="Base run", note="")
    assert f"Phase 2: layers {int(index) + 1}.. trainable" in done.stdout
    tuned = run_dir(session, done)
    assert tuned.parent == here / "tuned" / "digits-mlp-finetune" and status(tuned) == "completed"

    done = session("report", fresh.relative_to(here), tuned.relative_to(here), "-o", "compare.html", "--unsafe")
    page = (here / "compare.html").read_text()
    assert fresh.name in page and tuned.name in page

    done = session("runs")
    listed = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert sorted(listed) == sorted(str(r.relative_to(here)) for r in (interrupted, fresh, ensemble))
    session.assert_walked(WALKED["test_make_demo_experiment_interrupted_resumed_ensembled_finetuned_by_layer_name"])


@pytest.mark.slow
def test_seeds_runs_lr_find_augment_preview_dry_run_check_and_models(elsewhere):
    session, here = elsewhere, elsewhere.cwd
    for args in (["--help"], ["--version"]):  # README: they answer at once, without TensorFlow
        assert session(*args).seconds < 5
    done = session("check", REPO / "experiments" / "vgg.yaml", "--set", "training.epoch=3", expect=2)
    assert "Did you mean 'training.epochs'?" in error_line(done) and done.seconds < 5  # before TensorFlow

    done = session("train", REPO / "experiments" / "vgg.yaml", "--dry-run")  # as written: no download needed
    assert 'Model: "vgg16"' in done.stdout and "Data: images of (32, 32, 3), 10 classes" in done.stdout
    assert "Total params:" in done.stdout and not (here / "runs").exists()

    names = session("models").stdout
    assert {"mlp", "vgg16", "resnet20", "mobilenet_v2"} <= {line.split()[0] for line in names.splitlines()[1:]}
    resnets = session("models", "resnet*").stdout.splitlines()[1:]
    assert resnets and all(line.startswith("resnet") for line in resnets)
    header, *rows = session("models", "--family", "vgg").stdout.splitlines()
    assert header.split() == ["name", "family", "paper"]  # the columns apart, however short the family's name
    assert [row.split()[0] for row in rows] == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert "138,357,544" in session("models", "vgg16", "--params").stdout  # keras.applications' VGG16
    # Changed: resnet20 alone at CIFAR's shape, rather than every model built at 224,224,3 for 1000 classes.
    done = session("models", "resnet20", "--input-shape", "32,32,3", "--classes", "10")
    assert re.search(r"resnet20\s+resnet-cifar\s+27\d,\d{3}\s", done.stdout), done.stdout  # He et al.: 0.27M

    # The accuracy table's digits row; Changed: seeds 42,1 of 42,1,2 (two make a group), 1 epoch instead of 60,
    # into --output-dir.
    words, _ = readme_command("cnnlab train experiments/digits_cnn.yaml --seeds")
    words[words.index("--seeds") + 1] = "42,1"
    done = session(*as_user(words), "--epochs", "1", "--output-dir", "seeds")
    spread = re.search(r"test_accuracy ([\d.]+) ± ([\d.]+) \(([\d.]+)-([\d.]+)\).* over seeds ([\d,]+)", done.stdout)
    assert spread and all(0 <= float(x) <= 1 for x in spread.groups()[:4]), done.stdout
    assert spread[5] == "1,42" and len(list((here / "seeds" / "digits-cnn").iterdir())) == 2
    listed = json.loads(session("runs", "seeds", "--sort", "test_accuracy", "--reverse", "--json").stdout)
    runs = [r for r in listed if r["type"] == "run"]
    assert sorted(r["seed"] for r in runs) == [1, 42] and all(r["status"] == "completed" for r in runs)
    accuracies = [r["test_accuracy"] for r in runs]
    assert accuracies == sorted(accuracies, reverse=True) and all(0 <= a <= 1 for a in accuracies)
    group, = [r for r in listed if r["type"] == "seed_group"]
    assert group["seeds"] == [1, 42] and sorted(group["runs"]) == sorted(r["run"] for r in runs)

    # lr-find's line with its own offline comment: a small MNIST-shaped mnist.npz the test writes here.
    words, comment = readme_command("cnnlab lr-find experiments/mnist_fast.yaml")
    x, y = make_images(20, classes=10, size=28)
    np.savez(here / "mnist.npz", x_train=x[..., 0], y_train=y, x_test=x[:50, ..., 0], y_test=y[:50])
    offline = shlex.split(comment.removeprefix("offline:"))
    done = session(*as_user(words), *offline, "--start", "1e-7", "--end", "10", "--steps", "20", "-o", "lr_find.png",
                   "--json")  # Changed: 20 steps instead of 100
    sweep = json.loads(done.stdout)
    assert 1e-7 <= sweep["suggestion"] <= 10 and (here / "lr_find.png").stat().st_size > 0
    assert not (here / "runs").exists()  # README: nothing is written under runs/

    done = session("augment-preview", REPO / "experiments" / "digits_cnn.yaml", "--set",
                   "augmentation.zoom_range=0.1", "-n", "8", "-o", "preview.png")
    with Image.open(here / "preview.png") as preview:
        assert preview.format == "PNG" and min(preview.size) > 0
    session.assert_walked(WALKED["test_seeds_runs_lr_find_augment_preview_dry_run_check_and_models"])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason=f"needs MNIST at {SHARED_MNIST} (README's "
                    "../shared/datasets/mnist.npz beside the clone), which this machine does not have")
def test_accuracy_table_command_reads_mnist_from_the_readme_path(elsewhere, tmp_path):
    session = elsewhere
    (tmp_path / "shared").symlink_to(SHARED_MNIST.parents[1])  # so ../shared/datasets/mnist.npz resolves
    words, _ = readme_command("cnnlab train experiments/mnist_deep_cnn.yaml --seeds")
    assert "data.path=../shared/datasets/mnist.npz" in words, words
    words[words.index("--seeds") + 1] = "42"
    # Changed: one seed of 42,1,2, one epoch of two batches (the 10,000 test images are still scored).
    done = session(*as_user(words), "--epochs", "1", "--set", "training.steps_per_epoch=2")
    assert "Data: train 60000, test 10000 images of (28, 28, 1), 10 classes" in done.stdout
    run = run_dir(session, done)
    recorded = yaml.safe_load((run / "config.yaml").read_text())["data"]["path"]
    assert Path(recorded).is_absolute() and Path(recorded).samefile(SHARED_MNIST)  # recorded absolute
    assert metrics(run / "metrics.json")["images"] == 10000
    session.assert_walked(WALKED["test_accuracy_table_command_reads_mnist_from_the_readme_path"])


@pytest.mark.slow
def test_tune_track_and_doctor_as_the_readme_shows(elsewhere):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    pytest.importorskip("mlflow", reason="the track extra is not installed")
    pytest.importorskip("cleanlab", reason="the doctor extra is not installed")
    session, here = elsewhere, elsewhere.cwd
    words, _ = readme_command("cnnlab tune experiments/digits_tune.yaml")
    # Changed: 2 trials of 3 epochs instead of 20 of 40, a study file named here, tracked in MLflow's default store.
    done = session(*as_user(words), "--trials", "2", "--set", "training.epochs=3", "--storage",
                   f"sqlite:///{here / 'study.db'}", "--track", "mlflow")
    assert "Trials: 2 (2 complete)" in done.stdout and "MLflow: run" in done.stdout
    words, _ = readme_command("cnnlab train runs/digits-tune/tune/best.yaml")
    done = session(*as_user(words), "--set", "training.epochs=2", "--track", "mlflow")
    run = run_dir(session, done)
    assert json.loads((run / "run.json").read_text())["mlflow_run_id"]

    words, _ = readme_command("cnnlab doctor experiments/mnist_fast.yaml --folds 2")
    x, y = make_images(20, classes=10, size=28)
    np.savez(here / "mnist.npz", x_train=x[..., 0], y_train=y, x_test=x[:50, ..., 0], y_test=y[:50])
    # Changed: the small MNIST-shaped mnist.npz the test writes here, one epoch per fold, its own folder.
    done = session(*as_user(words), "--set", "training.epochs=1", "-o", "doctor")
    assert "Labels (train)" in done.stdout and (here / "doctor" / "exclude.txt").is_file()
    done = session("doctor", run, "--unsafe")  # a run: its model checks its validation and test labels
    assert "Labels (val)" in done.stdout and (run / "doctor" / "doctor.html").is_file()
    session.assert_walked(WALKED["test_tune_track_and_doctor_as_the_readme_shows"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gradio") is None,
                    reason="serve needs gradio: pip install 'cnnlab[serve]'")
def test_visualize_benchmark_and_serve_as_the_readme_shows(elsewhere):
    import socket
    import urllib.request

    session, here = elsewhere, elsewhere.cwd
    x, y = make_images(12, classes=10, size=28)
    np.savez(here / "mnist.npz", x_train=x[..., 0], y_train=y, x_test=x[:30, ..., 0], y_test=y[:30])
    words, _ = readme_command("cnnlab train experiments/mnist_simple_cnn.yaml")
    # Changed: the small MNIST-shaped mnist.npz the test writes here (no download), one epoch.
    done = session(*as_user(words), "--set", "data.dataset=npz", "--set", "data.path=mnist.npz", "--epochs", 1)
    run = run_dir(session, done)
    done = session("visualize")
    says_run(done.stdout, run, session)
    assert "receptive field" in done.stdout and (run / "initial_filters.npz").is_file()
    assert {"filters.png", "feature_maps_3.png", "patterns.png", "layers.csv"} <= {p.name for p in
                                                                                  (run / "visualize").iterdir()}
    Image.fromarray(x[3, ..., 0]).save(here / "digit.png")
    session("visualize", run, "digit.png", "-o", "inside", "--unsafe")
    assert (here / "inside" / "feature_maps_1.png").is_file() and not (here / "inside" / "feature_maps_2.png").exists()
    session("benchmark", "mlp", "simple_cnn", "--input-shape", "28,28,1", "--batch-size", 16, "--repeats", 1,
            "-o", "bench.csv")
    with open(here / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["architecture"] for r in rows] == ["mlp", "simple_cnn"] and all(float(r["flops"]) > 0 for r in rows)
    done = session("benchmark", run, "--repeats", 1, "--batch-size", 16, "--unsafe")
    assert all(name in done.stdout for name in ("keras", "savedmodel", "tflite", "onnx", "openvino")), shown(done)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = session.start("serve", run, "--host", "127.0.0.1", "--port", port, "--unsafe")
    try:
        deadline, page = time.monotonic() + 180, None
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert page is not None and "<html" in page.lower(), server.stderr.read() if server.poll() is not None else ""
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    session.assert_walked(WALKED["test_visualize_benchmark_and_serve_as_the_readme_shows"])


# --------------------------------------------------------------------------- the README against the walkthroughs


def test_the_walkthroughs_pass_every_command_and_option_the_readme_shows():
    from cnnlab.cli import main

    walked = {}
    for options in WALKED.values():
        for verb, passed in options.items():
            walked.setdefault(verb, set()).update(passed)
    missing = {(verb, option) for verb, options in commands_shown().items() for option in options
               if option not in walked.get(verb, set()) and (verb, option) not in NOT_WALKED}
    assert not missing, f"README shows these, no walkthrough passes them: {sorted(missing)}"
    verbs = {verb for code in code_blocks() + code_spans() for verb in re.findall(r"\bcnnlab ([a-z][a-z-]+)", code)}
    assert verbs <= set(main.commands), verbs - set(main.commands)
    assert verbs <= set(walked), f"README shows verbs no walkthrough runs: {sorted(verbs - set(walked))}"
    assert {"--quiet", "--verbose", "--help", "--version"} <= walked[GLOBAL]


def test_the_readme_shows_every_option_of_every_command():
    """The synopsis and the CLI agree: each option is in both (one of its spellings), and no verb is left out."""
    from cnnlab.cli import main

    shown = commands_shown()
    assert set(shown) == set(main.commands)
    for verb, command in main.commands.items():
        spellings = [set(p.opts + p.secondary_opts) for p in command.params if p.param_type_name == "option"]
        spellings = [s for s in spellings if not s & (GLOBAL_OPTIONS | {"--help"})]
        assert shown[verb] <= set().union(*spellings), (verb, shown[verb] - set().union(*spellings))
        assert all(s & shown[verb] for s in spellings), (verb, [s for s in spellings if not s & shown[verb]])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed: README's set-up uses it")
def test_make_demo_and_make_test_run_commands_that_exist():
    """README's set-up commands, dry-run (running them here would recurse or take the suite's time)."""
    from cnnlab.cli import main
    from cnnlab.config import load_config

    assert "make demo" in code_blocks()[1] and "make test" in code_blocks()[1]
    dry = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    commands = [shlex.split(line)[1:] for line in dry.stdout.splitlines() if re.match(r"\S*/cnnlab\s", line)]
    assert [words[0] for words in commands] == ["train", "evaluate"], dry.stdout
    for verb, *rest in commands:
        options = {o for p in main.commands[verb].params for o in p.opts}
        assert {word for word in rest if word.startswith("-")} <= options
        for experiment in [REPO / word for word in rest if word.endswith(".yaml")]:
            assert load_config(experiment).data.dataset == "digits"  # README: "(no download)"
    dry = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and re.search(r"python -m pytest -n 2$", dry.stdout, re.M), dry.stdout
    assert importlib.util.find_spec("xdist") is not None  # pytest -n needs pytest-xdist (the test extra)
