"""OpenVINO IR (``.xml`` + ``.bin``), checked with the OpenVINO runtime on the CPU in float32.

OpenVINO's CPU plugin infers in bfloat16 on processors that have it unless told
otherwise, which costs agreement: the check (and the JSON's advice to deployers)
compiles with ``INFERENCE_PRECISION_HINT: f32``.
"""

import numpy as np

from cnnlab.export.formats import Format, Runtime, register_format, version

COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def write(model, path, quantize, calibration):
    """``model.export(str(path), format="openvino")``: Keras wants the ``.xml`` path as a str."""
    model.export(str(path), format="openvino", verbose=False)


def load(path):
    """The IR at `path` compiled for the CPU with float32 inference."""
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", COMPILE_CONFIG)
    request = compiled.create_infer_request()

    def predict(images):
        request.infer({0: np.asarray(images, np.float32)})
        return np.array(request.get_output_tensor(0).data)

    io = {"input": {"dtype": "float32"}, "output": {"dtype": "float32"}, "compile_config": COMPILE_CONFIG}
    return Runtime(predict, io, version("openvino"))


register_format(Format("openvino", suffix=".xml", quantizations=("none",), modules=("openvino",),
                       packages=("openvino",), write=write, load=load,
                       companions=(".bin",)))
