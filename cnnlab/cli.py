"""The command line: a thin click layer over one Python function per verb.

Nothing here imports TensorFlow at module level, so ``cnnlab --help`` and
``--version`` answer at once. A `CnnlabError` becomes one ``Error:`` line and
exit code 2; an unexpected exception exits with 1 (``--verbose`` shows its
traceback); Ctrl-C during training exits with 130 and the run can be resumed.
"""

import os
import signal
import sys
import traceback

import click

from cnnlab import __version__
from cnnlab.errors import CnnlabError


class BadInput(click.ClickException):
    """Bad usage or input: ``Error: ...`` and exit code 2."""

    exit_code = 2


class Group(click.Group):
    def invoke(self, ctx):
        verbose = ctx.params.get("verbose", False)
        try:
            return super().invoke(ctx)
        except CnnlabError as exc:
            if verbose:
                traceback.print_exc()
            raise BadInput(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Run the same command again to resume from the last finished epoch.",
                       err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:  # `cnnlab runs | head`: the reader left; nothing is wrong
            sys.stderr.close()
            sys.exit(0)
        except Exception as exc:  # an unexpected failure: not the user's input
            if verbose:
                traceback.print_exc()
            click.echo(f"Error: unexpected failure: {type(exc).__name__}: {exc} "
                       "(run with --verbose for the traceback)", err=True)
            sys.exit(1)


def _interrupt_on_sigterm():
    """`kill` stops training like Ctrl-C does, so the run is marked for resuming."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


SET_HELP = "Override a config key: dotted KEY=VALUE, the value read as YAML (repeatable)."


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnlab")
@click.option("--verbose", is_flag=True, help="Show tracebacks and TensorFlow's logs.")
def main(verbose):
    """Train, fine-tune and evaluate classic CNNs with Keras 3 from YAML experiment files."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@main.command("train")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--epochs", type=click.IntRange(min=1), help="Shorthand for --set training.epochs=N.")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where runs go (default: output_dir).")
@click.option("--dry-run", is_flag=True, help="Validate, build the model and print its summary; no training.")
@click.option("--fresh", is_flag=True, help="Start a new run even if an interrupted one could be resumed.")
def train_command(experiment, overrides, epochs, output_dir, dry_run, fresh):
    """Train EXPERIMENT.yaml into runs/<name>/<timestamp>/ (resumes an interrupted run)."""
    from cnnlab.config import load_config

    cfg = load_config(experiment, overrides, **{"training.epochs": epochs})
    if dry_run:
        from cnnlab.experiment import check

        check(cfg, echo=click.echo)
        return
    from cnnlab.experiment import train

    _interrupt_on_sigterm()
    run = train(cfg, output_dir=output_dir, fresh=fresh, echo=click.echo)
    click.echo(f"Done: {run}")


def _freeze(value):
    return int(value) if value is not None and value.isdigit() else value


@main.command("finetune")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--freeze", metavar="N|LAYER_NAME", help="Phase 2 keeps the first N layers (or up to LAYER_NAME) frozen.")
@click.option("--epochs", type=click.IntRange(min=0), help="Phase 2's epochs (finetune.epochs).")
@click.option("--head-epochs", type=click.IntRange(min=0), help="Phase 1's epochs (finetune.head_epochs).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
              help="Phase 2's learning rate (finetune.learning_rate).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where the new run goes (default: output_dir).")
@click.option("--fresh", is_flag=True, help="Start a new run even if an interrupted one could be resumed.")
def finetune_command(target, freeze, epochs, head_epochs, learning_rate, overrides, output_dir, fresh):
    """Fine-tune EXPERIMENT.yaml or RUN_DIR (default: the latest run) in two phases."""
    from cnnlab.finetune import finetune

    _interrupt_on_sigterm()
    run = finetune(target, overrides=overrides, freeze=_freeze(freeze), epochs=epochs, head_epochs=head_epochs,
                   learning_rate=learning_rate, output_dir=output_dir, fresh=fresh, echo=click.echo)
    click.echo(f"Done: {run}")


@main.command("evaluate")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["test", "val", "train"]), help="Which split (default: evaluate.split).")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False),
              help="Evaluate on this folder of class sub-folders instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_command(target, split, data_dir, as_json):
    """Evaluate RUN_DIR or MODEL.keras (default: the latest run) and write metrics.json."""
    import json

    from cnnlab.evaluate import evaluate

    result = evaluate(target, split=split, data_dir=data_dir, echo=(lambda _: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(result, indent=2))


@main.command("check")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def check_command(experiment, overrides):
    """Validate EXPERIMENT.yaml, print the resolved config and the model summary; no training."""
    import yaml

    from cnnlab.config import load_config

    cfg = load_config(experiment, overrides)
    click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    from cnnlab.experiment import check

    check(cfg, echo=click.echo)


@main.command("augment-preview")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 256), help="How many images.")
@click.option("-o", "--output", default="preview.png", show_default=True, type=click.Path(dir_okay=False),
              help="The PNG to write.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def augment_preview_command(experiment, count, output, overrides):
    """Write a PNG grid of training images next to their augmented versions."""
    from cnnlab.config import load_config
    from cnnlab.experiment import augment_preview

    augment_preview(load_config(experiment, overrides), count, output, echo=click.echo)


@main.command("runs")
@click.argument("root", default="runs", type=click.Path(file_okay=False))
def runs_command(root):
    """List the runs under ROOT (default: ./runs) with their status and best metrics."""
    from cnnlab.artifacts import runs_table

    for line in runs_table(root):
        click.echo(line)


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"must be H,W,C such as 32,32,3. Received: {text!r}.")
    return shape


@main.command("models")
@click.option("--input-shape", default="224,224,3", show_default=True, help="H,W,C of the images.")
@click.option("--classes", default=1000, show_default=True, type=click.IntRange(min=2), help="Output classes.")
@click.option("--family", help="Only this family (e.g. resnet, vgg, keras.applications).")
def models_command(input_shape, classes, family):
    """List every architecture with its parameters and multiply-adds per image."""
    from cnnlab.models.summary import model_rows

    for line in model_rows(_shape(input_shape), classes, family=family):
        click.echo(line)
