"""`predict`: a run's model on image files and folders: the top-k classes of every image.

Files stream through tf.data in batches (a folder of 100,000 images is never
loaded whole) and are decoded in parallel, to the run's own image size and
colour mode (the model's input shape); scaling is inside the model. Folders are
searched recursively with the training folders' rules: hidden files and folders
are skipped, every other file is a candidate.

A bad file does not stop the others. Each file's header is read with Pillow as it
enters the stream (wrong extension, not an image, a decompression bomb); the full
decode is TensorFlow's, and an image it cannot decode (truncated, corrupt) is
dropped from its batch alone (``ignore_errors``) and found again by its index.
Every bad file gets a row with its reason in the ``error`` column.
"""

import os
from pathlib import Path

from cnnlab import files, rundir
from cnnlab.data.folders import IMAGE_EXTENSIONS, visible_files
from cnnlab.errors import CnnlabError, DataError
from cnnlab.inference.inputs import class_names_of, decode_problem, header_problem, input_shape
from cnnlab.rundir import is_target, open_target
from cnnlab.tasks import task_of

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 64
OUTPUT_SUFFIXES = (".csv", ".json")
IMAGES_ARGUMENT = {"predict": "PATH... (PATH an image file or a folder)", "visualize": "[IMAGE...] (image files)"}
BAD_FILES_LISTED = 10  # more bad files than this: the first ones, then a summary line


def split_arguments(arguments, paths_required=True, verb="predict"):
    """``[TARGET] PATH...`` -> ``(target or None, paths)``: the first argument is TARGET if `is_target`.

    A target among the PATHs (``cnnlab predict IMAGE RUN_DIR``) is refused rather than searched for images;
    a target alone is refused when `paths_required` (``cnnlab visualize RUN`` takes none).
    """
    arguments = list(arguments)
    target = arguments[0] if arguments and is_target(arguments[0]) else None
    paths = arguments[1:] if target is not None else arguments
    if target is not None and not paths and paths_required:
        raise DataError(f"{target!r} is a model or run: give the images to predict after it "
                        "(cnnlab predict [TARGET] PATH..., PATH an image file or a folder).")
    for path in paths:
        if is_target(path):
            raise DataError(_misplaced(path, one=target is not None, verb=verb))
    return target, paths


def _misplaced(argument, one, verb):
    """Why a model or run among the PATHs is refused, and how to call predict instead."""
    path = Path(argument)
    if path.is_file():
        kind, name, usage = "a .keras model", "the model", "MODEL.keras"
    else:
        kind, name, usage = ("a run folder" if rundir.is_run(path) else "a folder of runs"), "the run", "RUN_DIR"
    return (f"{str(argument)!r} is {kind}, not images: name {name} first{' (one run or model)' if one else ''}: "
            f"cnnlab {verb} {usage} {IMAGES_ARGUMENT.get(verb, IMAGES_ARGUMENT['predict'])}.")


def image_files(paths):
    """Every file named in `paths`, and every non-hidden file under the folders among them (recursively)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found.extend(visible_files(path))
        elif os.path.exists(path):
            found.append(str(path))
        else:
            raise DataError(f"PATH {str(path)!r} does not exist: give image files "
                            f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) or folders holding them.")
    found = list(dict.fromkeys(found))  # a file named twice is predicted once
    if not found:
        raise DataError(f"no files in {', '.join(map(repr, map(str, paths)))}: give image files "
                        f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) or folders holding them "
                        "(hidden files and folders are skipped).")
    return found


def check_output(output, task=None):
    """An ``--output`` path must end in .csv or .json, in a folder that exists (checked before predicting);
    a `task` that writes files per image (segmentation) takes a folder instead."""
    if output is None:
        return
    if task is not None and task.output_folder:
        path = Path(output)
        if path.exists() and not path.is_dir():
            raise CnnlabError(f"--output {str(output)!r} is a file: a {task.name} run writes a folder of files per "
                              "image (and predictions.csv). Give a folder.")
        if not path.resolve().parent.is_dir():
            raise CnnlabError(f"--output {str(output)!r}: the folder {str(path.parent)!r} does not exist.")
        files.check_writable_file(path / "predictions.csv", "--output", "Give a folder you can write to.")
        return
    if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise CnnlabError(f"--output must end in .csv or .json. Received: {str(output)!r}.")
    if not Path(output).resolve().parent.is_dir():
        raise CnnlabError(f"--output {str(output)!r}: the folder {str(Path(output).parent)!r} does not exist.")
    files.check_writable_file(output, "--output", "Give a .csv or .json file in a folder you can write to.")


def predict(target, paths, *, top_k=None, all_probs=False, tta=False, batch_size=None, output=None,
            unsafe=False, root="runs", progress=False, note=print, warn=print):
    """Predict the classes of the images in `paths` with the model of `target`.

    Args:
        target: what `open_target` accepts (None: the latest run under `root`).
        paths: image files and folders (searched recursively).
        top_k: how many classes per image (default 3); more than the model has is clamped, with a note.
        all_probs: also keep every class's probability.
        tta: average over test-time augmentation views (`cnnlab.inference.tta`).
        batch_size: images per model call (default: the run's ``data.batch_size``, else 64).
        output: a .csv or .json file to write the rows to (atomically), or None; for a task that writes files
            per image (segmentation's masks and overlays), a folder.
        unsafe: load a model with Lambda layers (Keras ``safe_mode=False``).
        progress: show a progress bar (on a terminal).
        note: a print-like function for informational lines (the first: which run predicts).
        warn: a print-like function for the bad files (stderr).

    Returns:
        `Predictions`. Raises `DataError` if no file could be predicted.
    """
    found = image_files(paths)
    opened = open_target(target, root, note=note)
    cfg = opened.config()
    task = task_of(cfg)
    check_output(output, task)
    model = opened.load_model(unsafe)
    shape = input_shape(model, opened.model_path)
    class_names = class_names_of(opened, model)
    k = clamp_top_k(top_k, len(class_names), note)
    plan = None
    if tta:
        from cnnlab.inference.tta import plan as tta_plan

        plan = tta_plan(cfg, shape)
        for line in plan.notes():
            note(line)
    size = batch_size or (cfg.data.batch_size if cfg is not None else DEFAULT_BATCH_SIZE)
    probs, problems = run_model(model, found, shape, size, plan, progress, task.condense)
    result = task.predictions(found, probs, problems, class_names, task.calibrate(opened.folder), top_k=k,
                              all_probs=all_probs)
    if not result.predicted:
        raise DataError(f"none of the {len(found)} file(s) could be predicted: {bad_summary(result.bad, 5)}.")
    report_bad(result.bad, warn)
    if output is not None:
        result.write(output)
    return result


def clamp_top_k(top_k, classes, note):
    """`top_k`, at most `classes` (saying so when the user asked for more); default 3."""
    if top_k is None:
        return min(DEFAULT_TOP_K, classes)
    if top_k > classes:
        note(f"--top-k {top_k} is more than the model's {classes} classes: showing all {classes}.")
        return classes
    return top_k


def image_stream(found, shape, batch_size, problems):
    """Batches of ``(file indices, images float32 (B, *shape))``; the bad files' reasons land in `problems`.

    Files failing `header_problem` never enter the stream; files TensorFlow fails
    to decode are dropped alone (their batch goes on without them).
    """
    import tensorflow as tf

    from cnnlab.data.ops import decode_image, fit_images, plain, prefetched

    def candidates():
        for index, path in enumerate(found):
            problem = header_problem(path)
            if problem is None:
                yield index, os.fsencode(path)
            else:
                problems[index] = problem

    def load(index, path):
        return index, fit_images(decode_image(path), shape)

    signature = (tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.string))
    ds = tf.data.Dataset.from_generator(candidates, output_signature=signature)
    ds = ds.map(plain(load), num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    return prefetched(ds.batch(batch_size))


def run_model(model, found, shape, batch_size, plan, progress, condense=list):
    """``(outputs by file index, problems by file index)`` of the files in `found`: each file has one.
    `condense`: what is kept of a batch's outputs, one item per image (a task's `Task.condense`)."""
    import keras

    from cnnlab.inference.predictions import predict_batch

    probs, problems = {}, {}
    bar = keras.utils.Progbar(len(found), unit_name="image") if progress else None
    for indices, images in image_stream(found, shape, batch_size, problems):
        batch = predict_batch(model, images, plan)
        probs.update(zip(indices.numpy().tolist(), condense(batch)))
        if bar is not None:
            bar.update(int(indices[-1]) + 1)
    if bar is not None:
        bar.update(len(found), finalize=True)
    problems.update({i: decode_problem(path) for i, path in enumerate(found) if i not in probs and i not in problems})
    return probs, problems


def bad_summary(bad, limit):
    """``path: reason; ...`` for the first `limit` bad rows, then how many more."""
    listed = "; ".join(f"{row.path}: {row.error}" for row in bad[:limit])
    return listed + (f" and {len(bad) - limit} more" if len(bad) > limit else "")


def report_bad(bad, warn):
    """Name the bad files, one line each, or the first few and a summary line when there are many."""
    for row in bad[:BAD_FILES_LISTED]:
        warn(f"Cannot predict {row.path}: {row.error}")
    if len(bad) > BAD_FILES_LISTED:
        warn(f"Cannot predict {len(bad) - BAD_FILES_LISTED} more file(s) ({len(bad)} bad in all; "
             "see the error column).")
