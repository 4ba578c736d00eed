"""`export`: a run's model as a SavedModel, TFLite, ONNX or OpenVINO artifact that has checked itself.

Every format goes through Keras 3's own ``model.export(path, format=...)``, on an
export copy of the model (`cnnlab.export.prepare`: float32, Normalization as
Rescaling, called once) so that every cnnlab model exports. Before it says done,
an export runs the artifact in its own runtime on the run's test split (or
``--data-dir``) and compares it with the Keras model (`cnnlab.export.check`) by the run
task's agreement (top-1 classes; multi-label: label sets at the run's thresholds): agreement
under 99 % (97 % for int8) is an error, and the artifact is kept only
under a name that says it failed (`cnnlab.export.artifact`). The artifact takes raw
pixels, like the ``.keras`` model; a JSON beside it says how to feed it.

Importing this module does not import TensorFlow or any runtime.
"""

from cnnlab import files
from cnnlab.errors import CnnlabError
from cnnlab.export import artifact, get_format, require_runtime
from cnnlab.export.convert import calibration_data, check_data, convert
from cnnlab.tasks import task_of

PIXELS = "raw pixels, as the .keras model takes them (its scaling layer is inside the artifact)"
PRECISION = {"none": "float32", "float16": "float16 weights", "int8": "full-integer int8"}


def export(target=None, *, fmt, quantize="none", output=None, data_dir=None, root="runs", unsafe=False,
           echo=print):
    """Export a run (default: the latest) or a .keras model, check the artifact, and write its JSON.

    Args:
        target: a run folder, an experiment's folder of runs, a .keras file, or None (the latest run).
        fmt: ``savedmodel``, ``tflite``, ``onnx`` or ``openvino``.
        quantize: ``none``; for tflite also ``float16`` or ``int8``.
        output: the artifact's path (default ``<run>/export/model[-<quantize>].<ext>``).
        data_dir: a folder of class sub-folders to check on instead of the run's test split.
        root: where the latest run is looked for.
        unsafe: load models with Lambda layers (Keras ``safe_mode=False``).
        echo: a print-like function for progress lines.

    Returns:
        The record written beside the artifact (its JSON), plus ``path``.

    Raises:
        CnnlabError: bad options, a missing runtime, a failed conversion, or an artifact whose
            agreement with the Keras model is under the floor (it is then kept as ``*.failed*``).
    """
    from cnnlab.export.prepare import export_copy
    from cnnlab.rundir import open_target

    spec = get_format(fmt, quantize)
    require_runtime(spec)
    opened = open_target(target, root, note=echo)
    if opened.run is None and data_dir is None:
        raise CnnlabError(f"{str(opened.model_path)!r} is not inside a run folder: give --data-dir, a folder of "
                          "class sub-folders to check the export on (and, for int8, to calibrate on).")
    path = artifact.output_path(opened.folder, spec, quantize, output)
    files.check_writable(path.parent, "the export's folder", "Give -o a path in a folder you can write to.")
    replacing = artifact.refuse_foreign(path, spec)
    model = opened.load_model(unsafe)
    bundle, what = check_data(opened, model, data_dir)
    copy, notes = export_copy(model)
    calibration = calibration_data(opened, bundle, data_dir, echo) if quantize == "int8" else None
    with artifact.staging(path) as staged:
        convert(spec, copy, staged, quantize, calibration)
        cfg = opened.config()
        task = task_of(cfg)
        calibration = task.calibrate(opened.folder)
        runtime, result = check_staged(spec, staged, model, bundle, quantize, task, cfg, calibration)
        record = describe_export(spec, quantize, path, opened, bundle, runtime.io, notes)
        record.update(task=task.name, agreement=task.agreement_name,
                      **({"thresholds": calibration} if calibration is not None else {}))
        record["check"] = result.to_dict()
        if not result.passed:
            fail(spec, staged, path, record, what)
        artifact.move_into_place(staged, path, spec)
        artifact.write_record(path, record)
    report(echo, spec, quantize, path, record, notes, what, replacing)
    return {**record, "path": str(path)}


def check_staged(spec, staged, model, bundle, quantize, task, cfg=None, calibration=None):
    """Load the staged artifact in its runtime and check it on the bundle's test images, as `task` measures
    (`cfg`: the run's config, None for a bare model)."""
    from cnnlab.export.check import FLOORS, check_artifact, size_on_disk

    runtime = spec.load(staged)
    size = size_on_disk(p for p in staged.parent.iterdir())
    return runtime, check_artifact(runtime, model, bundle.dataset("test"), FLOORS[quantize], size, task,
                                   cfg, calibration)


def describe_export(spec, quantize, path, opened, bundle, io, notes):
    """The JSON beside the artifact, but for the check: what it is, whence, how to feed it, what it predicts."""
    import keras
    import tensorflow as tf

    options = {k: v for k, v in io.items() if k not in ("input", "output")}
    return {"format": spec.name, "quantization": quantize, "artifact": path.name,
            "run": None if opened.run is None else str(opened.run), "model": str(opened.model_path),
            "class_names": list(opened.class_names() or bundle.class_names),
            "input": {"shape": [None, *bundle.input_shape], **io["input"], "pixels": PIXELS},
            "output": {"classes": bundle.classes, **io["output"]}, "runtime_options": options,
            "export_copy": notes, "versions": {"keras": keras.__version__, "tensorflow": tf.__version__}}


def fail(spec, staged, path, record, what):
    """Keep an artifact that failed its check as ``*.failed*`` and raise the error that says so."""
    kept = artifact.failed_path(path, spec)
    artifact.move_into_place(staged, kept, spec)
    artifact.write_record(kept, {**record, "artifact": kept.name})
    check = record["check"]
    raise CnnlabError(f"the {spec.name} export (--quantize {record['quantization']}) agrees with the Keras model "
                      f"on {100 * check['agreement']:.2f} % of {check['images']} {what}, under the "
                      f"{100 * check['floor']:.0f} % required (accuracy {check['accuracy']:.4f}, Keras "
                      f"{check['keras_accuracy']:.4f}). It is kept for inspection as {str(kept)!r}, "
                      f"not as {str(path)!r}.")


def report(echo, spec, quantize, path, record, notes, what, replacing):
    """The lines an export prints: where, what changed in the copy, the check, how to feed int8."""
    from cnnlab.export.check import CheckResult, describe

    check = CheckResult(**{k: v for k, v in record["check"].items() if k != "passed"})
    echo(f"{'Replaced' if replacing else 'Wrote'} {spec.name} ({PRECISION[quantize]}): {path}")
    for note in notes:
        echo(f"  export copy: {note}")
    echo(describe(check, what))
    source = record["input"]
    if "scale" in source:
        echo(f"  {source['dtype']} input: scale {source['scale']:.6g}, zero point {source['zero_point']} "
             f"(q = round(pixel / scale) + zero point), recorded in {artifact.meta_path(path).name}")
