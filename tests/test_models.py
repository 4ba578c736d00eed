"""The model zoo, driven by the registry: shapes, names, fidelity to the papers, one training step."""

import inspect
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from cnnlab import catalog
from cnnlab.config import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.registry import PRETRAINED, build_model, get_model, list_models
from cnnlab.registry import Registry

ZOO = [n for n in list_models() if get_model(n).meta["family"] != "keras.applications"]
APPLICATIONS = [n for n in list_models() if get_model(n).meta["family"] == "keras.applications"]
SAMPLE_APPLICATIONS = ["mobilenet_v2", "resnet50v2", "efficientnet_b0", "inception_v3"]
SHAPES = [(28, 28, 1), (32, 32, 3), (224, 224, 3)]
PIXEL = {n for n in ZOO if "segmentation" in catalog.ARCHITECTURES[n].tasks}  # a class per pixel (narrowed here)


def one_per_builder():
    """One architecture per builder: the other variants differ only in their row of a spec
    table (VGG_SPECS, RESNET_SPECS...), which the shape and parameter-count tests cover."""
    seen, out = set(), []
    for name in ZOO:
        entry = get_model(name)
        key = (entry.meta["family"], entry.fn.__qualname__)
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out + ["resnet50", "mobilenet_v2"]  # the bottleneck block; a keras.applications backbone


def build(name, shape=(32, 32, 3), classes=10, **options):
    return build_model(ModelConfig(architecture=name, **options), shape, classes)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_the_registry_has_the_whole_zoo():
    expected = {"slp", "mlp", "simple_cnn", "deep_cnn", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet",
                "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                "mobilenet_v2", "resnet50v2", "efficientnet_b0", "inception_v3", "mobilenet_v3_small"}
    assert expected <= set(list_models())


def test_unknown_and_duplicate_names_fail_loudly():
    with pytest.raises(ConfigError, match="model.architecture.*Did you mean 'vgg16'"):
        get_model("vgg-16")
    registry = Registry("thing")
    registry.add("a", print)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", print)


@pytest.mark.parametrize("name", ZOO + SAMPLE_APPLICATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_builds_at_every_input_shape_with_unique_layer_names(name, shape):
    model = build(name, shape, classes=7, **({"width": 0.25} if name in PIXEL else {}))
    assert model.output_shape == ((None, *shape[:2], 7) if name in PIXEL else (None, 7))
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert names[-1] == "predictions"
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(APPLICATIONS) - set(SAMPLE_APPLICATIONS)))
def test_every_keras_application_builds_on_small_images(name):
    assert build(name, (32, 32, 3), classes=5).output_shape == (None, 5)
    keras.backend.clear_session()


@pytest.mark.parametrize("name, application", [("vgg16", "VGG16"), ("vgg19", "VGG19"),
                                               ("resnet50", "ResNet50"), ("resnet101", "ResNet101")])
def test_exactly_the_parameters_of_keras_applications(name, application):
    ours = build(name, (224, 224, 3), 1000, head="flatten") if name.startswith("vgg") else build(
        name, (224, 224, 3), 1000)
    reference = getattr(keras.applications, application)(weights=None)
    assert ours.count_params() == reference.count_params()
    assert {"vgg16": 138_357_544, "vgg19": 143_667_240, "resnet50": 25_636_712,
            "resnet101": 44_707_176}[name] == ours.count_params()
    keras.backend.clear_session()


@pytest.mark.parametrize("name, shape, classes, low, high", [
    ("resnet18", (224, 224, 3), 1000, 11.69e6 * 0.99, 11.69e6 * 1.01),
    ("resnet34", (224, 224, 3), 1000, 21.80e6 * 0.99, 21.80e6 * 1.01),
    ("googlenet", (224, 224, 3), 1000, 6.5e6, 7.1e6),
    ("alexnet", (224, 224, 3), 1000, 58e6, 63e6),
    ("resnet20", (32, 32, 3), 10, 0.27e6 * 0.97, 0.27e6 * 1.03),
    ("resnet56", (32, 32, 3), 10, 0.85e6 * 0.97, 0.85e6 * 1.03),
    ("resnet110", (32, 32, 3), 10, 1.7e6 * 0.97, 1.7e6 * 1.03),
])
def test_parameter_counts_match_the_papers(name, shape, classes, low, high):
    assert low <= trainable(build(name, shape, classes)) <= high
    keras.backend.clear_session()


def test_deep_cnn_is_the_books_network():
    model = build("deep_cnn", (28, 28, 1), 10)
    # conv 160 + 2,320 + 4,640 + 9,248 + 18,496 + 36,928, dense 51,250 + 510 (Deep Learning from Scratch ch.8)
    assert model.count_params() == 123_552
    assert model.get_layer("block3_pool").output.shape[1:] == (4, 4, 64)
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == \
        [16, 16, 32, 32, 64, 64]


def test_layers_are_named_by_place():
    resnet = build("resnet50", (224, 224, 3), 1000)
    for name in ("conv1_conv", "conv3_block2_1_conv", "conv3_block2_add", "conv5_block3_out", "predictions"):
        resnet.get_layer(name)
    googlenet = build("googlenet", (224, 224, 3), 1000)
    for name in ("inception4a_5x5_reduce", "inception3a_pool_proj", "inception5b_output"):
        googlenet.get_layer(name)
    build("vgg16").get_layer("block3_conv2")
    keras.backend.clear_session()


@pytest.mark.parametrize("name", one_per_builder())
def test_one_training_step_lowers_the_loss(name):
    keras.utils.set_random_seed(0)
    model = build(name, (16, 16, 1), classes=3, **({"width": 0.25} if name in PIXEL else {}))
    x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 1)).astype("float32")
    if name in PIXEL:  # a class per pixel: masks (each of one class, which FCN-32s's coarse scores can fit)
        y = np.broadcast_to((np.arange(8) % 3)[:, None, None], (8, 16, 16)).astype("int32")
        loss = "sparse_categorical_crossentropy"
    else:
        y, loss = keras.utils.to_categorical(np.arange(8) % 3, 3), "categorical_crossentropy"
    model.compile(keras.optimizers.Adam(1e-3), loss, run_eagerly=True)
    # train_on_batch returns the loss of the forward pass before its update (training mode).
    losses = [float(model.train_on_batch(x, y)) for _ in range(6)]
    assert min(losses[-2:]) < losses[0], losses
    keras.backend.clear_session()


def test_options_are_honoured():
    relu = build("vgg11", activation="relu")
    gelu = build("vgg11", activation="gelu", batch_norm=True, kernel_initializer="glorot_uniform")
    assert "block1_conv1_gelu" in [layer.name for layer in gelu.layers]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in gelu.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in relu.layers)
    assert build("vgg11", (64, 64, 3), head="gap").count_params() < build("vgg11", (64, 64, 3)).count_params()
    reg = build("mlp", kernel_regularizer={"l2": 1e-4})
    assert reg.get_layer("fc1").kernel_regularizer is not None
    lrn = build("alexnet", (224, 224, 3), local_response_norm=True)
    assert lrn.get_layer("conv1_lrn") is not None
    keras.backend.clear_session()


def test_an_option_an_architecture_cannot_honour_is_an_error():
    with pytest.raises(ConfigError, match="model.batch_norm.*not an option of 'resnet50'"):
        build("resnet50", batch_norm=True)
    with pytest.raises(ConfigError, match="model.local_response_norm.*not an option of 'vgg16'"):
        build("vgg16", local_response_norm=True)
    with pytest.raises(ConfigError, match="model.weights.*'deep_cnn' has no pretrained weights"):
        build("deep_cnn", weights="imagenet")
    with pytest.raises(ConfigError, match="model.activation"):
        build("mlp", activation="rleu")


def test_googlenet_auxiliary_classifiers_are_extra_outputs():
    model = build("googlenet", (224, 224, 3), 10, aux_logits=True)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 10)] * 3
    assert model.output_names[0] == "predictions"
    keras.backend.clear_session()


def test_local_weights_file_for_an_application(tmp_path):
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=1.0)
    for w in base.weights:
        w.assign(np.full(w.shape, 0.01, dtype=w.dtype))
    path = tmp_path / "mobilenet.weights.h5"
    base.save_weights(path)
    model = build("mobilenet_v2", (32, 32, 3), 4, weights=str(path))
    assert np.allclose(model.get_layer("Conv1").get_weights()[0], 0.01)
    with pytest.raises(ConfigError, match="no such file"):
        build("mobilenet_v2", weights=str(tmp_path / "missing.h5"))
    keras.backend.clear_session()


@pytest.mark.slow
def test_googlenet_with_auxiliary_heads_trains_checkpoints_and_evaluates(tmp_path):
    from cnnlab.commands.evaluate import evaluate
    from cnnlab.commands.train import train
    from cnnlab.config import build_config

    cfg = build_config({"output_dir": str(tmp_path), "name": "aux",
                        "data": {"dataset": "digits", "batch_size": 32, "image_size": [16, 16]},
                        "model": {"architecture": "googlenet", "aux_logits": True},
                        "training": {"epochs": 2, "steps_per_epoch": 2},
                        "callbacks": {"model_checkpoint": {"monitor": "val_accuracy"},
                                      "early_stopping": {"monitor": "val_accuracy", "patience": 2}}})
    run = train(cfg, echo=lambda *_: None, verbose=0)
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val_predictions_accuracy" in header and "aux1_predictions_loss" in header
    assert (run / "model.keras").is_file()
    assert evaluate(run, echo=lambda *_: None)["images"] == 360
    keras.backend.clear_session()


# --------------------------------------------------------------------------- registration and the catalog

# The modules through which a command first reaches the registry; applications-before-vgg once
# registered vgg16 twice (the family order is fixed in cnnlab/models/__init__.py since).
FIRST_IMPORTS = ["cnnlab.models.applications", "cnnlab.models.vgg", "cnnlab.models.registry",
                 "cnnlab.commands.finetune", "cnnlab.rundir.targets"]


@pytest.fixture(scope="module")
def vgg16_weights(tmp_path_factory):
    """Weights of VGG16 without its top at 32x32, as a local ``model.weights`` file."""
    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    keras.backend.clear_session()
    return path


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_registration_does_not_depend_on_which_module_is_imported_first(module, vgg16_weights):
    code = textwrap.dedent(f"""
        import importlib
        importlib.import_module({module!r})
        from cnnlab import catalog
        from cnnlab.config import ModelConfig
        from cnnlab.models.registry import build_model, list_models
        assert list_models() == list(catalog.ARCHITECTURES), list_models()
        model = build_model(ModelConfig(architecture="vgg16", weights={str(vgg16_weights)!r}), (32, 32, 3), 4)
        assert model.name == "vgg16" and model.output_shape == (None, 4)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_the_registry_holds_exactly_the_catalog():
    assert list_models() == list(catalog.ARCHITECTURES)
    assert sorted(PRETRAINED.names()) == sorted(catalog.APPLICATIONS)
    for name in list_models():
        assert get_model(name).meta["options"] == catalog.ARCHITECTURES[name].options


def test_the_catalog_lists_every_keras_application():
    from cnnlab.models.applications import discover

    found = {name: (module, constructor.__name__) for name, module, constructor in discover()}
    assert found == catalog.APPLICATIONS, "a Keras upgrade changed keras.applications: update cnnlab.catalog"


def test_a_registry_takes_only_catalogued_names():
    with pytest.raises(ValueError, match="not in cnnlab.catalog"):
        Registry("data.scaling").add("sepia", print)
    from cnnlab.models.registry import register_model

    with pytest.raises(ValueError, match="not in cnnlab.catalog"):
        register_model("vgg17")(print)


@pytest.mark.parametrize("name", sorted(catalog.OPTIMIZERS))
def test_optimizer_arguments_are_keras_own(name):
    spec = catalog.OPTIMIZERS[name]
    params = inspect.signature(getattr(keras.optimizers, spec.keras_class)).parameters
    keras_args = {p: v.default for p, v in params.items() if p not in ("learning_rate", "name", "kwargs")}
    assert set(keras_args) == set(spec.args)
    for arg, default in keras_args.items():
        kind = spec.args[arg]
        assert catalog.value_problem(default, kind) is None, (arg, default, kind)
    assert set(spec.defaults) <= set(spec.args)


def test_schedules_take_the_catalog_arguments():
    from cnnlab.training.optimizers import SCHEDULES

    assert SCHEDULES.names() == list(catalog.SCHEDULES)
    for entry in SCHEDULES.entries():
        params = list(inspect.signature(entry.fn).parameters)[3:]  # after lr, steps, epochs
        assert params == list(catalog.SCHEDULES[entry.name]), entry.name


def test_activations_and_initializers_are_keras_own():
    public = {n for n in dir(keras.activations) if not n.startswith("_")} - {"get", "serialize", "deserialize"}
    assert public - set(catalog.ACTIVATIONS) == {"threshold"}  # needs arguments
    x = keras.ops.ones((2, 4))
    for name in catalog.ACTIVATIONS:
        keras.activations.get(name)(x)
    snake = {n for n in dir(keras.initializers) if n.islower() and not n.startswith("_")}
    assert snake - set(catalog.INITIALIZERS) == {"get", "serialize", "deserialize", "constant", "stft"}
    for name in catalog.INITIALIZERS:
        keras.initializers.get(name)((4, 4))


def test_too_small_images_are_one_config_error():
    with pytest.raises(ConfigError, match=r"'deep_cnn' cannot take images of \(2, 2, 1\).*data.image_size") as info:
        build("deep_cnn", (2, 2, 1))
    assert "\n" not in str(info.value)
    keras.backend.clear_session()


def test_every_registry_holds_exactly_its_catalog_list():
    from cnnlab.data.augment import ENGINES
    from cnnlab.data.scaling import SCALINGS
    from cnnlab.data.sources import SOURCES
    from cnnlab.training.optimizers import OPTIMIZERS

    assert sorted(SOURCES.names()) == sorted(catalog.DATASETS)
    assert SCALINGS.names() == list(catalog.SCALINGS)
    assert ENGINES.names() == list(catalog.ENGINES)
    assert OPTIMIZERS.names() == list(catalog.OPTIMIZERS)
