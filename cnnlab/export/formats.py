"""The export formats, registered by name: what each writes, which runtime checks it, what it accepts.

A format module (`savedmodel`, `tflite`, `onnx`, `openvino`) registers one `Format`:
how Keras's ``model.export`` writes it and how its own runtime loads it back for the
self-check. This module imports neither TensorFlow nor a runtime, so the CLI can
validate ``--format`` and ``--quantize`` at once.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.errors import CnnlabError, ConfigError, one_of
from cnnlab.registry import Registry

FORMAT_NAMES = ("savedmodel", "tflite", "onnx", "openvino")  # the one list `--format` is checked against
QUANTIZATIONS = ("none", "float16", "int8")
EXTRA = 'pip install "cnnlab[export]"'

FORMATS = Registry("--format")


@dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        name: the ``--format`` value.
        suffix: the artifact's file suffix (``.tflite``), or ``""`` for a folder (SavedModel).
        quantizations: the ``--quantize`` values it accepts.
        modules: what the export and its check import (Python module names).
        packages: the pip packages that provide `modules`, for the error message.
        write: ``write(model, path, quantize, calibration)`` writes the artifact at `path` with
            ``model.export``; `calibration` is a zero-argument callable yielding ``[image batch]``
            (int8 only, else None).
        load: ``load(path)`` -> a `Runtime` running the artifact in its own runtime.
        companions: suffixes of the files written beside the artifact (OpenVINO's ``.bin``).
    """

    name: str
    suffix: str
    quantizations: tuple
    modules: tuple
    packages: tuple
    write: Callable
    load: Callable
    companions: tuple = ()


@dataclass
class Runtime:
    """An artifact loaded in its own runtime.

    Attributes:
        predict: float32 raw-pixel images ``(B, H, W, C)`` -> class probabilities ``(B, classes)``.
        io: what a caller must know to feed it: the input's dtype and, when quantised, the scale and
            zero point (``real = scale * (q - zero_point)``), the same for the output.
        name: the runtime and its version, e.g. ``onnxruntime 1.32.0``.
    """

    predict: Callable
    io: dict
    name: str


def register_format(fmt):
    """Register `fmt` under its name (listed in `FORMAT_NAMES`)."""
    if fmt.name not in FORMAT_NAMES:
        raise ValueError(f"--format: '{fmt.name}' is not in FORMAT_NAMES; add it there first.")
    FORMATS.add(fmt.name, fmt.write, format=fmt)
    return fmt


def get_format(name, quantize="none"):
    """The `Format` called `name`, after checking that it accepts `quantize` (raises `ConfigError`)."""
    if quantize not in QUANTIZATIONS:
        raise ConfigError(one_of("--quantize", QUANTIZATIONS, quantize))
    fmt = FORMATS.get(name).meta["format"]
    if quantize not in fmt.quantizations:
        combos = "; ".join(f"--format {f.meta['format'].name} with --quantize "
                           f"{' | '.join(f.meta['format'].quantizations)}" for f in FORMATS.entries())
        raise ConfigError(f"--quantize {quantize} does not apply to --format {name}. Allowed: {combos}. "
                          f"Received: --format {name} --quantize {quantize}.")
    return fmt


def require_runtime(fmt):
    """Import what `fmt` needs; a missing package is one `CnnlabError` naming the extra."""
    missing = []
    for module, package in zip(fmt.modules, fmt.packages):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise CnnlabError(f"--format {fmt.name} needs {' and '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: {EXTRA} "
                          "(the export extra) installs every export runtime.")


def version(module):
    """``"<module> <version>"`` of an installed module."""
    found = str(getattr(importlib.import_module(module), "__version__", "?"))
    return f"{module} {found.split('-')[0]}"  # openvino's carries its build: 2026.4.1-22982-...
