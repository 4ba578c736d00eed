"""ONNX through tf2onnx (Keras's ``format="onnx"``), checked with onnxruntime."""

import numpy as np

from cnnlab.export.formats import Format, Runtime, register_format, version


def write(model, path, quantize, calibration):
    """``model.export(path, format="onnx")``; the model has been called once (see `prepare`)."""
    model.export(str(path), format="onnx", verbose=False)


def load(path):
    """An onnxruntime CPU session over the file at `path`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(images):
        return np.asarray(session.run(None, {name: np.asarray(images, np.float32)})[0])

    io = {"input": {"name": name, "dtype": "float32"}, "output": {"dtype": "float32"}}
    return Runtime(predict, io, version("onnxruntime"))


register_format(Format("onnx", suffix=".onnx", quantizations=("none",), modules=("tf2onnx", "onnx", "onnxruntime"),
                       packages=("tf2onnx", "onnx", "onnxruntime"), write=write, load=load))
