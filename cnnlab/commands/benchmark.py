"""`benchmark`: architectures side by side (parameters, FLOPs, images/s, memory), or a run in every export format.

``cnnlab benchmark [PATTERN...]`` measures each matching architecture (default: the
seed networks, `cnnlab.catalog.SEED_NETWORKS`) in a worker process of its own
(`cnnlab.benchmarking.architectures`); ``cnnlab benchmark RUN`` gathers the export
self-check's figures of the run's model in Keras and every export format
(`cnnlab.benchmarking.contenders`). Timed figures are medians of repetitions that
alternate between the contenders (`cnnlab.benchmarking.timing`). The table is printed,
and written as CSV with ``-o``.

Importing this module does not import TensorFlow.
"""

import tempfile

from cnnlab import catalog, files
from cnnlab.benchmarking import flops, memory, timing
from cnnlab.benchmarking.table import Table, millions, operations, spread_fields
from cnnlab.errors import CnnlabError
from cnnlab.rundir import is_target

DEFAULT_SHAPE = (224, 224, 3)
DEFAULT_BATCH = 32
LARGE_SIDE = 64  # images this wide and more are classified into 1000 classes (ImageNet's), smaller ones into 10
CSV_FIX = "Give -o a path in a folder you can write to."
NO_TEST_SPLIT_FIX = ("`cnnlab benchmark RUN` checks every format on it, so name a run trained with "
                     "data.test_split above 0 or a data.test_path.")
NOT_A_CLASSIFIER = "a segmentation network (a class per pixel): benchmark builds classifiers"


def run_argument(arguments):
    """The RUN (a run folder, a folder of runs or a .keras file) if `arguments` is exactly one, else None
    (the arguments are architecture patterns)."""
    arguments = list(arguments)
    return arguments[0] if len(arguments) == 1 and is_target(arguments[0]) else None


def select(patterns):
    """The architecture names matching any of the glob `patterns`, in the catalog's order; none: the seed
    networks. Raises `CnnlabError` for a pattern nothing matches, or a run among patterns."""
    if not patterns:
        return list(catalog.SEED_NETWORKS)
    wanted = set()
    for pattern in patterns:
        if is_target(pattern):
            raise CnnlabError(f"{pattern!r} is a run or a model: `cnnlab benchmark RUN` takes one run alone, "
                              "without architecture PATTERNs beside it.")
        try:
            wanted.update(spec.name for spec in catalog.select_architectures(pattern))
        except CnnlabError:
            if "/" in pattern or pattern.endswith(".keras"):
                raise CnnlabError(f"{pattern!r} is neither a run, a .keras model nor an architecture pattern "
                                  "(a glob such as 'resnet*'; `cnnlab models` lists them).") from None
            raise
    return [name for name in catalog.ARCHITECTURES if name in wanted]


def classes_for(shape):
    """1000 classes for images of at least `LARGE_SIDE` pixels a side (ImageNet's), 10 below (CIFAR's)."""
    return 1000 if min(shape[:2]) >= LARGE_SIDE else 10


def benchmark_architectures(patterns, *, input_shape=None, batch_size=None, repeats=5, output=None, progress=False,
                            echo=print, seconds=None):
    """Measure the architectures matching `patterns` (globs; none: the seed networks).

    Args:
        input_shape: ``(H, W, C)`` of the images (default 224x224x3).
        batch_size: images per training and batched-inference call (default 32).
        repeats: timed repetitions of each figure, alternating between the architectures.
        output: a CSV file to write the table to, or None.
        progress: show a progress bar on stderr (a terminal).
        echo: a print-like function for progress lines.
        seconds: the least duration of one timed measurement (default `timing.MEASURE_SECONDS`).

    Returns:
        The `Table` (its ``lines()`` are what the command prints).

    Raises:
        CnnlabError: a pattern matches nothing, or `output` cannot be written (before anything is measured).
    """
    from cnnlab.benchmarking.architectures import measure_architectures, worker_specs

    names = select(patterns)
    if output is not None:
        files.check_writable_file(output, "the CSV", CSV_FIX)
    shape, batch = tuple(input_shape or DEFAULT_SHAPE), batch_size or DEFAULT_BATCH
    seconds = seconds or timing.MEASURE_SECONDS
    classes = classes_for(shape)
    classifiers = [n for n in names if "classification" in catalog.ARCHITECTURES[n].tasks]
    echo(f"Benchmarking {len(classifiers)} architecture(s) at {_shape(shape)}, {classes} classes, batch {batch}: "
         "one process each, built and warmed up first.")
    found = {m.name: m for m in measure_architectures(worker_specs(classifiers, shape, classes, batch, seconds),
                                                        repeats, progress, echo)}
    table = architecture_table(names, found, shape, classes, batch, repeats, seconds)
    if output is not None:
        table.write_csv(output)
        echo(f"Wrote {output}")
    return table


def architecture_table(names, found, shape, classes, batch, repeats, seconds):
    """The table of `cnnlab benchmark [PATTERN...]`: a row per name, figures or the reason there are none."""
    title = [f"Architectures at {_shape(shape)}, {classes} classes, batch {batch}: {repeats} repetition(s) of at "
             f"least {seconds:g} s per timed figure."]
    header = ["architecture", "params", "FLOPs", "mult-adds", "train img/s", "predict img/s @1",
              f"predict img/s @{batch}", "peak MiB", "note"]
    groups = max((m.group for m in found.values()), default=1)
    table = Table(title, header, right=(1, 2, 3, 4, 5, 6, 7), notes=architecture_notes(classes, repeats, groups))
    for name in names:
        measured = found.get(name)
        problem = NOT_A_CLASSIFIER if measured is None else measured.problem or (measured.facts or {}).get("note")
        table.add(*architecture_row(name, measured, problem, shape, classes, batch, repeats))
    return table


def architecture_row(name, measured, problem, shape, classes, batch, repeats):
    """``(cells, CSV record)`` of one architecture."""
    facts = (measured.facts if measured else None) or {}
    rates = measured.rates if measured else {}
    peak = measured.peak_bytes if measured else None
    cells = [name, millions(facts["parameters"]) if facts else "-",
             *(operations(facts[key]) if facts.get(key) is not None else "-" for key in ("flops", "multiply_adds")),
             *(rates[f].cell() if f in rates else "-" for f in ("train", "predict_1", "predict_batch")),
             f"{peak / 2**20:,.0f}" if peak is not None else "-", _short(problem)]
    record = {"architecture": name, "family": catalog.ARCHITECTURES[name].family,
              "input_shape": _shape(shape), "classes": classes, "batch_size": batch, "repeats": repeats,
              **{key: "" if facts.get(key) is None else facts[key] for key in ("parameters", "flops", "multiply_adds")},
              **spread_fields("train_images_per_s", rates.get("train")),
              **spread_fields("predict_1_images_per_s", rates.get("predict_1")),
              **spread_fields("predict_batch_images_per_s", rates.get("predict_batch")),
              "peak_memory_bytes": "" if peak is None else peak,
              "steps_per_execution": facts.get("steps_per_execution", ""), "group": measured.group if measured else "",
              "note": problem or ""}
    return cells, record


def architecture_notes(classes, repeats, groups=1):
    """How each figure of the architectures' table was measured (`groups`: how many groups of workers the
    memory allowed, see `cnnlab.benchmarking.architectures`)."""
    return [f"classes: {classes} ({'ImageNet' if classes == 1000 else 'CIFAR-10'}'s count: 1000 for images of "
            f"{LARGE_SIDE} px a side and more, 10 below; they change the last layer only).",
            flops.METHOD + ".",
            "train: model.fit on one random batch repeated, compiled as a run is (Adam, cross-entropy, top-k "
            "metrics, up to 8 batches per compiled call); predict: predict_on_batch, as `cnnlab predict` calls it.",
            "img/s: " + timing.SPREAD_NOTE.format(n=repeats) + "."
            + (f" Measured in {groups} groups of worker processes (memory did not hold all at once): "
               "repetitions alternate within a group (the CSV's group column)." if groups > 1 else ""),
            memory.METHOD + "."]


def _shape(shape):
    return "x".join(map(str, shape))


def _short(problem, width=100):
    """A reason cut to one table cell (the CSV keeps it whole)."""
    if not problem:
        return ""
    problem = problem.split(". Use a larger data.image_size")[0]
    return problem if len(problem) <= width else problem[: width - 3] + "..."


def benchmark_run(target, *, batch_size=None, repeats=5, output=None, unsafe=False, progress=False, echo=print,
                  seconds=None):
    """Gather the export self-check's figures of a run's model in Keras and in every export format.

    Args:
        target: a run folder, an experiment's folder of runs (its latest) or a .keras file inside a run.
        batch_size: images per batched call (default: the run's ``data.batch_size``).
        repeats: timed repetitions of the latency and the batched rate, alternating between the formats.
        output: a CSV file to write the table to, or None.
        unsafe: load a model with Lambda layers (Keras ``safe_mode=False``).
        progress: show a progress bar on stderr (a terminal).
        echo: a print-like function for progress lines.
        seconds: the least duration of one batched-rate measurement (default `timing.MEASURE_SECONDS`).

    Raises:
        CnnlabError: no run or model there, a bare .keras file or a run without a test split (said before the
            model is loaded), or `output` cannot be written.
    """
    from cnnlab.benchmarking.contenders import check_all, export_contenders, keras_contender
    from cnnlab.tasks import task_of

    if output is not None:
        files.check_writable_file(output, "the CSV", CSV_FIX)
    opened, bundle, model = open_run(target, unsafe, echo)
    cfg = opened.config()
    task, batch = task_of(cfg), batch_size or cfg.data.batch_size
    seconds = seconds or timing.MEASURE_SECONDS
    with tempfile.TemporaryDirectory(prefix="cnnlab-benchmark-") as scratch:
        contenders = [keras_contender(opened, model), *export_contenders(opened, model, bundle, scratch, echo)]
        echo(f"Checking {sum(c.runtime is not None for c in contenders)} format(s) on the test split ...")
        check_all(contenders, model, bundle, task, cfg, task.calibrate(opened.folder))
        spreads = time_contenders(contenders, bundle, batch, repeats, seconds, progress)
    table = run_table(opened, contenders, spreads, task, batch, repeats, seconds)
    if output is not None:
        table.write_csv(output)
        echo(f"Wrote {output}")
    return table


def open_run(target, unsafe, echo):
    """``(opened run, its data, its model)``: the run and its test split checked before the model is loaded."""
    from cnnlab.export.convert import run_test_split
    from cnnlab.inference.inputs import check_model_fits
    from cnnlab.rundir import open_target

    opened = open_target(target, note=echo)
    if opened.run is None:
        raise CnnlabError(f"{str(opened.model_path)!r} is not inside a run folder: `cnnlab benchmark RUN` checks "
                          "every format on the run's test split; name the run.")
    bundle = run_test_split(opened, NO_TEST_SPLIT_FIX)
    model = opened.load_model(unsafe)
    check_model_fits(model, bundle, opened.run)
    return opened, bundle, model


def time_contenders(contenders, bundle, batch, repeats, seconds, progress):
    """``{name: {"latency_ms": Spread, "images_per_s": Spread}}`` of the contenders that run, measured in
    alternation (a contender that fails midway gets its problem and no figures)."""
    from cnnlab.export.check import latency_ms

    single, batched = timing_images(bundle, batch)
    ready = {c.name: c for c in contenders if c.runtime is not None}

    def measure(name):
        predict = ready[name].runtime.predict
        try:
            latency = latency_ms(ready[name].runtime, single)
            predict(batched)  # a runtime that resizes per batch size (LiteRT) does it here, untimed
            return {"latency_ms": latency, "images_per_s": timing.rate(lambda: predict(batched), batch, seconds)}
        except Exception as exc:  # a runtime failing midway: its row says so
            raise timing.Dropped(f"failed while timed: {(str(exc).splitlines() or [''])[0][:200]}") from None

    with timing.progress_bar(repeats * len(ready), progress, f"Timing {len(ready)} contender(s)") as tick:
        spreads, dropped = timing.alternate(list(ready), measure, repeats, tick)
    for name, why in dropped.items():
        ready[name].problem = why
    return spreads


def timing_images(bundle, batch):
    """The check's latency images (the first `LATENCY_IMAGES` test images) and a batch of `batch` test images
    (repeated when the split is smaller)."""
    import numpy as np

    from cnnlab.export.check import LATENCY_IMAGES

    images, count = [], 0
    for chunk, _ in bundle.dataset("test"):
        images.append(np.asarray(chunk, np.float32))
        count += len(images[-1])
        if count >= max(batch, LATENCY_IMAGES):
            break
    images = np.concatenate(images)
    return images[:LATENCY_IMAGES], np.resize(images, (batch, *images.shape[1:]))


def run_table(opened, contenders, spreads, task, batch, repeats, seconds):
    """The table of `cnnlab benchmark RUN`: Keras, then each format x quantisation, figures or the reason."""
    from cnnlab.export.check import LATENCY_IMAGES, human_size

    checked = next((c.check for c in contenders if c.check is not None), None)
    images = f"{checked.images} test images" if checked else "the test split"
    title = [f"{opened.run}: the model in Keras and every export format, checked on {images}; batch {batch}, "
             f"{repeats} repetition(s)."]
    header = ["format", "runtime", "size", "accuracy", "agreement", "ms/image", f"img/s @{batch}", "source"]
    table = Table(title, header, right=(2, 3, 4, 5, 6), notes=[
        f"accuracy: against the test targets; agreement: the share of images whose {task.agreement_name} answer "
        "is the Keras model's (as `cnnlab export` checks itself).",
        f"ms/image: the export check's latency (median over {LATENCY_IMAGES} images, one at a time); img/s: "
        f"batches of {batch}, each timed for at least {seconds:g} s; both the "
        + timing.SPREAD_NOTE.format(n=repeats) + "."])
    for contender in contenders:
        check, spread = contender.check, spreads.get(contender.name, {})
        latency, rate = spread.get("latency_ms"), spread.get("images_per_s")
        cells = [contender.name, check.runtime if check else "-",
                 human_size(contender.size) if contender.size is not None else "-",
                 f"{check.accuracy:.4f}" if check else "-", f"{100 * check.agreement:.2f} %" if check else "-",
                 latency.cell(".3f") if latency else "-", rate.cell() if rate else "-",
                 contender.problem or contender.source]
        table.add(cells, run_record(contender, latency, rate, batch, repeats))
    return table


def run_record(contender, latency, rate, batch, repeats):
    """One contender's CSV row."""
    check = contender.check
    figures = {key: getattr(check, key) if check else "" for key in
               ("runtime", "images", "accuracy", "keras_accuracy", "agreement", "floor", "max_probability_difference")}
    return {"format": contender.name.split()[0], "quantization": contender.quantize, **figures,
            "passed": check.passed if check else "", "size_bytes": "" if contender.size is None else contender.size,
            "batch_size": batch, "repeats": repeats, **spread_fields("latency_ms", latency),
            **spread_fields("images_per_s", rate), "source": contender.source, "note": contender.problem or ""}
