"""`check` (and `train --dry-run`): build an experiment's model and print its summary or layer table; no training."""

from cnnlab.models.assemble import assemble
from cnnlab.session import setup


def check(cfg, echo=print, layers=False):
    """Build the model of `cfg` and print its summary (with `layers`, a numbered layer table); no training.

    Keras's datasets are described from the registry (shape, classes), so this
    needs no download; files and folders are read to learn their shape.
    """
    from cnnlab.data.pipeline import describe_data

    setup(cfg)
    shape, classes = describe_data(cfg)
    echo(f"Data: images of {shape}, {classes} classes")
    # Standardisation's statistics change no parameter count: neutral ones do for the summary.
    model = assemble(cfg, shape, classes, {"mean": [0.0] * shape[-1], "variance": [1.0] * shape[-1]})
    if layers:
        for line in layer_table(model):
            echo(line)
    else:
        model.summary(print_fn=lambda line, **_: echo(line))
    return model


def layer_table(model):
    """Lines of a table of every layer: index, name, type and parameters (what ``--freeze`` counts)."""
    from cnnlab.console import aligned

    rows = [(str(i), layer.name, type(layer).__name__, f"{layer.count_params():,}")
            for i, layer in enumerate(model.layers)]
    return aligned([("index", "name", "type", "parameters"), *rows], right=(0, 3))
