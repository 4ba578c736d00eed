"""Fitting inputs to a model: a model must take the data's images and predict its classes; a folder as a split;
one image (a file, pixels or a drawing) as the model takes it, read as predict reads files."""

import os

import numpy as np

from cnnlab.data.folders import DECODABLE, IMAGE_EXTENSIONS, check_image
from cnnlab.errors import CnnlabError, DataError
from cnnlab.models.heads import main_output_shape


def folder_data(data_dir, model, class_names, batch_size=64, on_bad_image="error"):
    """Every image of a class-sub-folder folder as the test split, fitted to the model's input."""
    from cnnlab.data.folders import scan_folder
    from cnnlab.data.pipeline import DataBundle
    from cnnlab.data.sources import Examples

    scan = scan_folder(data_dir, on_bad_image=on_bad_image, key="--data-dir", class_names=class_names)
    examples = Examples(labels=scan.labels, paths=scan.paths)
    return DataBundle(train=examples, val=None, test=examples, class_names=list(scan.class_names),
                      input_shape=tuple(model.input_shape[1:]), batch_size=batch_size, seed=0)


def check_input_shape(model, data, where):
    """A model whose input differs from the data's images is an error saying what to set."""
    shape = tuple(model.input_shape[1:])
    if shape != tuple(data.input_shape):
        raise DataError(f"the model in {where} takes images of {shape} but the data gives "
                        f"{tuple(data.input_shape)}: set data.image_size to {list(shape[:2])} and "
                        f"data.color_mode to {'grayscale' if shape[-1] == 1 else 'rgb'}.")


def check_model_fits(model, data, where):
    """A model must take the data's images and predict its classes (evaluate, export, ensemble, report)."""
    check_input_shape(model, data, where)
    out = main_output_shape(model)[-1]
    if out != data.classes:
        raise DataError(f"the model in {where} predicts {out} classes but the data has {data.classes} "
                        f"({', '.join(data.class_names[:10])}): use data with the same classes.")


# --------------------------------------------------------------------------- one image, as the model takes it

DRAWN_SHARE = 20 / 28  # of the image's side a drawing fills once centred: MNIST's 20-pixel box in 28


def input_shape(model, where, verb="predict"):
    """``(H, W, C)`` the model takes; a model without a fixed image size cannot be fed files (`verb`: who asks)."""
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or None in shape[1:]:
        raise CnnlabError(f"the model in {str(where)!r} takes inputs of shape {shape}: {verb} needs one "
                          "image input of a fixed (height, width, channels).")
    return tuple(int(v) for v in shape[1:])


def class_names_of(opened, model):
    """The class names of an opened run (`cnnlab.rundir.Target`), or the class indices as text for a bare
    model without class_names.json."""
    from cnnlab.rundir import CLASSES_FILE

    classes = main_output_shape(model)[-1]
    names = opened.class_names()
    if names is None:
        return [str(i) for i in range(classes)]
    if len(names) != classes:
        raise CnnlabError(f"{opened.folder / CLASSES_FILE} names {len(names)} classes but the model "
                          f"predicts {classes}: the class names do not belong to this model.")
    return [str(name) for name in names]


def header_problem(path):
    """Why `path` is no image TensorFlow could decode, judged from its name and header; None if it may be."""
    from PIL import Image

    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file (allowed: {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:  # reads the header only
            if image.format not in DECODABLE:
                return f"{image.format} data, not jpg, png, bmp or gif"
    except Image.DecompressionBombError:
        return f"image too large to decode safely (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def decode_problem(path):
    """Why TensorFlow could not decode `path` (asked of Pillow, which says more)."""
    try:
        check_image(path)
    except ValueError as exc:
        return str(exc)
    return "unreadable image (TensorFlow could not decode it)"


def read_image(path):
    """One image file as predict reads it (`header_problem`, then TensorFlow's decode): RGB uint8 ``(H, W, 3)``,
    the first frame of a gif. A file that is no image raises `DataError` saying why."""
    import tensorflow as tf

    from cnnlab.data.ops import decode_image

    path = os.fspath(path)
    problem = header_problem(path)
    if problem is not None:
        raise DataError(problem)
    try:
        return decode_image(path).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError):  # truncated or corrupt data
        raise DataError(decode_problem(path)) from None


def fit_image(pixels, shape):
    """Pixels ``(H, W[, 1 | 3])`` 0..255 as the model of input `shape` takes them: float32 ``shape``, brought to
    its size and colour mode as predict brings files (`cnnlab.data.ops.fit_images`; scaling is the model's)."""
    from cnnlab.data.ops import fit_images

    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
        raise DataError(f"an image must be (height, width) or (height, width, 1 or 3) pixels. "
                        f"Received shape {pixels.shape}.")
    return np.asarray(fit_images(pixels, shape))


def drawing_ink(drawing):
    """A drawing pad's picture as ink: ``(H, W)`` float32 0..255, the strokes bright on black (MNIST's way).

    With transparency (a pad's strokes on a transparent canvas, whatever their colour) the alpha is the
    ink; an opaque picture's grey levels are, turned over when its border (the paper) is bright (black on white).
    """
    pixels = np.asarray(drawing, np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"a drawing must be (height, width[, channels]) pixels, 1 to 4 channels. "
                        f"Received shape {pixels.shape}.")
    if pixels.shape[-1] in (2, 4) and pixels[..., -1].min() < 255:
        return pixels[..., -1]
    colour = pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., :1]
    grey = colour @ np.float32([0.299, 0.587, 0.114]) if colour.shape[-1] == 3 else colour[..., 0]
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 255 - grey if np.median(border) > 127 else grey


def drawn_image(drawing, shape):
    """A drawing as an image of the model's ``(H, W)``: its strokes bright on black (`drawing_ink`), cropped to
    them and centred in a box of `DRAWN_SHARE` of the side (as MNIST's digits are), shrunk by area averaging
    so thin strokes stay; ``(H, W)`` uint8, the brightest stroke 255. None for an empty pad."""
    from PIL import Image

    ink = drawing_ink(drawing)
    rows, cols = np.nonzero(ink > 0.1 * max(float(ink.max()), 1.0))
    if not len(rows):
        return None
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    side = max(ink.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    height, width = shape[:2]
    box = max(1, round(DRAWN_SHARE * min(height, width)))
    small = np.asarray(Image.fromarray(square).resize((box, box), Image.BOX))
    image = np.zeros((height, width), np.float32)
    top, left = (height - box) // 2, (width - box) // 2
    image[top:top + box, left:left + box] = small
    return np.uint8(np.clip(image * (255.0 / max(float(image.max()), 1e-6)), 0, 255))
