"""`cnnlab visualize` and the anatomy under it: receptive fields, first filters, feature maps, patterns.

The receptive-field rules are checked against the counts the book's "why deep" argument
rests on; the feature-map taps against every zoo network and nested backbones; the
command on a tiny run trained here (its initial filters kept as training starts).
"""

import csv

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from keras import layers
from PIL import Image

from cnnlab import catalog
from cnnlab.config import ModelConfig, build_config
from cnnlab.models import anatomy
from cnnlab.models.registry import build_model
from cnnlab.training.regime import differences
from cnnlab.visual.inside import Insight
from tests.conftest import error_line, make_images


def invoke(*args):
    from cnnlab.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def fields_by_name(model):
    """``{layer: per axis (field, jump)}``, or ``(None, None)`` for a layer that sees the whole image."""
    return {row.path: tuple(zip(row.field, row.jump)) if row.field else (None, None)
            for row in anatomy.layer_table(model)}


# --------------------------------------------------------------------------- receptive fields


def square(field, jump):
    return (field, jump), (field, jump)


def test_stacked_3x3_convolutions_see_5x5_then_7x7_and_pooling_doubles_the_jump():
    x = keras.Input((32, 32, 1))
    y = layers.Conv2D(4, 3, padding="same", name="c1")(x)
    y = layers.Conv2D(4, 3, padding="same", name="c2")(y)
    y = layers.Conv2D(4, 3, padding="same", name="c3")(y)
    y = layers.MaxPooling2D(2, name="pool")(y)
    y = layers.Conv2D(4, 3, padding="same", name="c4")(y)
    y = layers.Conv2D(4, 3, strides=2, dilation_rate=1, name="strided")(y)
    y = layers.Conv2D(4, 3, padding="same", dilation_rate=2, name="dilated")(y)
    y = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D(name="gap")(y))
    fields = fields_by_name(keras.Model(x, y))
    assert fields["c1"] == square(3, 1) and fields["c2"] == square(5, 1) and fields["c3"] == square(7, 1)
    assert fields["pool"] == square(8, 2) and fields["c4"] == square(12, 2)
    assert fields["strided"] == square(16, 4) and fields["dilated"] == square(16 + 2 * 2 * 4, 4)
    assert fields["gap"] == (None, None) and fields["out"] == (None, None)


def test_a_merge_takes_its_widest_input_and_upsampling_divides_the_jump():
    x = keras.Input((16, 16, 1))
    a = layers.Conv2D(2, 3, padding="same", name="a")(x)
    b = layers.Conv2D(2, 5, padding="same", name="b")(x)
    merged = layers.Add(name="add")([a, b])
    down = layers.MaxPooling2D(2, name="down")(merged)
    up = layers.UpSampling2D(2, name="up")(down)
    smooth = layers.UpSampling2D(2, interpolation="bilinear", name="bilinear")(down)
    transposed = layers.Conv2DTranspose(2, 4, strides=2, padding="same", name="transposed")(down)
    resized = layers.Resizing(32, 32, name="resized")(x)  # cnnlab's `upsample` before a backbone
    model = keras.Model(x, [up, smooth, transposed, resized])
    fields = fields_by_name(model)
    assert fields["add"] == square(5, 1) and fields["down"] == square(6, 2) and fields["up"] == square(6, 1)
    assert fields["bilinear"] == square(8, 1)  # one more input step: interpolation mixes two neighbours
    assert fields["transposed"] == square(8, 1)  # a 4x4 kernel at stride 2 mixes two inputs
    assert fields["resized"] == square(2, 0.5)


def test_asymmetric_kernels_pointwise_dense_and_squeeze_excitation():
    x = keras.Input((16, 16, 3))
    y = layers.Conv2D(4, (1, 7), padding="same", name="one_by_seven")(x)
    y = layers.Conv2D(4, (7, 1), padding="same", name="seven_by_one")(y)
    y = layers.Dense(4, name="pointwise")(y)  # ConvNeXt's 1x1 convolution: a dense layer on each pixel
    scale = layers.Dense(4, activation="sigmoid", name="excite")(layers.GlobalAveragePooling2D(keepdims=True)(y))
    y = layers.Multiply(name="scaled")([y, scale])
    y = layers.Dense(3, name="out")(layers.Flatten(name="flat")(y))
    rows = {row.path: row for row in anatomy.layer_table(keras.Model(x, y))}
    assert rows["one_by_seven"].field == (1, 7) and rows["one_by_seven"].window == "1x7 /1"
    assert rows["seven_by_one"].field == (7, 7) and rows["pointwise"].field == (7, 7)
    assert rows["scaled"].field == (7, 7)  # the excitation's 1x1 scale is broadcast, not a whole-image view
    assert rows["flat"].field is None and rows["out"].field is None
    cells = anatomy.table_cells(rows["one_by_seven"])
    assert cells[5:] == ("1x7", "1")


def test_a_graph_deeper_than_pythons_recursion_allows_is_walked():
    x = keras.Input((8, 8, 1))  # 600 layers: 1,200 frames for a recursive walk (EfficientNet-B7 is deeper)
    y = x
    for _ in range(600):
        y = layers.Activation("relu")(y)
    y = layers.Conv2D(1, 3, padding="same", name="last")(y)
    assert fields_by_name(keras.Model(x, y))["last"] == square(3, 1)


def nested_model():
    """A keras.applications base nested as one layer, as a saved transfer model holds it."""
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None)
    x = keras.Input((32, 32, 3))
    y = base(layers.Rescaling(1 / 127.5, offset=-1, name="scaling")(x))
    y = layers.Dense(3, activation="softmax", name="predictions")(layers.GlobalAveragePooling2D(name="gap")(y))
    return keras.Model(x, y), base


def test_a_nested_backbones_layers_are_rows_whose_fields_continue_the_outer_ones():
    model, base = nested_model()
    rows = anatomy.layer_table(model)
    names = [row.path for row in rows]
    assert f"{base.name}/Conv1" in names and names.index(base.name) < names.index(f"{base.name}/Conv1")
    fields = {row.path: (row.field, row.jump) for row in rows}
    assert fields[f"{base.name}/Conv1"] == ((3, 3), (2, 2))
    assert fields[base.name] == fields[f"{base.name}/out_relu"]
    assert sum(row.params for row in rows if row.depth == 0) == model.count_params()


def test_the_table_lines_keep_the_layers_that_change_the_field():
    model = build_model(ModelConfig(architecture="vgg11"), (32, 32, 3), 10)
    lines = anatomy.table_lines(anatomy.layer_table(model), compact=True)
    assert lines[0].split()[:2] == ["layer", "type"]
    assert any(line.startswith("block1_conv1") and line.split()[-2:] == ["3", "1"] for line in lines)
    assert "layers.csv has every one" in lines[-1]


# --------------------------------------------------------------------------- first weights, blocks, taps


def test_initial_weights_are_kept_once_and_read_back(tmp_path):
    model = build_model(ModelConfig(architecture="simple_cnn"), (12, 12, 1), 3)
    anatomy.save_initial(model, tmp_path)
    kept = anatomy.read_initial(tmp_path)
    assert kept.layer == "block1_conv1" and kept.kind == "conv" and kept.kernel.shape == (5, 5, 1, 30)
    model.get_layer("block1_conv1").kernel.assign(np.zeros((5, 5, 1, 30)))
    anatomy.save_initial(model, tmp_path)  # a second fit (fine-tuning's phase 2) keeps the first record
    assert np.abs(anatomy.read_initial(tmp_path).kernel).sum() > 0
    assert anatomy.read_initial(tmp_path / "none") is None and anatomy.read_initial(None) is None


def test_an_mlps_first_weights_are_its_dense_columns_drawn_as_images():
    model = build_model(ModelConfig(architecture="mlp"), (12, 12, 1), 3)
    first = anatomy.first_weights(model)
    assert first.kind == "dense" and first.as_images((12, 12, 1)).shape == (anatomy.FIRST_UNITS, 12, 12, 1)
    inside = Insight.of(model, np.zeros((1, 12, 12, 1)), steps=1)
    assert inside.maps == [] and "No convolutional layer" in inside.notes[0]
    assert set(inside.pictures()) == {"filters.png"}


ZOO = [name for name, spec in catalog.ARCHITECTURES.items() if spec.family != "keras.applications"]
BACKBONES = ["mobilenet_v2", "efficientnet_b0", "densenet121", "convnext_tiny"]


@pytest.mark.parametrize("name", ZOO + BACKBONES)
def test_every_zoo_network_has_blocks_whose_maps_the_tap_reads(name):
    classes = 3
    shape = (64, 64, 3) if name in ("alexnet", "googlenet") else (32, 32, 3)
    thin = {"width": 0.125} if "segmentation" in catalog.ARCHITECTURES[name].tasks else {}  # FCN's fc6 is huge
    model = build_model(ModelConfig(architecture=name, aux_logits=name == "googlenet", **thin), shape, classes)
    ends = anatomy.block_ends(model)
    if name in ("slp", "mlp"):
        assert ends == []
        return
    assert 1 <= len(ends) <= 8
    values = anatomy.Tap(model, [layer for layer, _ in ends])(np.zeros((1, *shape), "float32"))
    for layer, _ in ends:
        assert tuple(values[id(layer)].shape[1:]) == anatomy.output_shape(layer)
    assert anatomy.first_weights(model).kind == "conv"
    rows = anatomy.layer_table(model)
    assert all(row.field is None or min(row.field) >= 1 for row in rows)
    convolutions = [row for row in rows if row.kind == "Conv2D"]
    assert convolutions[0].field[0] == int(convolutions[0].window.split("x")[0])  # the first sees its kernel
    # no convolution of a map sees "all" (a dense layer on a map, a squeeze-and-excitation's scale between them)
    assert all(c.field is not None for c in convolutions if c.shape[:2] != (1, 1))
    keras.backend.clear_session()


def test_a_nested_backbone_is_tapped_inside_and_gradients_reach_the_input():
    import tensorflow as tf

    model, base = nested_model()
    ends = anatomy.block_ends(model)
    assert all(path.startswith(f"{base.name}/") for _, path in ends)
    images = tf.Variable(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(anatomy.Tap(model, [ends[0][0]])(images)[id(ends[0][0])])
    assert float(tf.norm(tape.gradient(loss, images))) > 0
    assert anatomy.first_weights(model).layer == f"{base.name}/Conv1"


def test_a_nested_model_called_on_the_input_itself_is_tapped():
    inner = build_model(ModelConfig(architecture="simple_cnn"), (12, 12, 1), 3)
    x = keras.Input((12, 12, 1))
    model = keras.Model(x, layers.Activation("linear", name="same")(inner(x)))
    ends = anatomy.block_ends(model)
    values = anatomy.Tap(model, [layer for layer, _ in ends])(np.zeros((1, 12, 12, 1), "float32"))
    assert [path for _, path in ends] == [f"{inner.name}/block1_conv1", f"{inner.name}/block1_pool"]
    assert tuple(values[id(ends[0][0])].shape) == (1, 8, 8, 30)


def test_an_averaged_ensemble_shows_its_first_member():
    members = [build_model(ModelConfig(architecture="simple_cnn"), (12, 12, 1), 3) for _ in range(2)]
    for number, member in enumerate(members):
        member.name = f"member_{number}"
    x = keras.Input((12, 12, 1))
    ensemble = keras.Model(x, layers.Average()([member(x) for member in members]))
    inside = Insight.of(ensemble, np.zeros((1, 12, 12, 1)), steps=1)
    assert "its first member" in inside.notes[0] and inside.maps[0][0][0] == "block1_conv1"


def test_a_unet_under_bfloat16_gives_float32_maps_and_patterns():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(ModelConfig(architecture="unet", width=0.125), (16, 16, 1), 3)
        inside = Insight.of(model, np.full((1, 16, 16, 1), 100.0), steps=2)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert all(values.dtype == np.float32 and np.isfinite(values).all() for _, values in inside.maps[0])
    sizes = [values.shape[0] for _, values in inside.maps[0]]
    assert sizes[0] == 16 and min(sizes) < 16 and sizes[-1] == 16  # down the encoder, back up the decoder
    deepest = min(sizes)
    assert [p[2].shape[1] for p in inside.found] and all(np.isfinite(p[2]).all() for p in inside.found)
    assert inside.found[-1][0] in [path for path, values in inside.maps[0] if values.shape[0] == deepest]
    assert set(inside.pictures()) == {"filters.png", "feature_maps_1.png", "patterns.png"}


def test_gradient_ascent_raises_the_chosen_channel_and_patterns_are_pictures():
    from cnnlab.visual.inside import climb, patterns, strongest

    keras.utils.set_random_seed(3)
    model = build_model(ModelConfig(architecture="simple_cnn"), (12, 12, 1), 3)
    layer = model.get_layer("block1_conv1")
    tap = anatomy.Tap(model, [layer])
    start = 128.0 + np.random.default_rng(0).uniform(-16, 16, (2, 12, 12, 1))
    picks = strongest(np.asarray(tap(start.astype("float32"))[id(layer)])[0], 2)  # live ReLU channels
    climbed = climb(tap, layer, picks, start, steps=10)
    for i, channel in enumerate(picks):
        before = float(np.asarray(tap(start.astype("float32"))[id(layer)])[i, ..., channel].mean())
        after = float(np.asarray(tap(climbed)[id(layer)])[i, ..., channel].mean())
        assert after > before
    assert climbed.min() >= 0 and climbed.max() <= 255
    (path, chosen, images), = patterns(model, [(layer, "block1_conv1")], [picks], steps=2)
    assert chosen == list(picks) and images.shape == (2, 10, 10, 1) and images.min() == 0 and images.max() == 1


# --------------------------------------------------------------------------- what the training curves mean


def config(**sections):
    return build_config({"name": "t", "data": {"dataset": "digits"}, **sections}, "test")


def test_the_reasons_training_figures_differ_are_named():
    model = build_model(ModelConfig(architecture="deep_cnn"), (28, 28, 1), 10)
    reasons = differences(model, config(augmentation={"rotation_range": 10, "mixup_alpha": 0.2},
                                        training={"label_smoothing": 0.1}))
    text = "; ".join(reasons)
    assert "dropout drops units while training (2 layer(s), rate 0.5)" in text
    assert "mixup blend(s)" in text and "augmentation changes every training image" in text
    assert "label smoothing (0.1)" in text
    plain = build_model(ModelConfig(architecture="simple_cnn"), (28, 28, 1), 10)
    assert differences(plain, config()) == []
    mixed_only = differences(plain, config(augmentation={"mixup_alpha": 0.2}))
    assert len(mixed_only) == 1 and "mixup" in mixed_only[0]
    regularized = build_model(ModelConfig(architecture="simple_cnn", kernel_regularizer={"l2": 1e-4}), (28, 28, 1), 10)
    assert any("weight penalty" in r for r in differences(regularized, config()))


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("visualize")
    x, y = make_images(20)
    np.savez(root / "tiny.npz", x_train=x[..., 0], y_train=y, x_test=x[:9, ..., 0], y_test=y[:9])
    experiment = {"name": "tiny", "seed": 1, "output_dir": str(root / "runs"),
                  "data": {"dataset": "npz", "path": str(root / "tiny.npz"), "validation_split": 0.2},
                  "model": {"architecture": "simple_cnn"}, "training": {"epochs": 2, "learning_rate": 0.01}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(experiment))
    result = invoke("train", root / "tiny.yaml", "--quiet")
    assert result.exit_code == 0, result.output
    return next((root / "runs" / "tiny").iterdir())


def test_visualize_draws_the_runs_filters_maps_patterns_and_table(run, monkeypatch):
    assert (run / anatomy.INITIAL_FILE).is_file()  # kept as training started
    monkeypatch.chdir(run.parent.parent.parent)
    result = invoke("visualize")
    assert result.exit_code == 0, result.output
    folder = run / "visualize"
    assert result.output.strip().endswith(f"Wrote {folder.relative_to(run.parent.parent.parent)}")
    assert "block1_conv1" in result.output and "receptive field" in result.output
    names = {p.name for p in folder.iterdir()}
    assert names == {"filters.png", "feature_maps_1.png", "feature_maps_2.png", "feature_maps_3.png",
                     "patterns.png", "layers.csv"}
    with open(folder / "layers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    conv = next(r for r in rows if r["layer"] == "block1_conv1")
    assert [conv[k] for k in ("output shape", "window", "receptive field", "jump")] == ["8x8x30", "5x5 /1", "5", "1"]
    before, after = anatomy.read_initial(run), anatomy.first_weights(keras.saving.load_model(run / "model.keras"))
    assert not np.allclose(before.kernel, after.kernel)  # training moved them
    assert Image.open(folder / "filters.png").size[0] > 600  # two panels: before and after


def test_visualize_given_images_draws_theirs_into_the_folder_asked(run, tmp_path):
    x, _ = make_images(1)
    Image.fromarray(x[0, ..., 0]).resize((30, 20)).save(tmp_path / "one.png")  # any size: fitted like predict
    result = invoke("visualize", run, tmp_path / "one.png", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("feature_maps_*.png")) == ["feature_maps_1.png"]


@pytest.mark.parametrize("case", ["corrupt", "missing", "output_is_a_file", "bare_model_without_images",
                                  "too_many"])
def test_visualize_bad_input_is_one_error_line(case, run, tmp_path):
    image = tmp_path / "bad.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "bare.keras").write_bytes((run / "model.keras").read_bytes())
    arguments = {"corrupt": [run, image], "missing": [run, tmp_path / "nothing.png"],
                 "output_is_a_file": [run, "-o", image], "bare_model_without_images": [tmp_path / "bare.keras"],
                 "too_many": [run, *[image] * 17]}[case]
    result = invoke("visualize", *arguments)
    assert result.exit_code == 2
    expected = {"corrupt": "cannot read", "missing": "does not exist", "output_is_a_file": "is a file",
                "bare_model_without_images": "is a bare model", "too_many": "at most 16"}[case]
    assert expected in error_line(result)
