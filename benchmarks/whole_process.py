"""Whole processes, the way a user runs them: ``cnnlab`` against the hand-written script (issue 20).

Every run is a fresh process, started as a user starts it (the ``cnnlab`` console
script with the shipped ``experiments/mnist_deep_cnn.yaml``; ``python
benchmarks/handwritten.py`` for the script), under `phase_probe.py`, which logs
Keras's fit events; the parent stamps the launch and the exit. The contenders
alternate (reversed on odd repetitions). Per run the phases are:

- start-up: launch -> the first training batch (imports, data, model, compile);
- epochs: the first batch -> the last epoch's end (validation included);
- teardown: Keras's ``on_train_end`` -> ``fit`` returned (where TensorFlow stalled);
- after: the last epoch's end -> exit (saving, scoring the test set, plots, exit).

Training throughput is the issue's figure: training images x (E2 - E1) / (T(E2) - T(E1)),
from whole-process times T with E1 and E2 epochs (``--epochs 1 3``), so start-up
cancels out. ``finetune`` (1 head epoch, then 1 epoch with the first 4 layers frozen),
``evaluate`` (the test set) and ``predict`` (a folder of ``--images`` PNGs) are timed
whole, on the models the 3-epoch float32 training runs made.

    python benchmarks/whole_process.py [--reps 5] [--precisions float32 mixed_bfloat16] [--epochs 1 3]
        [--commands finetune evaluate predict] [--npz ../shared/datasets/mnist.npz] [--images 1000]
        [--train-images N]

Time only on a quiet machine; compare within one run.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_NPZ = ROOT.parent / "shared" / "datasets" / "mnist.npz"
CONTENDERS = ("cnnlab", "hand")
OTHERS = ("finetune", "evaluate", "predict")
STALL = 2.0  # seconds from the last epoch's end to exit above which a run "stalled"
FREEZE, HEAD_EPOCHS, TUNE_EPOCHS = 4, 1, 1


def cnnlab_argv(verb, ctx, precision=None, epochs=None):
    """``cnnlab VERB ...`` as a user types it, into this run's own folder."""
    cli = str(Path(sys.executable).parent / "cnnlab")
    if verb == "train":
        return [cli, "train", str(ROOT / "experiments" / "mnist_deep_cnn.yaml"), "--set", "data.dataset=npz",
                "--set", f"data.path={ctx['npz']}", "--set", "data.validation_split=0.1",
                "--set", f"training.precision={precision}", "--epochs", str(epochs), "--output-dir", ctx["out"]]
    if verb == "finetune":
        return [cli, "finetune", ctx["run"], "--freeze", str(FREEZE), "--head-epochs", str(HEAD_EPOCHS),
                "--epochs", str(TUNE_EPOCHS), "--output-dir", ctx["out"]]
    if verb == "evaluate":
        return [cli, "evaluate", ctx["run"]]
    return [cli, "predict", ctx["run"], ctx["images"], "-o", str(Path(ctx["out"]) / "predictions.csv")]


def hand_argv(verb, ctx, precision=None, epochs=None):
    """``python benchmarks/handwritten.py VERB ...``: the same work written by hand."""
    script = [str(HERE / "handwritten.py"), verb, "--out", ctx["out"]]  # run by the probe's Python
    if verb == "train":
        return [*script, "--npz", ctx["npz"], "--epochs", str(epochs), "--precision", precision]
    model = ["--model", str(Path(ctx["model"]) / "model.keras")]
    if verb == "finetune":
        return [*script, "--npz", ctx["npz"], *model, "--freeze", str(FREEZE), "--head-epochs", str(HEAD_EPOCHS),
                "--epochs", str(TUNE_EPOCHS)]
    if verb == "evaluate":
        return [*script, "--npz", ctx["npz"], *model]
    return [*script[:-1], str(Path(ctx["out"]) / "predictions.csv"), *model, "--images", ctx["images"]]


ARGV = {"cnnlab": cnnlab_argv, "hand": hand_argv}


def timed(argv, workdir):
    """Run `argv` under the probe in a fresh process; its phases in seconds, and its output."""
    events = Path(tempfile.mkstemp(suffix=".jsonl", dir=workdir)[1])
    launch = time.time()
    done = subprocess.run([sys.executable, str(HERE / "phase_probe.py"), str(events), *argv], cwd=workdir,
                          capture_output=True, text=True)
    end = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    log = [json.loads(line) for line in events.read_text().splitlines()]
    at = {}
    for event in log:
        at.setdefault(event["event"], []).append(event["t"])
    out = {"total": end - launch, "output": done.stdout}
    if "first_batch" in at:
        last = at["epoch_end"][-1]
        out.update(startup=at["first_batch"][0] - launch, epochs=last - at["first_batch"][0],
                   teardown=max(r - e for r, e in zip(at["fit_return"], at["train_end"])), after=end - last,
                   epoch_count=len(at["epoch_end"]))
    return out


def last_run(folder):
    """The run folder cnnlab made under `folder` (``<name>/<timestamp>``)."""
    runs = sorted(Path(folder).glob("*/*/config.yaml"))
    return str(runs[-1].parent)


def write_images(npz, folder, count):
    """`count` MNIST test images as PNG files in `folder` (predict's input)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(npz) as data:
        images = data["x_test"][:count]
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return str(folder)


def subset_npz(npz, folder, count):
    """The first `count` training images of `npz` (and all its test images), for quick runs."""
    with np.load(npz) as data:
        arrays = {k: data[k][:count] if k.endswith("_train") else data[k] for k in data.files}
    path = folder / f"mnist-{count}.npz"
    np.savez(path, **arrays)
    return str(path)


def order(rep):
    return CONTENDERS if rep % 2 == 0 else CONTENDERS[::-1]


def train_runs(args, workdir, results):
    """Every (repetition, precision, epochs, contender) training run, alternating; the last 3-epoch models."""
    models = {}
    for rep in range(args.reps):
        for precision in args.precisions:
            for epochs in args.epochs:
                for contender in order(rep):
                    out = Path(tempfile.mkdtemp(prefix=f"{contender}-", dir=workdir))
                    ctx = {"npz": args.npz, "out": str(out)}
                    result = timed(ARGV[contender]("train", ctx, precision, epochs), workdir)
                    results.setdefault(("train", precision, epochs, contender), []).append(result)
                    print(f"rep {rep + 1} train {precision} {epochs} epochs {contender}: {brief(result)}", flush=True)
                    if precision == args.precisions[0] and epochs == max(args.epochs):
                        models[contender] = last_run(out) if contender == "cnnlab" else str(out)
    return models


def other_runs(args, workdir, results, models):
    """``finetune``, ``evaluate`` and ``predict`` of the trained models, alternating."""
    if not args.commands:
        return
    images = write_images(args.npz, workdir / "images", args.images)
    for rep in range(args.reps):
        for verb in args.commands:
            for contender in order(rep):
                out = tempfile.mkdtemp(prefix=f"{verb}-{contender}-", dir=workdir)
                ctx = {"npz": args.npz, "out": out, "run": models["cnnlab"], "model": models["hand"],
                       "images": images}
                result = timed(ARGV[contender](verb, ctx), workdir)
                results.setdefault((verb, None, None, contender), []).append(result)
                print(f"rep {rep + 1} {verb} {contender}: {brief(result)}", flush=True)


def brief(result):
    keys = ("total", "startup", "epochs", "teardown", "after")
    return "  ".join(f"{k} {result[k]:.2f}s" for k in keys if k in result)


def spread(values):
    """``median [min-max]`` of `values`."""
    return f"{statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]"


def train_table(results, args, images):
    """Per precision: img/s by the issue's difference, phases, ratios, and the stall check."""
    low, high = min(args.epochs), max(args.epochs)
    for precision in args.precisions:
        print(f"\n## train, {precision}: {images} training images, {low} and {high} epochs, "
              f"{args.reps} repetitions (median [min-max], seconds)")
        rates = {}
        for contender in CONTENDERS:
            short, long = results[("train", precision, low, contender)], results[("train", precision, high, contender)]
            rates[contender] = [images * (high - low) / (b["total"] - a["total"]) for a, b in zip(short, long)]
            print(f"{contender:7s} img/s {spread(rates[contender])}  "
                  + "  ".join(f"{phase} {spread([r[phase] for r in long])}"
                              for phase in ("total", "startup", "epochs", "teardown", "after")))
        paired = [c / h for c, h in zip(rates["cnnlab"], rates["hand"])]
        print(f"cnnlab / hand img/s: {statistics.median(rates['cnnlab']) / statistics.median(rates['hand']):.2f} "
              f"by medians; per repetition {spread(paired)}")
        startup = [r["startup"] for r in results[("train", precision, high, "cnnlab")]]
        hand = [r["startup"] for r in results[("train", precision, high, "hand")]]
        print(f"start-up cnnlab - hand: {statistics.median(startup) - statistics.median(hand):+.2f} s by medians")
    after = [r["after"] for key, runs in results.items() if key[0] == "train" and key[2] == high and
             key[3] == "cnnlab" for r in runs]
    print(f"\ncnnlab: last epoch -> exit over {STALL:g} s in {sum(a > STALL for a in after)} of {len(after)} "
          f"{high}-epoch runs; each: {', '.join(f'{a:.2f}' for a in after)}")


def other_table(results, args):
    for verb in args.commands:
        times = {c: [r["total"] for r in results[(verb, None, None, c)]] for c in CONTENDERS}
        print(f"\n## {verb}: whole process, {args.reps} repetitions (median [min-max], seconds)")
        for contender in CONTENDERS:
            print(f"{contender:7s} {spread(times[contender])}")
        print(f"hand / cnnlab time: {statistics.median(times['hand']) / statistics.median(times['cnnlab']):.2f} "
              "(above 1: cnnlab faster)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--epochs", nargs=2, type=int, default=[1, 3])
    parser.add_argument("--commands", nargs="*", default=list(OTHERS), choices=OTHERS,
                        help="what else to time on the trained models (train always runs)")
    parser.add_argument("--npz", default=str(DEFAULT_NPZ), help="MNIST in keras.datasets.mnist's layout")
    parser.add_argument("--images", type=int, default=1000, help="how many PNGs predict reads")
    parser.add_argument("--train-images", type=int, default=None,
                        help="use only the first N training images (quick runs; the figures need all)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.npz).is_file():
        raise SystemExit(f"no MNIST at {args.npz}: pass --npz (keras.datasets.mnist's layout)")
    workdir = Path(tempfile.mkdtemp(prefix="whole-process-"))
    try:
        if args.train_images:
            args.npz = subset_npz(args.npz, workdir, args.train_images)
        with np.load(args.npz) as data:
            images = round(len(data["y_train"]) * 0.9)  # validation_split 0.1
        results = {}
        print(f"{time.strftime('%Y-%m-%d %H:%M')}  {sys.version.split()[0]}  npz {args.npz}", flush=True)
        models = train_runs(args, workdir, results)
        other_runs(args, workdir, results, models)
        train_table(results, args, images)
        other_table(results, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
