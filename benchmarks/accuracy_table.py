"""The accuracy table (issue 11): experiment files trained with ``--seeds`` as a user runs them, one row each.

For each experiment, in a fresh process, exactly the command the row shows:
``cnnlab train EXPERIMENT --seeds 42,1,2 --set data.dataset=npz --set data.path=MNIST [--set ...]``
into ``--output-dir`` (kept, so a killed benchmark goes on where it stopped and the
runs can be ensembled), then ``cnnlab runs --json`` for the seed group's test
accuracy (mean ± sample standard deviation, lowest, highest), epochs and training
wall time per seed. With ``--ensemble 3,5`` the first experiment's runs are also
ensembled (``cnnlab ensemble``) with their first 3 and 5 seeds.

    python benchmarks/accuracy_table.py experiments/mnist_best.yaml [more.yaml ...]
        [--seeds 42,1,2] [--set KEY=VALUE ...] [--ensemble 3,5] [--output-dir runs-accuracy]

Prints one Markdown row per experiment (and ensemble), for README.md's results table.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = ROOT.parent / "shared" / "datasets" / "mnist.npz"
CNNLAB = [sys.executable, "-m", "cnnlab"]


def run(command):
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{out.stdout[-1000:]}{out.stderr[-2000:]}")
    return out.stdout


def train_command(experiment, seeds, sets, npz, output_dir):
    """The command a user types (relative paths), as the table shows it."""
    mnist = yaml.safe_load(experiment.read_text()).get("data", {}).get("dataset") == "mnist"
    data = ["data.dataset=npz", f"data.path={npz}"] if mnist else []  # MNIST from the file: no download
    overrides = [a for s in [*data, *sets] for a in ("--set", s)]
    return ["cnnlab", "train", str(experiment), "--seeds", seeds, *overrides, "--output-dir", str(output_dir)]


def seed_group(output_dir, runs):
    """The seed group (`cnnlab runs --json`) whose runs are exactly `runs`."""
    records = json.loads(run([*CNNLAB, "runs", str(output_dir), "--json"]))
    wanted = sorted(map(str, runs))
    return next(r for r in records if r["type"] == "seed_group" and sorted(r["runs"]) == wanted)


def row(experiment, seeds, sets, npz, output_dir):
    """Train (or go on training) the experiment's seeds; its Markdown row and its runs."""
    command = train_command(experiment, seeds, sets, npz, output_dir)
    started = time.perf_counter()
    done = run([*CNNLAB, *command[1:], "--quiet"])
    wall = time.perf_counter() - started
    runs = done.strip().splitlines()[-1].removeprefix("Done: ").split()
    group = seed_group(output_dir, runs)
    seconds = [json.loads((ROOT / r / "run.json").read_text()).get("seconds", 0.0) for r in runs]
    accuracy = group["mean"]["test_accuracy"], group["std"]["test_accuracy"]
    cells = (experiment.name, f"{100 * accuracy[0]:.2f} ± {100 * accuracy[1]:.2f}",
             f"{100 * group['min']['test_accuracy']:.2f}–{100 * group['max']['test_accuracy']:.2f}",
             f"{group['mean']['epochs']:.0f}", f"{statistics.mean(seconds) / 60:.1f} min", f"`{' '.join(command)}`")
    print(f"  ({experiment.name}: this invocation took {wall / 60:.1f} min)", file=sys.stderr)
    return "| " + " | ".join(cells) + " |", runs


def ensemble_row(runs, members):
    command = ["cnnlab", "ensemble", *runs[:members], "--quiet"]
    line = run([*CNNLAB, *command[1:]]).strip().splitlines()[-1]
    accuracy = float(line.split("ensemble accuracy ")[1].split()[0])
    return f"| ensemble of {members} | {100 * accuracy:.2f} | | | | `{' '.join(command[:-1])}` |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", type=Path)
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    parser.add_argument("--ensemble", default="", metavar="N,N", help="Ensemble the first experiment's runs.")
    parser.add_argument("--output-dir", type=Path, default=Path("runs-accuracy"))
    args = parser.parse_args()
    if not args.npz.is_file():
        parser.error(f"MNIST as an .npz is needed: {args.npz} not found (pass --npz)")
    npz = Path("..") / args.npz.resolve().relative_to(ROOT.parent) if args.npz.resolve().is_relative_to(
        ROOT.parent) else args.npz.resolve()
    print(f"{time.strftime('%Y-%m-%d')}, seeds {args.seeds}, "
          f"{' '.join(f'--set {s}' for s in args.sets)}".rstrip(", "))
    print("| experiment | test accuracy, % (mean ± sd) | lowest–highest | epochs | training per seed | command |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    first = None
    for experiment in args.experiments:
        line, runs = row(experiment, args.seeds, args.sets, npz, args.output_dir)
        first = first or runs
        print(line, flush=True)
    for members in (int(n) for n in args.ensemble.split(",") if n):
        print(ensemble_row(first, members), flush=True)


if __name__ == "__main__":
    main()
