"""A run's model in Keras and in every export format, side by side: each one's runtime, size and self-check.

Every format x quantisation of the export registry is a contender. Its artifact is
the run's own (``<run>/export/``) when that one passed its check and was written
after the model; otherwise it is exported now into a scratch folder, through the
same conversion as `cnnlab export` (`cnnlab.export.convert`). Each is then checked
as an export checks itself (`cnnlab.export.check.check_artifact`: accuracy,
agreement with Keras, on the run's test split); Keras is the first contender, checked
the same way. A format whose runtime is not installed, or that fails to convert or
load, is a contender with the reason and no figures.
"""

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cnnlab import files
from cnnlab.errors import CnnlabError

MISSING = "runtime not installed: pip install 'cnnlab[export]'"


@dataclass
class Contender:
    """One way to run the model.

    Attributes:
        name: ``keras``, ``savedmodel``, ``tflite int8``, ...
        runtime: a `cnnlab.export.formats.Runtime`, or None when there is none (`problem` says why).
        size: bytes on disk of the model or the artifact.
        source: where the artifact came from (``model.keras``, ``the run's export/``, ``exported now``).
        check: the `cnnlab.export.check.CheckResult` on the test split.
        problem: why there are no figures, or None.
    """

    name: str
    quantize: str = "none"
    runtime: Any = None
    size: Optional[int] = None
    source: str = ""
    check: Any = None
    problem: Optional[str] = None


def keras_contender(opened, model):
    """The Keras model itself, called as `cnnlab predict` calls it."""
    import keras

    from cnnlab.export.formats import Runtime
    from cnnlab.inference.predictions import predict_batch

    runtime = Runtime(lambda images: predict_batch(model, images), {}, f"keras {keras.__version__}")
    return Contender("keras", runtime=runtime, size=opened.model_path.stat().st_size,
                     source=opened.model_path.name)


def export_contenders(opened, model, bundle, scratch, echo):
    """A `Contender` per format x quantisation of the registry, loaded in its runtime where it can be."""
    from cnnlab.export import FORMATS

    exporter = Exporter(opened, model, bundle, scratch, echo)
    found = []
    for entry in FORMATS.entries():
        spec = entry.meta["format"]
        for quantize in spec.quantizations:
            name = spec.name if quantize == "none" else f"{spec.name} {quantize}"
            try:
                found.append(_loaded(name, spec, quantize, exporter))
            except CnnlabError as exc:
                found.append(Contender(name, quantize, problem=str(exc)))
    return found


class Exporter:
    """The artifacts of a run's model: the run's own where fresh, else exported into `scratch` (the export
    copy and int8's calibration images made once, on first need)."""

    def __init__(self, opened, model, bundle, scratch, echo):
        self.opened, self.model, self.bundle, self.scratch, self.echo = opened, model, bundle, Path(scratch), echo

    @functools.cached_property
    def copy(self):
        from cnnlab.export.prepare import export_copy

        return export_copy(self.model)[0]

    @functools.cached_property
    def calibration(self):
        from cnnlab.export.convert import calibration_data

        return calibration_data(self.opened, self.bundle, None, self.echo)

    def artifact(self, name, spec, quantize):
        """``(path, where it came from)`` of the artifact of `spec` x `quantize`."""
        from cnnlab.export.artifact import default_path
        from cnnlab.export.convert import convert

        path = run_export(self.opened, spec, quantize)
        if path is not None:
            return path, "the run's export/"
        self.echo(f"Exporting {name} ...")
        path = self.scratch / name.replace(" ", "-") / default_path(".", spec, quantize).name
        path.parent.mkdir(parents=True)
        convert(spec, self.copy, path, quantize, self.calibration if quantize == "int8" else None)
        return path, "exported now"


def _loaded(name, spec, quantize, exporter):
    """The contender of one format x quantisation: its artifact, loaded in the format's runtime."""
    from cnnlab.export import require_runtime
    from cnnlab.export.check import size_on_disk

    try:
        require_runtime(spec)
    except CnnlabError:
        return Contender(name, quantize, problem=MISSING)
    path, source = exporter.artifact(name, spec, quantize)
    parts = [path, *(path.with_suffix(suffix) for suffix in spec.companions)]
    try:
        runtime = spec.load(path)
    except Exception as exc:  # each runtime raises its own types
        return Contender(name, quantize, problem=f"{spec.name} could not load it: {_first_line(exc)}")
    return Contender(name, quantize, runtime=runtime, size=size_on_disk(p for p in parts if p.exists()),
                     source=source)


def run_export(opened, spec, quantize):
    """The run's own artifact of `spec` x `quantize`, if it passed its check and is newer than the model."""
    from cnnlab.export import artifact

    path = artifact.default_path(opened.folder, spec, quantize)
    meta = artifact.meta_path(path)
    record = files.read_json(meta) or {}
    if not (path.exists() and record.get(artifact.MARK) and (record.get("check") or {}).get("passed")):
        return None
    return path if os.path.getmtime(meta) >= os.path.getmtime(opened.model_path) else None


def check_all(contenders, model, bundle, task, cfg, thresholds):
    """Check every contender that has a runtime on the test split, as an export checks itself."""
    from cnnlab.export.check import FLOORS, check_artifact

    for contender in contenders:
        if contender.runtime is None:
            continue
        try:
            contender.check = check_artifact(contender.runtime, model, bundle.dataset("test"),
                                             FLOORS[contender.quantize], contender.size, task, cfg, thresholds)
        except Exception as exc:  # a runtime failing on real images: its row says so
            contender.runtime, contender.problem = None, f"failed on the test images: {_first_line(exc)}"


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
