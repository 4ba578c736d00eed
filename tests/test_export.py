"""`cnnlab export`: every format and quantisation of every kind of cnnlab model agrees with Keras.

Three tiny runs on scikit-learn's digits (360 test images, so the 99 % and 97 % floors
leave room for a handful of near-ties): an ``mlp``, a ``deep_cnn`` with
``scaling: standardize`` (a Normalization layer) and a ``mixed_bfloat16`` deep CNN.
Each is exported to every format x quantisation, in-process; the export's own check
must pass and its JSON must say how to feed the artifact.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import error_line

RUNS = {
    "mlp": {"model": {"architecture": "mlp", "dropout": 0.1}},
    "standardize": {"model": {"architecture": "deep_cnn", "dropout": 0.1}, "data": {"scaling": "standardize"}},
    "mixed_bfloat16": {"model": {"architecture": "deep_cnn", "dropout": 0.1},
                       "training": {"precision": "mixed_bfloat16"}},
}
EXPORTS = [("savedmodel", "none"), ("tflite", "none"), ("tflite", "float16"), ("tflite", "int8"),
           ("onnx", "none"), ("openvino", "none")]
NOTES = {"mlp": None, "standardize": "Normalization layer 'scaling' exported as the equal Rescaling",
         "mixed_bfloat16": "float32 copy of a mixed_bfloat16 model"}


def experiment(folder, name, overrides):
    """A tiny digits experiment (the shape of conftest's `write_experiment`), one epoch."""
    base = {"name": name, "seed": 1, "output_dir": str(folder / "runs"),
            "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
            "training": {"epochs": 2, "learning_rate": 0.003},
            "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                          "reduce_lr_on_plateau": False, "early_stopping": False}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three tiny runs, trained once for the module: kind -> run folder (made on first use)."""
    from click.testing import CliRunner

    from cnnlab.cli import main

    folder = tmp_path_factory.mktemp("export-runs")
    made = {}

    def run(kind):
        if kind not in made:
            result = CliRunner().invoke(main, ["train", str(experiment(folder, kind, RUNS[kind])), "-q"],
                                        catch_exceptions=False)
            assert result.exit_code == 0, result.output
            made[kind] = next((folder / "runs" / kind).iterdir())
        return made[kind]

    return run


def exported(cli, run, fmt, quantize, *extra):
    """Export `run`; assert success; return the JSON beside the artifact and the artifact's path."""
    result = cli("export", run, "--format", fmt, "--quantize", quantize, *extra)
    assert result.exit_code == 0, result.output
    path = result.output.strip().splitlines()[-1].removeprefix("Exported: ")
    record = json.loads(open(f"{path}.json").read())
    return record, path, result.output


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(RUNS))
@pytest.mark.parametrize("fmt,quantize", EXPORTS)
def test_every_export_of_every_kind_of_model_agrees_with_keras(runs, cli, kind, fmt, quantize):
    record, path, output = exported(cli, runs(kind), fmt, quantize)
    check = record["check"]
    assert check["passed"] and check["images"] == 360
    assert check["agreement"] >= (0.97 if quantize == "int8" else 0.99), check
    assert "agreement with Keras" in output and "ms per image" in output
    assert (record["format"], record["quantization"], record["run"]) == (fmt, quantize, str(runs(kind)))
    assert record["input"]["shape"] == [None, 8, 8, 1] and record["class_names"] == [str(d) for d in range(10)]
    if NOTES[kind]:
        assert NOTES[kind] in record["export_copy"]
    if quantize == "int8":
        assert record["input"]["dtype"] == "int8" and {"scale", "zero_point"} <= set(record["input"])
        assert record["output"]["dtype"] == "int8"
    else:
        assert record["input"]["dtype"] == "float32"
    suffix = {"savedmodel": "savedmodel", "tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}[fmt]
    assert path.endswith(suffix) and "/export/" in path
    assert not [p for p in (runs(kind) / "export").iterdir() if p.name.startswith(".partial-")]


@pytest.mark.slow
def test_the_onnx_graph_of_a_standardizing_model_has_one_input(runs, cli):
    """The Normalization trap: without the Rescaling swap the graph needs mean and variance as inputs."""
    import onnxruntime

    _, path, _ = exported(cli, runs("standardize"), "onnx", "none")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert len(session.get_inputs()) == 1


@pytest.mark.slow
def test_int8_takes_raw_pixels_through_the_recorded_scale_and_zero_point(runs, cli):
    """A deployer's view: quantise raw pixels with the JSON's numbers, run LiteRT, get Keras's classes."""
    from ai_edge_litert.interpreter import Interpreter

    from cnnlab.data.pipeline import load_data
    from cnnlab.rundir import open_target

    record, path, _ = exported(cli, runs("mlp"), "tflite", "int8")
    opened = open_target(runs("mlp"))
    images, _ = next(iter(load_data(opened.config()).dataset("test")))
    images = np.asarray(images)[:32]
    scale, zero_point = record["input"]["scale"], record["input"]["zero_point"]
    interpreter = Interpreter(model_path=path)
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], [len(images), 8, 8, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8))
    interpreter.invoke()
    got = interpreter.get_tensor(target["index"]).argmax(axis=1)
    expected = opened.load_model().predict(images, verbose=0).argmax(axis=1)
    assert np.mean(got == expected) >= 0.9


@pytest.mark.slow
def test_a_failed_check_is_an_error_and_keeps_the_artifact_only_as_failed(runs, cli, monkeypatch):
    from cnnlab.export import check

    run = runs("mlp")
    shutil.rmtree(run / "export", ignore_errors=True)
    monkeypatch.setitem(check.FLOORS, "none", 1.01)  # no artifact can agree on 101 %
    result = cli("export", run, "--format", "onnx")
    assert result.exit_code == 2
    line = error_line(result)
    assert "agrees with the Keras model on 100.00 %" in line and "under the 101 % required" in line
    assert "kept for inspection as" in line and "model.failed.onnx" in line
    assert not (run / "export" / "model.onnx").exists()
    assert (run / "export" / "model.failed.onnx").is_file()
    assert json.loads((run / "export" / "model.failed.onnx.json").read_text())["check"]["passed"] is False


@pytest.mark.slow
def test_openvino_writes_xml_and_bin_and_a_second_export_replaces_the_first(runs, cli):
    run = runs("mlp")
    exported(cli, run, "openvino", "none")
    _, path, output = exported(cli, run, "openvino", "none")
    assert output.splitlines()[1].startswith("Replaced openvino")  # after the 'Run:' line
    assert (run / "export" / "model.xml").is_file() and (run / "export" / "model.bin").is_file()


@pytest.mark.slow
def test_a_bare_keras_file_exports_with_data_dir_which_also_calibrates_int8(runs, cli, tmp_path):
    from PIL import Image

    from cnnlab.data.pipeline import load_data
    from cnnlab.rundir import open_target

    bare = tmp_path / "bare" / "digits.keras"
    bare.parent.mkdir()
    shutil.copy(runs("mlp") / "model.keras", bare)
    test = load_data(open_target(runs("mlp")).config()).test
    for i, (image, label) in enumerate(zip(test.images[:200], test.labels[:200])):
        (tmp_path / "folder" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image).reshape(8, 8).astype(np.uint8)).save(tmp_path / "folder" / str(label)
                                                                                / f"{i}.png")
    result = cli("export", bare, "--format", "tflite", "--quantize", "int8", "--data-dir", tmp_path / "folder")
    assert result.exit_code == 0, result.output
    assert "Calibrating int8 on the images of" in result.output
    record = json.loads((tmp_path / "bare" / "export" / "model-int8.tflite.json").read_text())
    assert record["run"] is None and record["check"]["images"] == 200


@pytest.mark.slow
def test_export_in_a_fresh_process(runs, tmp_path):
    """``python -m cnnlab export`` with no TARGET: the latest run under ./runs."""
    shutil.copytree(runs("mlp"), tmp_path / "runs" / "mlp" / runs("mlp").name)
    result = subprocess.run([sys.executable, "-m", "cnnlab", "export", "--format", "tflite"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agreement with Keras 100.00 %" in result.stdout or "agreement with Keras 99." in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("export/model.tflite")
    assert (tmp_path / "runs" / "mlp" / runs("mlp").name / "export" / "model.tflite.json").is_file()
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr


@pytest.mark.parametrize("args,expected", [
    (["--format", "onnx", "--quantize", "int8"],
     "--quantize int8 does not apply to --format onnx. Allowed: --format savedmodel with --quantize none; "
     "--format tflite with --quantize none | float16 | int8;"),
    (["--format", "savedmodel", "--quantize", "float16"], "does not apply to --format savedmodel"),
    (["--format", "onx"], "`--format` must be one of savedmodel, tflite, onnx, openvino. Received: 'onx'. "
                          "Did you mean 'onnx'?"),
    (["--format", "tflite", "--quantize", "int4"], "`--quantize` must be one of none, float16, int8. "
                                                   "Received: 'int4'."),
    ([], "Missing option '--format'"),
])
def test_bad_format_or_quantize_is_one_error_line(cli, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)  # no run needed: options are checked first
    result = cli("export", *args)
    assert result.exit_code == 2
    assert expected in error_line(result)


@pytest.mark.parametrize("fmt,module,package", [("onnx", "tf2onnx", "tf2onnx"),
                                                ("tflite", "ai_edge_litert", "ai-edge-litert"),
                                                ("openvino", "openvino", "openvino")])
def test_a_missing_runtime_is_one_error_naming_the_extra(cli, tmp_path, monkeypatch, fmt, module, package):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    result = cli("export", "--format", fmt)
    assert result.exit_code == 2
    line = error_line(result)
    assert f"--format {fmt} needs {package}, which is not installed" in line
    assert 'pip install "cnnlab[export]"' in line


@pytest.mark.slow
def test_output_paths_are_checked_and_a_foreign_file_is_never_replaced(runs, cli, tmp_path):
    run = runs("mlp")
    result = cli("export", run, "--format", "tflite", "-o", tmp_path / "model.onnx")
    assert result.exit_code == 2 and "-o for --format tflite must end in .tflite" in error_line(result)
    foreign = tmp_path / "mine.onnx"
    foreign.write_text("someone else's file")
    result = cli("export", run, "--format", "onnx", "-o", foreign)
    assert result.exit_code == 2 and "is not a cnnlab export" in error_line(result)
    assert foreign.read_text() == "someone else's file"
    bin_only = tmp_path / "ir.bin"
    bin_only.write_text("weights of something else")
    result = cli("export", run, "--format", "openvino", "-o", tmp_path / "ir.xml")
    assert result.exit_code == 2 and "ir.bin" in error_line(result)


def test_the_registry_holds_exactly_the_listed_formats():
    from cnnlab.export import FORMAT_NAMES, FORMATS

    assert tuple(FORMATS.names()) == FORMAT_NAMES


def test_normalization_as_rescaling_is_the_same_function():
    import keras

    from cnnlab.export.prepare import normalization_as_rescaling

    normalization = keras.layers.Normalization(mean=[10.0, 200.0], variance=[4.0, 900.0], dtype="float32")
    normalization.build((None, 3, 3, 2))
    x = np.random.default_rng(0).uniform(0, 255, (4, 3, 3, 2)).astype(np.float32)
    rescaling = normalization_as_rescaling(normalization)
    np.testing.assert_allclose(np.asarray(rescaling(x)), np.asarray(normalization(x)), rtol=1e-5, atol=1e-5)


def test_the_export_copy_of_a_mixed_precision_model_is_float32_with_the_same_weights():
    import keras

    from cnnlab.export.prepare import export_copy, policies

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Rescaling(1 / 255, dtype="mixed_bfloat16", name="scaling")(inputs)
    x = keras.layers.Conv2D(3, 3, dtype="mixed_bfloat16", name="conv")(x)
    x = keras.layers.Flatten(dtype="mixed_bfloat16")(x)
    main = keras.layers.Dense(2, activation="softmax", dtype="float32", name="predictions")(x)
    aux = keras.layers.Dense(2, activation="softmax", dtype="float32", name="aux")(x)
    model = keras.Model(inputs, [main, aux])
    copy, notes = export_copy(model)
    assert policies(copy) == {"float32"} and policies(model) == {"float32", "mixed_bfloat16"}
    assert notes == ["float32 copy of a mixed_bfloat16 model", "main output only (1 auxiliary outputs left out)"]
    assert len(copy.outputs) == 1
    np.testing.assert_array_equal(np.asarray(copy.get_layer("conv").kernel),
                                  np.asarray(model.get_layer("conv").kernel))
