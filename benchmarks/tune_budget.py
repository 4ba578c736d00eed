"""What `cnnlab tune` buys on digits: the pruner's saving, and the best trial against the shipped recipe.

1. The same study (experiments/digits_tune.yaml: 20 trials, TPE seeded by the experiment's seed)
   twice, with ``pruner: median`` and ``pruner: none``: epochs trained, trials pruned, wall time,
   best validation accuracy.
2. The shipped recipe (experiments/digits_cnn.yaml: 60 epochs, every training image) trained with
   the best trial's values, over seeds 42,1,2, against the recipe as shipped (BENCHMARKS.md: 98.80 ±
   0.58 % on the same seeds): test accuracy, mean ± sample standard deviation.

Every command runs as a user runs it, in a fresh process. Not a timing benchmark: the epoch counts
are what it measures (wall times are printed for scale).

    python benchmarks/tune_budget.py [--trials 20] [--out /tmp/tune-budget]
"""

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CNNLAB = [sys.executable, "-m", "cnnlab"]
SEEDS = (42, 1, 2)


def run(*args, cwd):
    started = time.perf_counter()
    done = subprocess.run([*CNNLAB, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"cnnlab {' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - started


def study(pruner, trials, out):
    """Run the study with `pruner` into `out`/<pruner>; its trials.csv rows and wall seconds."""
    folder = out / pruner
    _, seconds = run("tune", ROOT / "experiments" / "digits_tune.yaml", "--trials", trials,
                     "--set", f"tune.pruner={pruner}", "--set", f"output_dir={folder}", cwd=ROOT)
    with open(folder / "digits-tune" / "tune" / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle)), seconds


def describe(rows, seconds):
    epochs = sum(int(r["epochs"] or 0) for r in rows)
    pruned = sum(r["state"] == "pruned" for r in rows)
    best = max(float(r["value"]) for r in rows if r["value"])
    return epochs, pruned, best, seconds


def recipe_accuracy(params, out, label):
    """Test accuracy of digits_cnn.yaml with `params` ({dotted key: value}) over SEEDS: (mean, std, values)."""
    folder = out / f"recipe-{label}"
    sets = [a for key, value in params.items() for a in ("--set", f"{key}={value}")]
    run("train", ROOT / "experiments" / "digits_cnn.yaml", "--seeds", ",".join(map(str, SEEDS)),
        "--set", f"output_dir={folder}", *sets, cwd=ROOT)
    values = [json.loads(p.read_text())["accuracy"] for p in sorted((folder / "digits-cnn").glob("*/metrics.json"))]
    return statistics.mean(values), statistics.stdev(values), values


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tune-budget"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    results = {}
    for pruner in ("median", "none"):
        rows, seconds = study(pruner, args.trials, args.out)
        results[pruner] = (rows, describe(rows, seconds))
        epochs, pruned, best, seconds = results[pruner][1]
        print(f"pruner {pruner:6}: {len(rows)} trials, {pruned} pruned, {epochs} epochs trained, "
              f"best val_accuracy {best:.4f}, {seconds:.0f} s")
    saved = 1 - results["median"][1][0] / results["none"][1][0]
    print(f"the median pruner trained {100 * saved:.0f} % fewer epochs than none "
          f"({results['median'][1][0]} vs {results['none'][1][0]}), in "
          f"{results['median'][1][3] / results['none'][1][3]:.2f}x the time")
    rows = results["median"][0]
    best = max((r for r in rows if r["value"]), key=lambda r: float(r["value"]))
    params = {k.removeprefix("params_"): v for k, v in best.items() if k.startswith("params_") and v != ""}
    print(f"best trial {best['number']}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for label, values in (("shipped", {}), ("tuned", params)):
        mean, std, each = recipe_accuracy(values, args.out, label)
        print(f"digits_cnn.yaml {label:7}: test accuracy {100 * mean:.2f} ± {100 * std:.2f} % over seeds "
              f"{','.join(map(str, SEEDS))} ({', '.join(f'{v:.4f}' for v in each)})")


if __name__ == "__main__":
    main()
