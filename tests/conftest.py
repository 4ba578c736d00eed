"""Shared fixtures: tiny data the tests make themselves, experiment files, the CLI runner."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"


# A one-epoch MLP on scikit-learn's digits: the experiment the bad-input and permission cases vary.
TINY_EXPERIMENT = {
    "name": "tiny",
    "seed": 1,
    "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
    "model": {"architecture": "mlp", "dropout": 0.1},
    "training": {"epochs": 1, "learning_rate": 0.003},
    "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                  "reduce_lr_on_plateau": False, "early_stopping": False},
}


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
    """A run sets Keras's global dtype policy to its precision; no test inherits another's."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].config.set_dtype_policy("float32")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke cnnlab in-process; returns the click Result."""
    from cnnlab.cli import main

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def make_images(n_per_class, classes=3, size=12, channels=1, seed=0):
    """Images whose class is a bright square in a class-specific corner, plus noise."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label in range(classes):
        for _ in range(n_per_class):
            image = rng.integers(0, 60, size=(size, size, channels))
            r, c = divmod(label % 4, 2)
            half = size // 2
            image[r * half:(r + 1) * half, c * half:(c + 1) * half] += 180
            x.append(image)
            y.append(label)
    return np.clip(np.array(x), 0, 255).astype(np.uint8), np.array(y)


@pytest.fixture
def npz_path(tmp_path):
    """A small .npz in keras.datasets layout: 3 classes of 12x12 grayscale images."""
    x, y = make_images(40)
    xt, yt = make_images(10, seed=1)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x[..., 0], y_train=y, x_test=xt[..., 0], y_test=yt)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """A folder of class sub-folders holding PNGs (RGB and grayscale mixed) and a hidden folder."""
    from PIL import Image

    root = tmp_path / "images"
    x, y = make_images(12, channels=3)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if i % 3 == 0:
            picture = picture.convert("L")
        picture.save(folder / f"img_{i}.{'png' if i % 2 else 'bmp'}")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "junk.txt").write_text("not a class")
    return root


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment file from a dict (merged over a tiny, fast default)."""

    def write(overrides=None, name="tiny"):
        base = {
            "name": name,
            "seed": 1,
            "output_dir": str(tmp_path / "runs"),
            "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
            "model": {"architecture": "mlp", "dropout": 0.1},
            "training": {"epochs": 2, "learning_rate": 0.003},
            "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                          "reduce_lr_on_plateau": False, "early_stopping": False},
        }
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(base))
        return path

    return write


def dotted_experiment(folder, cfg, changes):
    """Write `cfg` with `changes` (``{"section.key": value}``; None as a value keeps null) to
    ``folder/<name>.yaml``; its runs go to ``folder/runs``."""
    cfg = {**cfg, "output_dir": str(folder / "runs")}
    for key, value in changes.items():
        section, _, name = key.partition(".")
        cfg[section] = {**cfg.get(section, {}), name: value}
    path = folder / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def trained_run(folder, path):
    """Train the experiment `path` through the CLI in-process, as a user runs it: ``(run folder, output)``."""
    from click.testing import CliRunner

    from cnnlab.cli import main

    result = CliRunner().invoke(main, ["train", str(path)])
    assert result.exit_code == 0, result.output
    name = yaml.safe_load(path.read_text())["name"]
    return next((folder / "runs" / name).iterdir()), result.output


def error_line(result):
    """The single ``Error:`` line of a failed command (asserts there is exactly one and no traceback)."""
    output = result.output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    return lines[0]


def sigkill_after_epoch(command, cwd, epoch=2, timeout=180):
    """Start `command` (a training) in `cwd`, SIGKILL it once its resume state has `epoch` epochs; its run."""
    import signal
    import subprocess

    from cnnlab import rundir

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    wait_for_epoch(cwd, epoch, timeout, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return rundir.latest_run(Path(cwd) / "runs")


def wait_for_epoch(cwd, epoch, timeout=180, process=None):
    """Wait until a run under `cwd`/runs made after this call began has saved the resume state of `epoch`
    epochs; fail saying why after `timeout` s, or as soon as `process` (the training) has ended."""
    import json
    import time

    from cnnlab import rundir  # imports no Keras: the process being watched may train in a fraction of a second

    began, deadline = time.time() - 1, time.time() + timeout
    while time.time() < deadline:
        for run in rundir.list_runs(Path(cwd) / "runs"):  # a completed run has no resume state left
            try:
                fresh = run.stat().st_mtime >= began or (run / rundir.BACKUP_DIR).stat().st_mtime >= began
                state = json.loads((run / rundir.BACKUP_DIR / "state.json").read_text()) if fresh else {}
            except (OSError, ValueError):
                continue
            if state.get("epoch", 0) >= epoch:
                return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the training ended (exit {process.returncode}) before a run under {cwd}/runs "
                                 f"saved the state of epoch {epoch}")
        time.sleep(0.02)
    raise AssertionError(f"no run under {cwd}/runs saved the state of epoch {epoch} within {timeout} s")


# --------------------------------------------------------------------------- as an ordinary user

ORDINARY = 65534  # nobody: root passes every permission check, so root's tests drop to this uid and gid
READ_ANYWHERE = ("--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")


@functools.lru_cache(maxsize=None)
def ordinary_user_prefix():
    """How to run a program as an ordinary user: ``(command prefix, None)``, or ``(None, why not)``.

    Not root: nothing to add, permissions already apply to us. Root: ``setpriv`` to uid and
    gid 65534 (nobody), no groups. Where nobody cannot run this very Python (a pyenv Python
    under /root, which only root may enter; a project folder it may not read) it keeps one
    capability, CAP_DAC_READ_SEARCH: it may read any file, yet writes only where permissions
    allow, which is what these tests are about.
    """
    if os.geteuid() != 0:
        return (), None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None, "root passes every permission check, and setpriv (util-linux) is missing to drop to uid 65534"
    base = (setpriv, f"--reuid={ORDINARY}", f"--regid={ORDINARY}", "--clear-groups")
    probe = [sys.executable, "-c", "import sys, cnnlab.cli; print(repr(sys.version))"]
    for prefix in (base, base + READ_ANYWHERE):
        try:
            done = subprocess.run([*prefix, *probe], capture_output=True, text=True, cwd="/", timeout=60,
                                  env={**os.environ, "HOME": "/"})
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == repr(sys.version):  # this Python, not a stray libpython
            return prefix, None
    return None, f"uid {ORDINARY} cannot run {sys.executable} with cnnlab importable, even allowed to read every file"


class OrdinaryUser:
    """Runs ``cnnlab`` in a subprocess as an ordinary user (`ordinary_user_prefix`) inside `root`, a
    scratch folder that user can read; its home is a folder of its own there."""

    def __init__(self, prefix, root):
        self.prefix, self.root = prefix, Path(root)
        self.home = self.owned("home")

    def owned(self, name):
        """A folder under `root` the user can write."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(folder, ORDINARY, ORDINARY)
        return folder

    def read_only(self, name):
        """A folder under `root` the user can read but not write."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        return folder

    def run(self, *args, home=None, timeout=180):
        """``cnnlab ARGS`` as the user, in `root`; the finished process (text ``stdout`` and ``stderr``)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "KERAS_HOME")}
        env.update(HOME=str(home or self.home), TF_CPP_MIN_LOG_LEVEL="3")
        return subprocess.run([*self.prefix, sys.executable, "-m", "cnnlab", *map(str, args)], cwd=self.root,
                              env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ordinary_user():
    """An `OrdinaryUser` in a fresh scratch folder under the temporary directory (pytest's own is root's
    alone); skipped, saying why, where no ordinary user can run cnnlab."""
    prefix, why_not = ordinary_user_prefix()
    if prefix is None:
        pytest.skip(why_not)
    root = Path(tempfile.mkdtemp(prefix="cnnlab-user-"))
    root.chmod(0o755)
    try:
        yield OrdinaryUser(prefix, root)
    finally:
        for folder, _, _ in os.walk(root):  # read-only folders made by the test: writable again to remove them
            Path(folder).chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
