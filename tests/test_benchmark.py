"""`cnnlab benchmark`: architectures side by side, and a run in every export format.

Counting is checked against hand counts and the published VGG16 and ResNet-50 figures;
timing only for its shape (a table, a CSV, the alternation), with measurements of
0.05 s instead of 1 s: the figures themselves are the lead's to run on a quiet machine.
"""

import csv
import json

import keras
import pytest
import yaml

from cnnlab import catalog
from cnnlab.benchmarking import timing
from tests.conftest import error_line

QUICK = 0.05  # seconds per timed measurement in these tests


@pytest.fixture
def quick(monkeypatch):
    """Timed measurements of `QUICK` seconds (workers get it through their spec)."""
    monkeypatch.setattr(timing, "MEASURE_SECONDS", QUICK)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def table_rows(output, first):
    """The rows of the printed table: the lines from the header (starting with `first`) to the blank line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = lines.index("", start)
    return [line.split("  ")[0].strip() for line in lines[start + 1:end]], lines[start]


# --------------------------------------------------------------------------- counting


def count(model):
    from cnnlab.benchmarking.flops import count_operations

    return count_operations(model)


def test_flops_of_a_hand_countable_model_are_exact():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)  # 64 positions x 3*3*3 x 4 = 6,912 MACs
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))  # 256 x 2 = 512 MACs
    found = count(keras.Model(inputs, outputs))
    # 2 FLOPs per multiply-add, plus a bias add per output value (256 + 2); ReLU and Flatten count 0
    assert found.flops == 2 * 6912 + 256 + 2 * 512 + 2 == 15_106
    assert found.multiply_adds == 6912 + 512
    assert found.by_op == {"Conv2D": 13_824, "BiasAdd": 258, "MatMul": 1024}


def test_multiply_adds_count_every_kind_of_convolution():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)  # 64 * 3*3*3*4 = 6,912
    x = keras.layers.SeparableConv2D(5, 3, padding="same", use_bias=False)(x)  # 64 * (3*3*4 + 4*5) = 3,584
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)  # 64 * 3*3*5 = 2,880
    x = keras.layers.Dense(2, use_bias=False)(keras.layers.Flatten()(x))  # 320 * 2 = 640
    assert count(keras.Model(inputs, x)).multiply_adds == 6912 + 3584 + 2880 + 640


def test_a_grouped_convolution_is_counted_inside_its_nested_function():
    """Keras runs a grouped convolution on TensorFlow as a nested XLA function (ConvNeXt's depthwise 7x7)."""
    inputs = keras.Input((8, 8, 6))
    x = keras.layers.Conv2D(6, 3, padding="same", groups=3, use_bias=False)(inputs)  # 64 * 3*3*2 * 6 = 6,912
    assert count(keras.Model(inputs, x)).multiply_adds == 6912


@pytest.mark.parametrize("name,published,tolerance", [
    ("vgg16", 15.5e9, 0.01),  # Simonyan & Zisserman; 15.47 G counted
    # He et al. 2015, table 1: 3.8e9 "FLOPs" (multiply-adds), stride 2 in the first 1x1 convolution as here and
    # in Keras. The often quoted 4.1 G is ResNet-50 v1.5 (torchvision's), whose stride sits in the 3x3
    # convolution instead: 231,211,008 more multiply-adds (3 x 77,070,336), checked below.
    ("resnet50", 3.8e9, 0.02),
])
def test_counted_multiply_adds_match_the_published_figures(name, published, tolerance):
    from cnnlab.config import ModelConfig
    from cnnlab.models.registry import build_model

    model = build_model(ModelConfig(architecture=name), (224, 224, 3), 1000)
    found, parameters = count(model), model.count_params()
    keras.backend.clear_session()
    assert found.multiply_adds == pytest.approx(published, rel=tolerance)
    assert found.flops == pytest.approx(2 * found.multiply_adds, rel=0.02)  # the rest: biases, BN, pooling, adds
    assert (parameters, found.multiply_adds) == catalog.PARAMETER_COUNTS[name]  # the catalog was counted so
    if name == "resnet50":
        assert found.multiply_adds + 3 * 77_070_336 == pytest.approx(4.1e9, rel=0.01)


# --------------------------------------------------------------------------- architectures


def test_architectures_table_and_csv(cli, quick, tmp_path):
    """slp is measured twice in a worker process (one only: each imports TensorFlow, seconds of this test);
    unet is no classifier: a row with the reason."""
    from cnnlab.config import ModelConfig
    from cnnlab.models.registry import build_model

    out = tmp_path / "bench.csv"
    result = cli("benchmark", "unet", "slp", "--input-shape", "4,4,3", "--batch-size", "8", "--repeats", "2",
                 "-o", out)
    assert result.exit_code == 0, result.output
    names, header = table_rows(result.output, "architecture")
    assert names == ["slp", "unet"]  # the catalog's order
    assert header.split() == ["architecture", "params", "FLOPs", "mult-adds", "train", "img/s", "predict", "img/s",
                              "@1", "predict", "img/s", "@8", "peak", "MiB", "note"]
    assert "10 classes, batch 8: 2 repetition(s)" in result.output and "VmHWM" in result.output
    rows = {row["architecture"]: row for row in read_csv(out)}
    slp = rows["slp"]
    assert int(slp["parameters"]) == build_model(ModelConfig(architecture="slp"), (4, 4, 3), 10).count_params()
    assert int(slp["multiply_adds"]) == 48 * 10 and int(slp["flops"]) == 2 * 480 + 10 + 5 * 10  # bias, softmax
    for figure in ("train_images_per_s", "predict_1_images_per_s", "predict_batch_images_per_s"):
        low, median, high = (float(slp[f"{figure}{end}"]) for end in ("_min", "", "_max"))
        assert 0 < low <= median <= high
    assert int(slp["peak_memory_bytes"]) > 0 and slp["note"] == "" and slp["repeats"] == "2"
    assert "segmentation network" in rows["unet"]["note"]


class FakeWorker:
    """A worker that answers at once and writes down what it was asked (no process, no TensorFlow)."""

    asked = []
    fails = {}  # {architecture: why its build fails}

    def __init__(self, spec):
        import os
        from types import SimpleNamespace

        self.name, self.process = spec.architecture, SimpleNamespace(pid=os.getpid())

    def imported(self):
        return {"baseline_bytes": 1}

    def ask(self, **request):
        (what,) = request
        self.asked.append((self.name, what))
        if what == "build" and self.name in self.fails:
            raise timing.Dropped(self.fails[self.name])
        return {"build": {"parameters": 10, "flops": 30, "multiply_adds": 10, "steps_per_execution": 8},
                "measure": {"train": 1.0, "predict_1": 2.0, "predict_batch": 3.0},
                "memory": {"peak_bytes": 2**20}}[what]

    def quit(self):
        pass

    def close(self):
        self.asked.append((self.name, "close"))


@pytest.mark.parametrize("room", [True, False])
def test_workers_are_held_together_while_memory_allows(cli, monkeypatch, tmp_path, room):
    """With room, both workers are built, then measured in alternation; without, each is measured and ended
    before the next is built (a group each), and the table says so."""
    from cnnlab.benchmarking import architectures, memory

    monkeypatch.setattr(architectures, "Worker", FakeWorker)
    monkeypatch.setattr(FakeWorker, "asked", [])
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**50 if room else 0)
    out = tmp_path / "bench.csv"
    result = cli("benchmark", "mlp", "deep_cnn", "--repeats", "2", "-o", out)
    assert result.exit_code == 0, result.output
    a, b = "mlp", "deep_cnn"
    if room:
        assert FakeWorker.asked == [(a, "build"), (b, "build"), (a, "measure"), (b, "measure"), (b, "measure"),
                                    (a, "measure"), (a, "memory"), (b, "memory"), (a, "close"), (b, "close")]
    else:
        assert FakeWorker.asked == [(a, "build"), (a, "measure"), (a, "measure"), (a, "memory"), (a, "close"),
                                    (b, "build"), (b, "measure"), (b, "measure"), (b, "memory"), (b, "close")]
        assert "Not enough memory for deep_cnn beside mlp" in result.output
    assert ("Measured in 2 groups" in result.output) is not room
    assert [row["group"] for row in read_csv(out)] == (["1", "1"] if room else ["1", "2"])


def test_a_worker_that_fails_is_a_row_with_its_reason(cli, monkeypatch, tmp_path):
    """alexnet cannot take 4x4 images: its worker answers why (and is ended), the others go on."""
    from cnnlab.benchmarking import architectures, memory

    why = "`model.architecture` 'alexnet' cannot take images of (4, 4, 3): negative dimension size"
    monkeypatch.setattr(architectures, "Worker", FakeWorker)
    monkeypatch.setattr(FakeWorker, "asked", [])
    monkeypatch.setattr(FakeWorker, "fails", {"alexnet": why})
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**50)
    out = tmp_path / "bench.csv"
    result = cli("benchmark", "slp", "alex*", "--input-shape", "4,4,3", "--repeats", "1", "-o", out)
    assert result.exit_code == 0, result.output
    assert ("alexnet", "close") in FakeWorker.asked and ("slp", "measure") in FakeWorker.asked
    rows = {row["architecture"]: row for row in read_csv(out)}
    assert rows["alexnet"]["note"] == why and rows["alexnet"]["flops"] == "" and rows["slp"]["note"] == ""
    assert "cannot take images of (4, 4, 3)" in result.output


def test_the_largest_model_is_built_first_and_the_table_keeps_its_order(cli, monkeypatch):
    """vgg16 is expected to take the most memory: it starts first, while the machine is emptiest; another
    joins it only where the memory available holds that one's estimate too."""
    from cnnlab.benchmarking import architectures, memory
    from cnnlab.benchmarking.worker import WorkerSpec

    monkeypatch.setattr(architectures, "Worker", FakeWorker)
    monkeypatch.setattr(FakeWorker, "asked", [])
    monkeypatch.setattr(memory, "peak_bytes", lambda pid=None: 2**20)
    small = architectures.expected_bytes(WorkerSpec("deep_cnn", (224, 224, 3), 1000, 32, 1.0))
    monkeypatch.setattr(memory, "available_bytes", lambda: small + architectures.HEADROOM - 1)
    result = cli("benchmark", "deep_cnn", "vgg16", "--repeats", "1")
    assert result.exit_code == 0, result.output
    assert [name for name, what in FakeWorker.asked if what == "build"] == ["vgg16", "deep_cnn"]
    assert "vgg16 may need about" in result.output and "Not enough memory for deep_cnn beside vgg16" in result.output
    assert table_rows(result.output, "architecture")[0] == ["deep_cnn", "vgg16"]  # the catalog's order


def test_expected_counts_scale_the_catalog_s_to_the_image():
    from cnnlab.benchmarking.worker import WorkerSpec

    params, madds = catalog.PARAMETER_COUNTS["vgg16"]
    assert WorkerSpec("vgg16", (224, 224, 3), 1000, 32, 1.0).expected_counts() == (params, madds)
    assert WorkerSpec("vgg16", (112, 112, 3), 1000, 32, 1.0).expected_counts() == (params, madds / 4)
    assert WorkerSpec("vgg16", (448, 448, 3), 1000, 32, 1.0).expected_counts() == (4 * params, 4 * madds)
    assert WorkerSpec("unet", (224, 224, 3), 1000, 32, 1.0).expected_counts() == (0, 0)


PARENT = """
import sys
from types import SimpleNamespace

from cnnlab.benchmarking import architectures

class Fake:
    def __init__(self, spec):
        self.process = SimpleNamespace(pid=None)
    def imported(self):
        return {}
    def ask(self, **request):
        return {"build": {"parameters": 1}, "measure": {"train": 1.0}, "memory": {"peak_bytes": 1}}[list(request)[0]]
    def quit(self):
        pass
    close = quit

architectures.Worker = Fake
specs = architectures.worker_specs(["mlp", "vgg16"], (224, 224, 3), 1000, 32, 1.0)
architectures.measure_architectures(specs, 2, progress=True, echo=lambda line: None)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""


def test_the_parent_of_the_workers_imports_no_tensorflow():
    """TensorFlow is the workers' alone: the parent (its progress bar too) stays small and starts fast."""
    import subprocess
    import sys

    found = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


READY = "import sys, time; print('{\"ok\": {}}', flush=True); "  # a worker's first answer: imported


@pytest.mark.parametrize("script,ask,why,code", [
    (READY + "time.sleep(60)", True, r"no answer to the build request within 1 s \(hung\?\), and was killed", -9),
    ("import sys; print('boom', file=sys.stderr); sys.exit(3)", False, r"ended \(exit code 3\): boom", 3),
    (READY + "sys.stdin.readline(); print('{\"error\": \"no such\"}', flush=True)", True, "^no such$", 0),
], ids=["hung", "dead", "failing"])
def test_a_worker_that_hangs_dies_or_fails_is_dropped_with_the_reason(monkeypatch, script, ask, why, code):
    """Stand-in workers (no TensorFlow): the parent's side of the protocol, with a 1 s answer timeout."""
    import sys

    from cnnlab.benchmarking import workers
    from cnnlab.benchmarking.worker import WorkerSpec

    monkeypatch.setattr(workers.Worker, "COMMAND", (sys.executable, "-c", script))
    monkeypatch.setattr(workers, "answer_seconds", lambda spec: 1)
    worker = workers.Worker(WorkerSpec("mlp", (8, 8, 1), 10, 4, QUICK))
    try:
        with pytest.raises(timing.Dropped, match=why):
            worker.imported()
            if ask:
                worker.ask(build=True)
    finally:
        worker.close()
    assert worker.process.returncode == code


def test_answers_wait_generously_for_large_models():
    from cnnlab.benchmarking import workers
    from cnnlab.benchmarking.worker import WorkerSpec

    assert workers.answer_seconds(WorkerSpec("mlp", (28, 28, 1), 10, 32, 1.0)) == workers.ANSWER_SECONDS
    assert workers.answer_seconds(WorkerSpec("mlp", (28, 28, 1), 10, 32, 60.0)) == 50 * 60
    assert workers.answer_seconds(WorkerSpec("convnext_xlarge", (224, 224, 3), 1000, 32, 1.0)) > 1000


def test_no_pattern_means_the_seed_networks():
    from cnnlab.commands.benchmark import select

    assert select(()) == list(catalog.SEED_NETWORKS)
    assert all(name in catalog.ARCHITECTURES for name in catalog.SEED_NETWORKS)
    assert select(["resnet5*", "vgg16", "resnet50"]) == ["vgg16", "resnet50", "resnet56", "resnet50v2"]


def test_an_unknown_pattern_is_one_error_line(cli):
    result = cli("benchmark", "mlp", "resnt50")
    line = error_line(result)
    assert result.exit_code == 2 and "no architecture matches 'resnt50'" in line and "'resnet50'" in line
    line = error_line(cli("benchmark", "runs/nothing-here"))
    assert "neither a run, a .keras model nor an architecture pattern" in line


@pytest.fixture
def unwritable(monkeypatch, tmp_path):
    """A folder this process may not write into (as root passes every permission check, by saying so)."""
    from cnnlab import files

    folder = tmp_path / "locked"
    folder.mkdir()
    monkeypatch.setattr(files, "unwritable", lambda path: "permission denied" if path == folder else None)
    return folder


def test_an_unwritable_output_fails_before_measuring(cli, unwritable):
    result = cli("benchmark", "mlp", "-o", unwritable / "bench.csv")
    line = error_line(result)
    assert result.exit_code == 2 and "cannot write the CSV" in line and "permission denied" in line
    assert "Building" not in result.output


def test_repetitions_alternate_and_a_failing_contender_is_dropped():
    seen = []

    def measure(name):
        seen.append(name)
        if name == "b" and seen.count("b") == 2:
            raise timing.Dropped("it died")
        return {"rate": len(seen)}

    spreads, dropped = timing.alternate(["a", "b", "c"], measure, 3)
    assert seen == ["a", "b", "c", "c", "b", "a", "a", "c"]
    assert dropped == {"b": "it died"} and set(spreads) == {"a", "c"}
    assert spreads["a"]["rate"] == timing.Spread(6, 1, 7, 3) and spreads["a"]["rate"].cell() == "6 ±50%"


# --------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch MLP on scikit-learn's digits (360 test images)."""
    from click.testing import CliRunner

    from cnnlab.cli import main

    folder = tmp_path_factory.mktemp("benchmark-run")
    experiment = {"name": "tiny", "seed": 1, "output_dir": str(folder / "runs"),
                  "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
                  "model": {"architecture": "mlp", "dropout": 0.1}, "training": {"epochs": 1},
                  "callbacks": {"reduce_lr_on_plateau": False, "early_stopping": False}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(experiment))
    result = CliRunner().invoke(main, ["train", str(path), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return next((folder / "runs" / "tiny").iterdir())


def test_run_argument_is_one_run_alone(run):
    from cnnlab.commands.benchmark import run_argument

    assert run_argument([str(run)]) == str(run) and run_argument([str(run.parent)]) == str(run.parent)
    assert run_argument([str(run / "model.keras")]) is not None
    assert run_argument(["mlp"]) is None and run_argument([]) is None and run_argument([str(run), "mlp"]) is None


def test_a_run_in_every_format(cli, quick, run, tmp_path, monkeypatch):
    """Keras first, then every format x quantisation; the run's own tflite export is reused; formats whose
    runtime is missing (here: made so for onnx and openvino, to keep the test short) are rows saying so."""
    import cnnlab.export
    from cnnlab.errors import CnnlabError

    assert cli("export", run, "--format", "tflite", "-q").exit_code == 0
    require = cnnlab.export.require_runtime

    def missing(spec):
        if spec.name in ("onnx", "openvino"):
            raise CnnlabError("not installed")
        return require(spec)

    monkeypatch.setattr(cnnlab.export, "require_runtime", missing)
    out = tmp_path / "formats.csv"
    result = cli("benchmark", run, "--repeats", "2", "--batch-size", "16", "-o", out)
    assert result.exit_code == 0, result.output
    names, header = table_rows(result.output, "format")
    assert names == ["keras", "savedmodel", "tflite", "tflite float16", "tflite int8", "onnx", "openvino"]
    assert header.split()[:6] == ["format", "runtime", "size", "accuracy", "agreement", "ms/image"]
    assert "checked on 360 test images; batch 16, 2 repetition(s)" in result.output
    rows = read_csv(out)
    assert [(r["format"], r["quantization"]) for r in rows] == [
        ("keras", "none"), ("savedmodel", "none"), ("tflite", "none"), ("tflite", "float16"), ("tflite", "int8"),
        ("onnx", "none"), ("openvino", "none")]
    keras_row, by_name = rows[0], {(r["format"], r["quantization"]): r for r in rows}
    assert float(keras_row["agreement"]) == 1.0 and keras_row["accuracy"] == keras_row["keras_accuracy"]
    assert by_name["tflite", "none"]["source"] == "the run's export/"
    assert by_name["savedmodel", "none"]["source"] == "exported now"
    for row in rows[:5]:
        assert row["passed"] == "True" and float(row["agreement"]) >= float(row["floor"])
        assert int(row["size_bytes"]) > 0 and 0 < float(row["latency_ms_min"]) <= float(row["latency_ms_max"])
        assert float(row["images_per_s"]) > 0 and row["note"] == ""
    assert int(by_name["tflite", "int8"]["size_bytes"]) < int(by_name["tflite", "none"]["size_bytes"])
    for row in rows[5:]:
        assert "pip install 'cnnlab[export]'" in row["note"] and row["accuracy"] == "" and row["size_bytes"] == ""
    record = json.loads((run / "export" / "model.tflite.json").read_text())
    assert float(by_name["tflite", "none"]["accuracy"]) == pytest.approx(record["check"]["accuracy"])


def test_a_run_without_a_test_split_is_refused_before_its_model_loads(cli, run, monkeypatch):
    from cnnlab.rundir import targets

    read, loaded = targets.load_run_config, []
    monkeypatch.setattr(targets, "load_run_config", lambda folder, overrides=(): read(folder, ["data.test_split=0"]))
    monkeypatch.setattr(targets.Target, "load_model", lambda self, unsafe=False: loaded.append(self))
    result = cli("benchmark", run)
    line = error_line(result)
    assert result.exit_code == 2 and "has no test split" in line and "data.test_split: 0" in line
    assert "name a run trained with data.test_split above 0" in line and "--data-dir" not in line
    assert not loaded


def test_a_run_refuses_an_input_shape_and_checks_its_output_first(cli, run, unwritable):
    result = cli("benchmark", run, "--input-shape", "32,32,3")
    assert result.exit_code == 2 and "leave out --input-shape" in error_line(result)
    result = cli("benchmark", run, "-o", unwritable / "formats.csv")
    assert result.exit_code == 2 and "cannot write the CSV" in error_line(result) and "Run:" not in result.output
