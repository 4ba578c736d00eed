"""Export formats: a `Format(write, load)` registry, one module per format (SavedModel, LiteRT, ONNX, OpenVINO).

The `export` command (`cnnlab.commands.export`) writes an artifact through a format (`cnnlab.export.convert`)
and checks it in the format's own runtime (`cnnlab.export.check`); `cnnlab benchmark RUN` gathers the same
figures for every format. Importing this package does not import TensorFlow or any runtime.
"""

# One place imports the format modules, in a fixed order; each registers itself in FORMATS.
from cnnlab.export import artifact, savedmodel, tflite, onnx, openvino  # noqa: F401, I001
from cnnlab.export.formats import FORMAT_NAMES, FORMATS, QUANTIZATIONS, get_format, require_runtime

__all__ = ["FORMATS", "FORMAT_NAMES", "QUANTIZATIONS", "get_format", "require_runtime"]
