"""Kill `cnnlab train` (and `cnnlab finetune`) with SIGKILL at random moments; the same command must resume.

Each trial starts the command in a fresh process, kills it after a random share of
its uninterrupted duration (anywhere: start-up, mid-epoch, during a checkpoint or
state write), reruns the
same command until it completes, and checks the run: one run folder, exit 0,
history epochs 0..N-1 with no gap or repeat, a loadable model.keras, no
temporary files, no backup left. Prints one line per trial and the count that
survived.

    python benchmarks/kill_points.py --trials 10
"""

import argparse
import csv
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from cnnlab import rundir

EPOCHS = 6
EXPERIMENT = {
    "name": "kill", "seed": 3, "output_dir": "runs",
    "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 16},
    "model": {"architecture": "simple_cnn"},
    "training": {"epochs": EPOCHS, "learning_rate": 0.003},
    "callbacks": {"model_checkpoint": {"monitor": "val_loss"}, "reduce_lr_on_plateau": {"patience": 1},
                  "early_stopping": {"patience": 20}},
    "finetune": {"head_epochs": 2, "epochs": 3, "freeze": 1},
}


def run(args, cwd):
    return subprocess.run([sys.executable, "-m", "cnnlab", *args, "-q"], cwd=cwd, capture_output=True, text=True)


def killed(args, cwd, delay):
    """Run the command and SIGKILL it after `delay` seconds; whether it was still running then."""
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", *args, "-q"], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.kill()
    return process.wait() != 0


def verdict(folder, epochs, kind):
    """'' when the finished run is whole, else what is wrong."""
    runs = sorted(p.parent for p in (folder / "runs").glob(f"{kind}/*/config.yaml"))
    if len(runs) == 2 and rundir.run_info(runs[0]).get("status") == "completed":
        return "finished before the kill (not counted)"  # killed while exiting: the rerun is a new run
    if len(runs) != 1:
        return f"{len(runs)} run folders ({', '.join(rundir.status(r) for r in runs)})"
    run = runs[0]
    with open(run / "history.csv", newline="") as f:
        seen = [int(row["epoch"]) for row in csv.DictReader(f)]
    if seen != list(range(epochs)):
        return f"history epochs {seen}"
    if list(run.rglob(".partial-*")) or (run / "backup").exists():
        return "leftover files"
    load = f"import keras; keras.saving.load_model({str(run / 'model.keras')!r})"
    check = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    return "" if check.returncode == 0 else "model.keras does not load"


def trial(rng, finetune, durations):
    """One kill at a random moment of the command's own duration; returns (problem or '', delay)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "kill.yaml").write_text(yaml.safe_dump(EXPERIMENT))
        train = ["train", "kill.yaml"]
        if finetune:
            if run(train, folder).returncode != 0:
                return "base training failed", 0
            command, kind, epochs = ["finetune", "runs/kill"], "kill-finetune", 5
        else:
            command, kind, epochs = train, "kill", EPOCHS
        delay = rng.uniform(0.1, 0.95) * durations[finetune]
        if not killed(command, folder, delay):
            return "finished before the kill (not counted)", delay
        for _ in range(3):
            done = run(command, folder)
            if done.returncode == 0:
                return verdict(folder, epochs, kind), delay
        return f"rerun failed: {done.stderr.strip()[-200:]}", delay


def durations():
    """Seconds an uninterrupted train and finetune take here (fresh processes, start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "kill.yaml").write_text(yaml.safe_dump(EXPERIMENT))
        out = {}
        for finetune, command in ((False, ["train", "kill.yaml"]), (True, ["finetune", "runs/kill"])):
            start = time.monotonic()
            run(command, folder)
            out[finetune] = time.monotonic() - start
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    took = durations()
    print(f"uninterrupted: train {took[False]:.1f} s, finetune {took[True]:.1f} s", flush=True)
    survived = counted = 0
    for index in range(args.trials):
        finetune = index % 2 == 1
        problem, delay = trial(rng, finetune, took)
        counted += "not counted" not in problem
        survived += not problem
        print(f"trial {index + 1}: {'finetune' if finetune else 'train'} killed after {delay:.1f} s: "
              f"{problem or 'resumed, whole'}", flush=True)
    print(f"{survived} of {counted} kill points survived")


if __name__ == "__main__":
    main()
