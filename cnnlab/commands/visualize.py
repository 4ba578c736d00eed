"""`visualize`: what a run's network learned, in pictures and one table.

Into ``<run>/visualize/`` (or ``-o DIR``): ``filters.png`` (the first layer's filters
before and after training), ``feature_maps_<n>.png`` for each image (the given files,
else a few test images), ``patterns.png`` (what a few channels of a few blocks respond
to most) and ``layers.csv`` (every layer's output shape, parameters, window, receptive
field and jump). The same pictures are sections of `cnnlab report`.
"""

import csv
import io
from pathlib import Path

import numpy as np

from cnnlab import files
from cnnlab.errors import CnnlabError, DataError
from cnnlab.rundir import open_target

DEFAULT_IMAGES = 3  # test images shown when the user names none
MAX_IMAGES = 16


def visualize(target=None, images=(), *, output=None, root="runs", unsafe=False, echo=print, steps=None):
    """Write the pictures and the layer table of `target`'s model.

    Args:
        target: what `open_target` accepts (None: the latest run under `root`).
        images: image files whose feature maps to draw (default: the first test images of the run).
        output: the folder to write into (default: ``<run>/visualize``).
        unsafe: load a model with Lambda layers (Keras ``safe_mode=False``).
        echo: a print-like function for the lines on the terminal.
        steps: gradient ascent steps for the patterns (default `cnnlab.visual.inside.PATTERN_STEPS`).

    Returns:
        The folder written.
    """
    from cnnlab.models.anatomy import layer_table, table_lines
    from cnnlab.session import setup
    from cnnlab.visual.inside import Insight

    if len(images) > MAX_IMAGES:
        raise CnnlabError(f"visualize draws at most {MAX_IMAGES} images' feature maps. Received: {len(images)}.")
    _check_files(images)  # before a model loads: a typo answers at once
    opened = open_target(target, root, note=echo)
    cfg = opened.config()
    folder = Path(output) if output else opened.folder / "visualize"
    _check_folder(folder)
    if cfg is not None:
        setup(cfg)
    model = opened.load_model(unsafe)
    pictures = _load_files(images, model) if images else _test_images(cfg, model, opened)
    inside = Insight.of(model, pictures, run=opened.run, steps=steps)
    rows = layer_table(model)
    _write(folder, inside, rows)
    for line in table_lines(rows, compact=True):
        echo(line)
    for note in inside.notes:
        echo(note)
    return folder


def _check_folder(folder):
    if folder.exists() and not folder.is_dir():
        raise CnnlabError(f"-o {str(folder)!r} is a file: give a folder to write the pictures into.")
    files.check_writable_file(folder / "layers.csv", "-o", "Give a folder you can write to.")


def _check_files(paths):
    """Every IMAGE is a readable image file (decoded whole by Pillow), else a `DataError` naming it."""
    from cnnlab.data.folders import check_image

    for path in map(str, paths):
        if not Path(path).is_file():
            raise DataError(f"IMAGE {path!r} does not exist or is no file: give image files (png, jpg, bmp, gif).")
        try:
            check_image(path)
        except ValueError as exc:
            raise DataError(f"cannot read {path!r}: {exc}.") from None


def _load_files(paths, model):
    """The images of `paths`, each brought to the model's input as predict brings them."""
    from cnnlab.data.ops import decode_image, fit_images
    from cnnlab.inference.inputs import input_shape

    shape = input_shape(model, model.name, verb="visualize")
    return np.stack([np.asarray(fit_images(decode_image(str(path)), shape)) for path in paths])


def _test_images(cfg, model, opened):
    """The first `DEFAULT_IMAGES` images of the run's evaluation split (its test split by default)."""
    from cnnlab.data.pipeline import load_data
    from cnnlab.inference.inputs import check_model_fits
    from cnnlab.inference.predictions import images_at

    if cfg is None:
        raise CnnlabError(f"{str(opened.model_path)!r} is a bare model: name the images whose feature maps to "
                          "draw (cnnlab visualize MODEL.keras IMAGE...).")
    data = load_data(cfg)
    check_model_fits(model, data, opened.run)
    split = next(name for name in (cfg.evaluate.split, "test", "val", "train") if getattr(data, name) is not None)
    count = min(DEFAULT_IMAGES, len(data.split(split)))
    return np.stack(images_at(data, split, list(range(count))))


def _write(folder, inside, rows):
    """Every picture of `inside` and the layer table, each written atomically."""
    from cnnlab.models.anatomy import TABLE_COLUMNS, table_cells

    folder.mkdir(parents=True, exist_ok=True)
    for name, png in inside.pictures().items():
        files.write_bytes(folder / name, png)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(TABLE_COLUMNS)
    writer.writerows(table_cells(row) for row in rows)
    files.write_text(folder / "layers.csv", text.getvalue())
