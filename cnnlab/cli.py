"""The command line: a thin click layer over one Python function per verb.

Nothing here imports TensorFlow at module level, so ``cnnlab --help`` and
``--version`` answer at once. A `CnnlabError` or a click usage error becomes one
``Error:`` line and exit code 2; an unexpected exception exits with 1
(``--verbose`` shows its traceback); Ctrl-C during training exits with 130 and
the run can be resumed. ``--verbose`` and ``--quiet`` are accepted anywhere on
the line (see `cnnlab.console`).
"""

import contextlib
import functools
import os
import signal
import sys
import traceback

import click

from cnnlab import __version__
from cnnlab.console import Console, session
from cnnlab.errors import CnnlabError


class BadInput(click.ClickException):
    """Bad usage or input: ``Error: ...`` and exit code 2."""

    exit_code = 2


# What a command may raise without being an unexpected failure (no replay of TensorFlow's logs).
EXPECTED = (CnnlabError, click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt,
            BrokenPipeError, SystemExit)


@contextlib.contextmanager
def one_line_usage_errors():
    """click's usage errors as one ``Error:`` line naming the option (no usage block, no hint), exit code 2."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:  # a bare `cnnlab`: the help, as click shows it
        raise
    except click.UsageError as exc:
        raise BadInput(exc.format_message()) from None


class Group(click.Group):
    """cnnlab's command group: the error boundary between the domain and the user."""

    def make_context(self, info_name, args, parent=None, **extra):
        """Parse the group's own options, usage errors in one line."""
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        """Run the sub-command; turn every failure into one ``Error:`` line and its exit code."""
        try:
            with one_line_usage_errors():
                return super().invoke(ctx)
        except CnnlabError as exc:
            if _verbose(ctx):
                traceback.print_exc()
            _leave_job(2, f"Error: {exc}")
            raise BadInput(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Run the same command again to resume from the last finished epoch.",
                       err=True)
            _leave_job(130)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:  # `cnnlab runs | head`: the reader left; nothing is wrong
            sys.stderr.close()
            sys.exit(0)
        except Exception as exc:  # an unexpected failure: not the user's input
            if _verbose(ctx):
                traceback.print_exc()
            click.echo(f"Error: unexpected failure: {type(exc).__name__}: {exc} "
                       "(run with --verbose for the traceback)", err=True)
            _leave_job(1)
            sys.exit(1)


def _leave_job(code, message=None):
    """A worker of several that fails exits at once: JAX's exit waits for workers that will never get there."""
    from cnnlab.distribution import current

    if current().workers > 1:
        if message:
            click.echo(message, err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _verbose(ctx):
    """Whether ``--verbose`` was given anywhere on the line (read when a failure is reported)."""
    return ctx.find_root().meta.get("cnnlab.verbose", False)


def _interrupt_on_sigterm():
    """`kill` stops training like Ctrl-C does, so the run is marked for resuming."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _remember(ctx, param, value):
    """Keep a ``--verbose`` or ``--quiet`` seen anywhere on the line on the root context."""
    if value:
        ctx.find_root().meta[f"cnnlab.{param.name}"] = True
    return value


def console_options(function):
    """Add ``--verbose`` and ``--quiet`` to a command (or the group); both land on the root context."""
    function = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_remember,
                            help="Print only errors and the final result: no progress, no notes.")(function)
    return click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_remember,
                        help="Show tracebacks, TensorFlow's logs and Keras's warnings.")(function)


def current_console():
    """The `Console` of the running command, from ``--verbose``/``--quiet`` anywhere on the line."""
    meta = click.get_current_context().find_root().meta
    verbose, quiet = meta.get("cnnlab.verbose", False), meta.get("cnnlab.quiet", False)
    if verbose and quiet:
        raise click.UsageError("--verbose and --quiet exclude each other: give one of them.")
    return Console(verbose=verbose, quiet=quiet)


def command(name):
    """``main.command(name)`` with ``--verbose``/``--quiet``, run inside the console's `session`."""

    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            from cnnlab.files import permission_errors, quiet_matplotlib_cache

            quiet_matplotlib_cache()  # before TensorFlow imports matplotlib
            with session(current_console(), expected=EXPECTED), permission_errors():
                return function(*args, **kwargs)

        return main.command(name)(console_options(run))

    return decorate


SET_HELP = "Override a config key: dotted KEY=VALUE, the value read as YAML (repeatable)."
TRACK_HELP = "Track the run in MLflow (tracking.mlflow: its defaults, unless the experiment names a uri)."
UNSAFE_HELP = "Allow loading models with Lambda layers (Keras safe_mode=False); only for models you trust."


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnlab")
@console_options
def main():
    """Train, fine-tune and evaluate classic CNNs with Keras 3 from YAML experiment files."""


def console_entry():
    """The ``cnnlab`` command (and ``python -m cnnlab``): `main`, then a quick exit after TensorFlow.

    Python's teardown of TensorFlow's and Keras's objects took 1-3 s after the work was
    done (issue 20). A command that succeeded after importing TensorFlow therefore waits
    for its own non-daemon threads, runs the exit handlers Python would run (logging's
    flush, temporary folders, ...), flushes the standard streams and leaves with `os._exit`.
    Failures, interruptions and a profiled or traced process (cProfile, coverage write
    their files at exit) exit the usual way.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if code not in (0, None) or "tensorflow" not in sys.modules or watched:
        sys.exit(code)
    _exit_now()


def _exit_now():
    import atexit
    import threading

    # CPython's own two steps before its teardown (private, stable since 3.9): the threading hooks
    # (which wake concurrent.futures' idle workers) and joining non-daemon threads; then the exit handlers
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to say
            pass
    os._exit(0)


def _seeds(ctx, param, text):
    """``--seeds``'s callback: ``"42,1,2"`` -> ``(42, 1, 2)``, distinct non-negative integers; not given: None."""
    if text is None:
        return None
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"give seeds as integers separated by commas, e.g. 42,1,2. "
                                 f"Received: {text!r}.") from None
    if len(set(seeds)) != len(seeds) or any(not 0 <= seed < 2**32 for seed in seeds):
        raise click.BadParameter(f"give distinct seeds from 0 to 2**32-1, e.g. 42,1,2. Received: {text!r}.")
    return seeds


@command("train")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--epochs", type=click.IntRange(min=1), help="Shorthand for --set training.epochs=N.")
@click.option("--seeds", metavar="S1,S2,...", callback=_seeds,
              help="Train once per seed into sibling runs and evaluate each; `cnnlab runs` and `report` show "
                   "their mean ± spread. Run again, it goes on from the first seed not completed.")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where runs go (default: output_dir).")
@click.option("--dry-run", is_flag=True, help="Validate, build the model and print its summary; no training.")
@click.option("--fresh", is_flag=True, help="Start a new run even if an interrupted one could be resumed.")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Train on N local worker processes (127.0.0.1), as on N machines; needs runtime.backend: jax.")
@click.option("--track", type=click.Choice(["mlflow"]), help=TRACK_HELP)
def train_command(experiment, overrides, epochs, seeds, output_dir, dry_run, fresh, workers, track):
    """Train EXPERIMENT.yaml into runs/<name>/<timestamp>/ (resumes an interrupted run)."""
    from cnnlab.config import load_config
    from cnnlab.distribution import plan

    console = current_console()
    overrides = (*overrides, *([f"distribution.workers={workers}"] if workers else []))
    cfgs = [tracked(load_config(experiment, overrides, check_paths=True, **{"training.epochs": epochs, "seed": seed}),
                    track) for seed in seeds or [None]]
    plan(cfgs[0], distributed=not seeds)  # a job that cannot run fails here, before TensorFlow starts
    if workers and workers > 1 and not dry_run:
        sys.exit(_launch(experiment, overrides, epochs, output_dir, fresh, workers, console))
    if dry_run:
        from cnnlab.commands.check import check

        check(cfgs[0], echo=console.info)
        click.echo(f"Valid: {experiment}")
        return
    from cnnlab.commands.train import train, train_seeds

    _interrupt_on_sigterm()
    options = dict(output_dir=output_dir, fresh=fresh, echo=console.info, verbose=console.fit_verbose)
    if seeds:
        runs = train_seeds(cfgs, **options)
        click.echo("Done: " + " ".join(map(str, runs)))
        return
    run = train(cfgs[0], test=True, **options)
    console.info(next_steps(run))
    click.echo(f"Done: {run}")


def tracked(cfg, track):
    """`cfg`, tracked by `track` (``--track mlflow``: MLflow's defaults unless the file says where); checks that
    the tracker is installed."""
    if track == "mlflow" and cfg.tracking.mlflow is None:
        from cnnlab.config import MlflowConfig, TrackingConfig

        cfg = cfg.model_copy(update={"tracking": TrackingConfig(mlflow=MlflowConfig())})
    if cfg.tracking.mlflow is not None:
        from cnnlab.extras import require

        require("track", "tracking.mlflow")
    return cfg


def next_steps(run):
    """The commands a user may want once `run` has trained (the run quoted for the shell)."""
    import shlex

    quoted = shlex.quote(str(run))
    return f"Next: cnnlab report {quoted}  |  cnnlab predict {quoted} IMAGE...  |  cnnlab finetune {quoted}"


def _launch(experiment, overrides, epochs, output_dir, fresh, workers, console):
    """`cnnlab train` on `workers` local processes (`cnnlab.distribution.launch`); the job's exit code."""
    from cnnlab import distribution

    arguments = ["train", experiment, *(a for o in overrides for a in ("--set", o))]
    arguments += [*(["--epochs", str(epochs)] if epochs else []), *(["--output-dir", output_dir] if output_dir else []),
                  *(["--fresh"] if fresh else []), *(["--quiet"] if console.quiet else []),
                  *(["--verbose"] if console.verbose else [])]
    _interrupt_on_sigterm()
    return distribution.launch(arguments, workers, echo=console.info)


def _freeze(value):
    return int(value) if value is not None and value.isdigit() else value


@command("finetune")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--freeze", metavar="N|LAYER_NAME", help="Phase 2 keeps the first N layers (or up to LAYER_NAME) frozen.")
@click.option("--epochs", type=click.IntRange(min=0), help="Phase 2's epochs (finetune.epochs).")
@click.option("--head-epochs", type=click.IntRange(min=0), help="Phase 1's epochs (finetune.head_epochs).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
              help="Phase 2's learning rate (finetune.learning_rate).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where the new run goes (default: output_dir).")
@click.option("--fresh", is_flag=True, help="Start a new run even if an interrupted one could be resumed.")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def finetune_command(target, freeze, epochs, head_epochs, learning_rate, overrides, output_dir, fresh, unsafe):
    """Fine-tune EXPERIMENT.yaml or RUN_DIR (default: the latest run) in two phases."""
    from cnnlab.commands.finetune import finetune

    console = current_console()
    _interrupt_on_sigterm()
    run = finetune(target, overrides=overrides, freeze=_freeze(freeze), epochs=epochs, head_epochs=head_epochs,
                   learning_rate=learning_rate, output_dir=output_dir, fresh=fresh, unsafe=unsafe,
                   echo=console.info, verbose=console.fit_verbose)
    click.echo(f"Done: {run}")


@command("evaluate")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["test", "val", "train"]), help="Which split (default: evaluate.split).")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False),
              help="Evaluate on this folder of class sub-folders instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--tta", is_flag=True, help="Test-time augmentation: average each image's flips (if the run trained "
              "with flips) or small shifts; written to evaluations/<split>-tta/.")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def evaluate_command(target, split, data_dir, as_json, tta, unsafe):
    """Evaluate RUN_DIR or MODEL.keras (default: the latest run) and write metrics.json."""
    import json

    from cnnlab.commands.evaluate import evaluate

    console = current_console()
    note = (lambda _: None) if console.quiet else functools.partial(click.echo, err=as_json)  # JSON alone on stdout
    echo = click.echo
    if as_json:
        echo = lambda _: None  # noqa: E731
    elif console.quiet:
        echo = lambda summary: click.echo(summary.splitlines()[0])  # noqa: E731  (the summary line)
    result = evaluate(target, split=split, data_dir=data_dir, unsafe=unsafe, tta=tta, echo=echo, note=note)
    if as_json:
        click.echo(json.dumps(result, indent=2))


@command("predict")
@click.argument("arguments", nargs=-1, required=True, metavar="[TARGET] PATH...")
@click.option("-k", "--top-k", type=click.IntRange(min=1), help="Classes per image, most probable first "
              "(default 3; more than the model has: all of them).")
@click.option("-o", "--output", type=click.Path(), help="Write the rows to this .csv or .json file (segmentation: "
              "a folder, of each image's mask and overlay PNGs and predictions.csv).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
@click.option("--all-probs", is_flag=True, help="Add every class's probability.")
@click.option("--tta", is_flag=True, help="Test-time augmentation: average each image's flips (if the run trained "
              "with flips) or small shifts.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per batch (default: the run's data.batch_size).")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def predict_command(arguments, top_k, output, as_json, all_probs, tta, batch_size, unsafe):
    """Predict the classes of image files and folders (searched recursively; hidden files skipped).

    TARGET is the first argument if it is a .keras file, a run folder or a folder of runs;
    otherwise the latest run under ./runs predicts, and every argument is a PATH. Bad files
    are named on stderr and get an error column; exit 2 only if no image could be predicted.
    """
    from cnnlab.commands.predict import predict, split_arguments

    console = current_console()
    target, paths = split_arguments(arguments)
    result = predict(target, paths, top_k=top_k, all_probs=all_probs, tta=tta, batch_size=batch_size,
                     output=output, unsafe=unsafe, progress=console.fit_verbose == 1,
                     note=(lambda _: None) if console.quiet else (lambda m: click.echo(m, err=True)),
                     warn=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(result.json_text(), nl=False)
    elif output is None:
        for line in result.table_lines():
            click.echo(line)
    else:
        console.info(f"Wrote {len(result.rows)} row(s) ({result.predicted} predicted) to {output}")


@command("report")
@click.argument("targets", nargs=-1, type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: <run>/report.html; several runs: ./report.html).")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def report_command(targets, output, unsafe):
    """Write one self-contained HTML page about RUN_DIR (default: the latest run); several runs: a comparison."""
    from cnnlab.commands.report import report

    path = report(targets, output=output, unsafe=unsafe, echo=current_console().info)
    click.echo(f"Wrote {path}")


@command("export")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--format", "fmt", required=True, metavar="FORMAT",
              help="savedmodel (a TensorFlow SavedModel folder), tflite (LiteRT), onnx, or openvino (IR .xml + .bin).")
@click.option("--quantize", default="none", show_default=True, metavar="none|float16|int8",
              help="tflite only: float16 weights, or full-integer int8 calibrated on training images.")
@click.option("-o", "--output", type=click.Path(), help="Where to write (default: <run>/export/model[-QUANTIZE].EXT).")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False),
              help="Check the export on this folder of class sub-folders instead of the run's test split.")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def export_command(target, fmt, quantize, output, data_dir, unsafe):
    """Export RUN_DIR or MODEL.keras (default: the latest run), checked in its own runtime against Keras."""
    from cnnlab.commands.export import export

    result = export(target, fmt=fmt, quantize=quantize, output=output, data_dir=data_dir, unsafe=unsafe,
                    echo=current_console().info)
    click.echo(f"Exported: {result['path']}")


@command("check")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--layers", is_flag=True,
              help="List every layer: index, name, type, parameters, so you can pick --freeze N or a LAYER_NAME.")
def check_command(experiment, overrides, layers):
    """Validate EXPERIMENT.yaml, then print the resolved config and the model summary; no training."""
    import yaml

    from cnnlab.config import load_config

    console = current_console()
    cfg = load_config(experiment, overrides, check_paths=True)  # before TensorFlow: a typo answers at once
    from cnnlab.commands.check import check

    summary = []  # held back until the model is built: nothing is printed for an invalid file
    check(cfg, echo=summary.append, layers=layers)
    console.info(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    for line in summary:
        console.info(line)
    click.echo(f"Valid: {experiment}")


@command("augment-preview")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 256), help="How many images.")
@click.option("-o", "--output", default="preview.png", show_default=True, type=click.Path(dir_okay=False),
              help="The PNG to write.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def augment_preview_command(experiment, count, output, overrides):
    """Write a PNG grid of training images next to their augmented versions."""
    from cnnlab.config import load_config

    console = current_console()
    cfg = load_config(experiment, overrides, check_paths=True)  # before TensorFlow: a typo answers at once
    from cnnlab.commands.augment_preview import augment_preview

    path = augment_preview(cfg, count, output, echo=console.info)
    if console.quiet:
        click.echo(f"Wrote {path}")


@command("tune")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--trials", type=click.IntRange(min=1), metavar="N",
              help="Shorthand for --set tune.trials=N: the study's whole budget, trials already run included.")
@click.option("--storage", metavar="URL",
              help="Shorthand for --set tune.storage=URL: where the study lives (default: an SQLite file beside "
                   "the runs); postgresql://... shares one study between processes and machines.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--track", type=click.Choice(["mlflow"]), help=TRACK_HELP + " Trials are child runs of the study's.")
def tune_command(experiment, trials, storage, overrides, track):
    """Search the settings of EXPERIMENT.yaml's tune: section with Optuna; each trial is a run (resumes)."""
    from cnnlab.config import load_config

    console = current_console()
    cfg = tracked(load_config(experiment, overrides, check_paths=True,
                              **{"tune.trials": trials, "tune.storage": storage}), track)
    from cnnlab.extras import require

    require("tune", "cnnlab tune")
    from cnnlab.commands.tune import tune

    _interrupt_on_sigterm()
    best = tune(cfg, echo=console.info)
    click.echo(f"Done: {best}" if best else "Done: no trial finished (trials.csv says why)")


@command("doctor")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--folds", type=click.IntRange(min=2), metavar="K",
              help="Check the training split's labels too: K copies of the experiment's model, each trained on "
                   "the other folds, predict their own (tip: --set training.epochs=N for a quick model).")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="The folder for doctor.csv, doctor.html and exclude.txt (default: the run's doctor/, or "
                   "<output_dir>/<name>/doctor/).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def doctor_command(target, folds, output, overrides, unsafe):
    """Check the data of EXPERIMENT.yaml or RUN (default: the latest run): duplicates and leakage across
    splits, unreadable and odd images, class balance, and likely label errors (cleanlab)."""
    console = current_console()
    from cnnlab.commands.doctor import doctor

    report = doctor(target, overrides=overrides, folds=folds, output=output, unsafe=unsafe, echo=console.info)
    click.echo(f"Done: {report.folder}")


@command("lr-find")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--start", default=1e-7, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="The first learning rate.")
@click.option("--end", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="The last learning rate (the sweep stops earlier if the loss diverges).")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=5),
              help="Batches in the sweep, one rate each.")
@click.option("-o", "--output", default="lr_find.png", show_default=True, type=click.Path(dir_okay=False),
              help="The PNG of loss against learning rate.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep and its suggestions as JSON.")
def lr_find_command(experiment, overrides, start, end, steps, output, as_json):
    """Learning-rate range test: train a few batches at rising rates; plot the loss and suggest a rate."""
    from cnnlab.config import load_config

    if start >= end:
        raise click.BadParameter(f"--start must be below --end. Received: {start:g} and {end:g}.")
    console = current_console()
    cfg = load_config(experiment, overrides, check_paths=True)
    from cnnlab.commands.lr_find import lr_find

    result = lr_find(cfg, start=start, end=end, steps=steps, output=output,
                     echo=(lambda _: None) if as_json else console.info)
    if as_json:
        import json

        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if result.suggestion is None:
        click.echo(f"Wrote {output}. No rate to suggest: the loss did not fall over the sweep; "
                   "try a lower --start or more --steps.")
        return
    others = ", ".join(f"{name} {rate:.2g}" for name, rate in (("steepest descent", result.steepest),
                                                               ("minimum / 10", result.minimum_tenth)) if rate)
    click.echo(f"Wrote {output}. Suggested learning rate: {result.suggestion:.2g} (the valley; {others}). "
               f"Use it with --set training.learning_rate={result.suggestion:.2g}")


@command("ensemble")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--weights", metavar="W1,W2,...", help="One weight per run, in their order (default: equal).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val", "train"]),
              help="The split every member is scored on.")
@click.option("--save", "save_dir", is_flag=False, flag_value="", metavar="[DIR]",
              help="Save the ensemble as a run that evaluate, predict and export accept: into DIR (a new folder), "
                   "or with no DIR into runs/ensemble/<timestamp>/.")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def ensemble_command(runs, weights, split, save_dir, unsafe):
    """Average the class probabilities of two or more RUNS on one split; print each member's and the ensemble's."""
    from cnnlab.commands.ensemble import ensemble, summary_line
    from cnnlab.rundir import is_run

    console = current_console()
    save = True if save_dir == "" else save_dir  # --save alone: a new run in the runs layout
    if save_dir and is_run(save_dir):  # `--save RUN_A RUN_B`: click took RUN_A for --save's DIR
        raise CnnlabError(f"--save took the run {save_dir!r} as the folder to save into: put --save after the "
                          "runs, or give its folder as --save=DIR.")
    result = ensemble(runs, weights=weights, split=split, save=save, unsafe=unsafe, echo=console.info)
    if console.quiet:
        click.echo(summary_line(result))


@command("runs")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--sort", metavar="COLUMN", help="Order by this column (numbers numerically; missing values last).")
@click.option("-r", "--reverse", is_flag=True, help="With --sort: descending.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list: one object per run, then per seed group.")
def runs_command(root, sort, reverse, as_json):
    """List the runs under ROOT (default: ./runs, or the run or experiment's folder you are in) with their best
    metrics; runs that differ only in seed are also summarised as a group (mean ± sample standard deviation)."""
    from cnnlab.rundir import runs_here

    root = root or runs_here()
    if as_json:
        import json

        from cnnlab.rundir import run_records

        click.echo(json.dumps(run_records(root, sort, reverse), indent=2))
        return
    from cnnlab.rundir import runs_table

    for line in runs_table(root, sort, reverse):
        click.echo(line)


def _shape(ctx, param, text):
    """``--input-shape``'s callback: ``"32,32,3"`` -> ``(32, 32, 3)``; not given: None."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"must be H,W,C such as 32,32,3. Received: {text!r}.")
    return shape


@command("models")
@click.argument("pattern", required=False)
@click.option("--family", help="Only this family (e.g. resnet, vgg, keras.applications).")
@click.option("--params", is_flag=True, help="Add parameters and multiply-adds per image (stored for 224,224,3 "
              "and 1000 classes; another shape builds every model listed, seconds each).")
@click.option("--input-shape", callback=_shape,
              help="H,W,C of the images for --params (implies it)  [default: 224,224,3]")
@click.option("--classes", type=click.IntRange(min=2),
              help="Output classes for --params (implies it)  [default: 1000]")
def models_command(pattern, family, params, input_shape, classes):
    """List the architectures whose name matches PATTERN (a glob such as 'resnet*'), with family and paper."""
    from cnnlab import catalog

    architectures = catalog.select_architectures(pattern, family)
    counts = None
    if params or input_shape or classes:
        shape, classes = input_shape or catalog.COUNTS_SHAPE, classes or catalog.COUNTS_CLASSES
        counts = catalog.PARAMETER_COUNTS
        if (shape, classes) != (catalog.COUNTS_SHAPE, catalog.COUNTS_CLASSES):
            current_console().info(f"Building {len(architectures)} model(s) for {shape} images and {classes} "
                                   "classes (seconds each) ...")
            from cnnlab.models.summary import counts as build_counts

            counts = build_counts([a.name for a in architectures], shape, classes)
    for line in catalog.architecture_table(architectures, counts):
        click.echo(line)


@command("visualize")
@click.argument("arguments", nargs=-1, metavar="[RUN] [IMAGE...]")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="The folder for the pictures and layers.csv (default: <run>/visualize/).")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def visualize_command(arguments, output, unsafe):
    """Draw what RUN (default: the latest run) learned: first-layer filters before and after training, feature
    maps of IMAGEs (default: a few test images), filter patterns by gradient ascent, and the layer table with
    receptive fields."""
    from cnnlab.commands.predict import split_arguments
    from cnnlab.commands.visualize import visualize

    target, images = split_arguments(arguments, paths_required=False, verb="visualize")
    folder = visualize(target, images, output=output, unsafe=unsafe, echo=current_console().info)
    click.echo(f"Wrote {folder}")


@command("benchmark")
@click.argument("arguments", nargs=-1, metavar="[PATTERN... | RUN]")
@click.option("--input-shape", callback=_shape, help="H,W,C of the images for architectures  [default: 224,224,3]")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N",
              help="Images per batch for training and batched inference  [default: 32; a RUN: its data.batch_size]")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="Timed repetitions of each measurement, alternating between the contenders.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the table to this CSV file.")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def benchmark_command(arguments, input_shape, batch_size, repeats, output, unsafe):
    """Compare architectures matching PATTERNs (globs such as 'resnet*'; default: the seed networks) by
    parameters, FLOPs, training and inference images/s and peak memory; or every export format of RUN by size,
    accuracy, agreement with Keras and latency."""
    from cnnlab.commands import benchmark

    console = current_console()
    run = benchmark.run_argument(arguments)
    if run is not None:
        if input_shape:
            raise click.BadParameter("a RUN is benchmarked at its own image size: leave out --input-shape.",
                                     param_hint="'--input-shape'")
        table = benchmark.benchmark_run(run, batch_size=batch_size, repeats=repeats, output=output, unsafe=unsafe,
                                        progress=console.fit_verbose == 1, echo=console.info)
    else:
        table = benchmark.benchmark_architectures(arguments, input_shape=input_shape, batch_size=batch_size,
                                                  repeats=repeats, output=output,
                                                  progress=console.fit_verbose == 1, echo=console.info)
    for line in table.lines():
        click.echo(line)


@command("serve")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0: every network interface; only on a network you trust).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="The port.")
@click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)
def serve_command(target, host, port, unsafe):
    """A local web page for RUN_DIR or MODEL.keras (default: the latest run): drop, upload or draw images and
    see the model's answer (top classes and Grad-CAM, masks, or labels). Ctrl-C stops it."""
    from cnnlab.extras import require

    require("serve", "cnnlab serve")
    from cnnlab.commands.serve import serve

    serve(target, host=host, port=port, unsafe=unsafe, echo=current_console().info, announce=click.echo)
