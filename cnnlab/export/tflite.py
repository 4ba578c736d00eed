"""TFLite / LiteRT (Keras's ``format="litert"``), checked with ai-edge-litert's interpreter.

The converter's keyword arguments pass through ``model.export``. Every variant is
restricted to TFLite's builtin ops: a model that would need TensorFlow "select" ops
(which the LiteRT interpreter refuses) fails at conversion, not on the phone.

- ``none``: float32.
- ``float16``: weights stored as float16 (``target_spec.supported_types``), computed in float32.
- ``int8``: full-integer quantisation calibrated on training images; the input and output
  are int8, with the scale and zero point the converter chose (``real = scale * (q - zero_point)``),
  recorded in the JSON beside the artifact and applied by the check.
"""

import numpy as np

from cnnlab.export.formats import Format, Runtime, register_format, version


def converter_options(quantize, calibration):
    """The TFLite converter settings for `quantize`, as ``model.export(format="litert")`` keywords."""
    import tensorflow as tf

    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if quantize == "float16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT],
                "target_spec": {"supported_ops": [builtins], "supported_types": [tf.float16]}}
    if quantize == "int8":
        return {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": calibration,
                "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                "inference_input_type": tf.int8, "inference_output_type": tf.int8}
    return {"target_spec": {"supported_ops": [builtins]}}


def write(model, path, quantize, calibration):
    """``model.export(path, format="litert", **converter options)``; `path` ends in ``.tflite``."""
    model.export(str(path), format="litert", verbose=False, **converter_options(quantize, calibration))


def quantization(detail):
    """A tensor's dtype, and its scale and zero point when quantised."""
    scale, zero_point = detail["quantization"]
    described = {"dtype": np.dtype(detail["dtype"]).name}
    if scale:
        described.update(scale=float(scale), zero_point=int(zero_point))
    return described


def to_input(images, detail):
    """Raw float pixels as the input tensor wants them (quantised with its scale and zero point)."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not scale:
        return np.asarray(images, dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(images) / scale + zero_point), info.min, info.max).astype(dtype)


def from_output(values, detail):
    """An output tensor as float probabilities (dequantised)."""
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale if scale else values.astype(np.float32)


def load(path):
    """ai-edge-litert's `Interpreter` over the file at `path`, resized to each batch it is given."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = [None]

    def predict(images):
        if batch[0] != len(images):
            interpreter.resize_tensor_input(source["index"], [len(images), *source["shape"][1:]])
            interpreter.allocate_tensors()
            batch[0] = len(images)
        interpreter.set_tensor(source["index"], to_input(images, source))
        interpreter.invoke()
        return from_output(interpreter.get_tensor(target["index"]), target)

    io = {"input": quantization(source), "output": quantization(target)}
    return Runtime(predict, io, version("ai_edge_litert"))


register_format(Format("tflite", suffix=".tflite", quantizations=("none", "float16", "int8"),
                       modules=("ai_edge_litert",), packages=("ai-edge-litert",), write=write, load=load))
