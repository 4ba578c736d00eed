"""`task: segmentation`: a class per pixel, from an npz of masks or an images/ + masks/ folder; the networks
(FCN-32s/16s/8s, U-Net), augmentation that moves masks with their images, the metrics, and every command a
user runs on such a run (train, evaluate, predict -o DIR, export, finetune), and the inputs it refuses."""

import csv
import json
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import dotted_experiment, error_line, sigkill_after_epoch, trained_run
from tests.test_backends import CNNLAB, needs_jax

NAMES = ["background", "bright", "dim"]
INTENSITY = {1: 255, 2: 110}  # a square's class -> its pixel value


def canvases(n, rng, height=16, width=24):
    """Canvases of one or two squares, bright (class 1) or dim (class 2), on a black background (class 0)."""
    images = np.zeros((n, height, width), np.uint8)
    masks = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            side = rng.integers(4, 8)
            top, left = rng.integers(0, height - side), rng.integers(0, width - side)
            cls = rng.integers(1, 3)
            images[i, top:top + side, left:left + side] = INTENSITY[cls]
            masks[i, top:top + side, left:left + side] = cls
    noise = rng.integers(0, 30, images.shape)
    return np.clip(images.astype(int) + noise, 0, 255).astype(np.uint8), masks


@pytest.fixture(scope="module")
def segmentation_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    x, y = canvases(320, rng)
    xt, yt = canvases(64, rng)
    path = tmp_path_factory.mktemp("seg") / "squares.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt, class_names=np.array(NAMES))
    return path


BASE = {"name": "seg", "task": "segmentation", "seed": 1, "data": {"batch_size": 16, "validation_split": 0.2},
        "model": {"architecture": "unet", "width": 0.0625, "dropout": 0.0},
        "training": {"epochs": 15, "learning_rate": 0.005},
        "callbacks": {"model_checkpoint": {"monitor": "val_loss"}, "reduce_lr_on_plateau": False,
                      "early_stopping": False}}


def experiment(folder, data, **changes):
    """The experiment file of a tiny U-Net on `data` (``data`` keys), with ``section.key`` `changes`."""
    return dotted_experiment(folder, BASE, {f"data.{k}": v for k, v in data.items()} | changes)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, segmentation_npz):
    """A U-Net run trained on the squares, through the CLI as a user runs it."""
    folder = tmp_path_factory.mktemp("segrun")
    path = experiment(folder, {"dataset": "npz", "path": str(segmentation_npz)},
                      **{"augmentation.horizontal_flip": True})
    return (folder, *trained_run(folder, path))


def test_train_scores_the_run_with_the_segmentation_metrics(trained):
    _, run, output = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"pixel_accuracy", "mean_iou", "iou", "dice", "confusion_matrix", "per_class"}
    assert list(metrics["iou"]) == NAMES
    assert metrics["pixel_accuracy"] > 0.9 and metrics["mean_iou"] > 0.6, metrics["iou"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == metrics["pixels"] == 64 * 16 * 24
    assert (run / "plots" / "confusion_matrix.png").is_file()
    assert "mean IoU" in output and "val_mean_iou" in (run / "history.csv").read_text()


def test_evaluate_scores_alike_and_draws_the_worst_images(trained, cli):
    _, run, _ = trained
    before = json.loads((run / "metrics.json").read_text())
    result = cli("evaluate", str(run), "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["mean_iou"] == pytest.approx(before["mean_iou"], abs=1e-6)
    assert again["pixel_accuracy"] < 1  # the tiny U-Net misses some edge pixels: there are worst images to draw
    assert (run / "plots" / "worst.png").is_file()


def test_predict_writes_index_masks_and_overlays_at_each_image_s_size(trained, cli, tmp_path):
    _, run, _ = trained
    images, _ = canvases(3, np.random.default_rng(7))
    (tmp_path / "in").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).resize((48, 32)).save(tmp_path / "in" / f"{i}.png")  # twice the model's size
    out = tmp_path / "masks"
    result = cli("predict", str(run), str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.output
    for i in range(3):
        with Image.open(out / f"{i}.png") as mask:
            assert mask.mode == "P" and mask.size == (48, 32)
            assert set(np.unique(np.asarray(mask))) <= {0, 1, 2}
        assert (out / f"{i}_overlay.png").is_file()
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["mask"] for r in rows] == ["0.png", "1.png", "2.png"]
    assert all(r["classes"].split()[0].split(":")[0] in NAMES for r in rows)
    table = cli("predict", str(run), str(tmp_path / "in" / "0.png"))
    assert table.exit_code == 0 and "background" in table.output


def test_predict_output_must_be_a_folder(trained, cli, tmp_path):
    _, run, _ = trained
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 24), np.uint8)).save(image)
    (tmp_path / "taken.csv").write_text("x")
    result = cli("predict", str(run), str(image), "-o", str(tmp_path / "taken.csv"))
    assert result.exit_code == 2 and "is a file" in error_line(result)


def test_export_checks_pixel_agreement(trained, cli):
    _, run, _ = trained
    result = cli("export", str(run), "--format", "savedmodel")
    assert result.exit_code == 0, result.output
    record = json.loads(next((run / "export").glob("*.json")).read_text())
    assert record["agreement"] == "pixel" and record["check"]["agreement"] >= 0.99


def test_finetune_trains_the_decoder_first(trained, cli):
    _, run, _ = trained
    result = cli("finetune", str(run), "--freeze", "4", "--set", "finetune.head_epochs=1", "--set",
                 "finetune.epochs=1")
    assert result.exit_code == 0, result.output
    assert "phase: 2" in result.output and "val_mean_iou" in result.output


def test_unet_and_fcn_freeze_their_encoder_in_phase_1():
    from cnnlab.commands.finetune import freeze_base
    from cnnlab.config import ModelConfig
    from cnnlab.models.registry import build_model

    for architecture, first in (("unet", "up4_transpose"), ("fcn8s", "fc6")):
        model = build_model(ModelConfig(architecture=architecture, width=0.0625), (32, 32, 1), 3)
        freeze_base(model)
        trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
        assert first in trainable
        assert not any(name.startswith(("down", "block")) for name in trainable), trainable


def directory_data(root, n, rng, palette=True):
    """``root/images/*.png`` and ``root/masks/*.png`` (palette PNGs, their colours unlike their indices)."""
    images, masks = canvases(n, rng)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        saved = Image.fromarray(mask, mode="P" if palette else "L")
        if palette:
            saved.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * 759)
        saved.save(root / "masks" / f"{i:03d}.png")
    return images, masks


def test_a_folder_of_images_and_palette_masks_trains(tmp_path, cli):
    directory_data(tmp_path / "data", 48, np.random.default_rng(3))
    path = experiment(tmp_path, {"dataset": "directory", "path": str(tmp_path / "data"), "classes": NAMES},
                      **{"training.epochs": 1})
    result = cli("train", str(path))
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs" / "seg").iterdir())
    assert json.loads((run / "class_names.json").read_text()) == NAMES


def test_palette_masks_read_as_indices(tmp_path):
    import tensorflow as tf

    from cnnlab.tasks.segmentation import Segmentation

    _, masks = directory_data(tmp_path, 2, np.random.default_rng(4))
    paths = tf.constant([str(tmp_path / "masks" / f"{i:03d}.png") for i in range(2)])
    read = Segmentation().fit_labels(paths, (8, 12, 1)).numpy()
    assert read.shape == (2, 8, 12)
    np.testing.assert_array_equal(read, masks[:, 1::2, 1::2])  # nearest neighbour at half-pixel centres


@pytest.mark.parametrize("problem, words", [
    ("missing", "no mask"),
    ("size", "but the image"),
    ("values", "are no class"),
])
def test_bad_masks_are_one_error_line(tmp_path, cli, problem, words):
    directory_data(tmp_path / "data", 12, np.random.default_rng(5), palette=False)
    mask = tmp_path / "data" / "masks" / "003.png"
    if problem == "missing":
        mask.unlink()
    elif problem == "size":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask)
    else:
        Image.fromarray(np.full((16, 24), 7, np.uint8)).save(mask)
    path = experiment(tmp_path, {"dataset": "directory", "path": str(tmp_path / "data"), "classes": NAMES})
    result = cli("train", str(path))
    assert result.exit_code == 2 and words in error_line(result)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("changes, words", [
    ({"training.label_smoothing": 0.1}, "label_smoothing is refused for task segmentation"),
    ({"training.class_weight": {"0": 2.0}}, "class_weight for task segmentation is balanced"),
    ({"augmentation.engine": "generator", "augmentation.rotation_range": 10}, "cannot move a mask"),
    ({"augmentation.mixup_alpha": 0.2}, "mixup_alpha is refused for task segmentation"),
    ({"model.architecture": "deep_cnn"}, "one row of class scores per image"),
    ({"data.dataset": "digits", "data.path": None}, "not for task segmentation"),
    ({"callbacks.model_checkpoint": {"monitor": "val_accuracy"}}, "val_mean_iou"),
])
def test_combinations_that_cannot_work_are_one_error_line(tmp_path, cli, segmentation_npz, changes, words):
    path = experiment(tmp_path, {"dataset": "npz", "path": str(segmentation_npz)}, **changes)
    result = cli("train", str(path))
    assert result.exit_code == 2 and words in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_a_pixel_network_is_refused_for_classification(tmp_path, cli):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "digits"}, "model": {"architecture": "unet"}}))
    result = cli("check", str(path))
    assert result.exit_code == 2 and "a class per pixel" in error_line(result)


def test_masks_that_do_not_fit_their_images_are_refused(tmp_path, cli):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((20, 16, 24), np.uint8), y_train=np.zeros((20, 16, 20), np.uint8))
    path = experiment(tmp_path, {"dataset": "npz", "path": str(tmp_path / "bad.npz")})
    result = cli("train", str(path))
    assert result.exit_code == 2 and "one mask per image" in error_line(result)


def test_geometric_augmentation_moves_the_mask_with_its_image():
    """After rotation, shifts, zoom and flips, a mask still marks its image's squares (the mask resampled by
    nearest neighbour, the image bilinearly: they differ along the squares' edges only), colour keys leave
    the mask alone, and pixels brought in from outside are data.ignore_index."""
    import tensorflow as tf

    from cnnlab.config import AugmentationConfig
    from cnnlab.data.augment import augmenter

    _, masks = canvases(16, np.random.default_rng(1))
    images = np.where(masks == 1, 255, np.where(masks == 2, 110, 0)).astype(np.float32)[..., None]
    cfg = AugmentationConfig(rotation_range=20, width_shift_range=0.2, zoom_range=0.2, horizontal_flip=True,
                             vertical_flip=True, fill_mode="constant", brightness_range=(0.95, 1.05))
    x, m = augmenter(cfg, (16, 24, 1), 3, seed=3, masks=255)(images, tf.constant(masks, tf.int32),
                                                             tf.constant([1, 2], tf.int64))
    x, m = x.numpy()[..., 0], m.numpy()
    assert m.dtype == np.int32 and m.shape == masks.shape
    assert (m == 255).any() and set(np.unique(m)) <= {0, 1, 2, 255}
    inside = m != 255
    assert np.mean((m[inside] == 1) == (x[inside] > 180)) > 0.95
    assert np.mean((m[inside] == 0) == (x[inside] < 55)) > 0.95


def test_scores_leave_ignored_pixels_out():
    from cnnlab.tasks.segmentation import scores

    targets = np.array([[[0, 1], [1, 255]]])
    outputs = np.eye(2)[np.array([[[0, 1], [0, 0]]])].astype(np.float32)
    result = scores(outputs, targets, ["a", "b"], ignore_index=255)
    assert result["pixels"] == 3 and result["pixel_accuracy"] == pytest.approx(2 / 3)
    assert result["iou"] == {"a": pytest.approx(1 / 2), "b": pytest.approx(1 / 2)}
    assert result["dice"]["b"] == pytest.approx(2 / 3)
    assert result["confusion_matrix"] == [[1, 0], [1, 1]]


def test_worst_images_and_export_agreement_leave_the_run_s_ignore_index_out():
    """A run with ``data.ignore_index: 7``: its void pixels are no one's error, whatever the model says there."""
    from types import SimpleNamespace

    from cnnlab.tasks import task_of

    task = task_of(SimpleNamespace(task="segmentation"))
    cfg = SimpleNamespace(data=SimpleNamespace(ignore_index=7))
    targets = np.array([[[0, 7], [7, 7]], [[0, 1], [1, 1]]])  # image 0: one valid pixel; image 1: four
    outputs = np.eye(2)[np.array([[[0, 1], [1, 1]], [[0, 1], [1, 0]]])].astype(np.float32)
    assert task.keep(outputs, targets, cfg).tolist() == [1]  # image 0's wrong pixels are all void
    assert task.agreement(targets, outputs, cfg) == (4, 5)  # of the 5 valid pixels, 4 agree


@pytest.mark.parametrize("architecture", ["fcn32s", "fcn16s", "fcn8s", "unet"])
def test_pixel_networks_output_the_image_size(architecture):
    import keras

    from cnnlab.config import ModelConfig
    from cnnlab.models.registry import build_model

    model = build_model(ModelConfig(architecture=architecture, width=0.0625), (40, 52, 3), 5)
    assert model.output_shape == (None, 40, 52, 5)
    assert model.get_layer("predictions").activation is keras.activations.softmax
    keras.backend.clear_session()


def test_fcn_upsampling_starts_as_bilinear_interpolation():
    """A constant score map stays constant through the 32x transposed convolution (away from the border)."""
    import keras

    from cnnlab.models.blocks import BilinearUpsampling

    layer = keras.layers.Conv2DTranspose(2, 64, strides=32, padding="same", use_bias=False,
                                         kernel_initializer=BilinearUpsampling())
    out = np.asarray(layer(np.ones((1, 3, 3, 2), np.float32)))
    assert out.shape == (1, 96, 96, 2)
    np.testing.assert_allclose(out[0, 32:64, 32:64], 1.0, atol=1e-5)
    ramp = np.asarray(layer(np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1).repeat(2, axis=-1)))[0, :, :, 0]
    assert np.all(np.diff(ramp[48, 16:80]) >= -1e-5)  # interpolates between neighbours: monotone along a ramp


def test_oxford_pets_is_read_from_keras_s_cache_with_its_trimaps_as_classes(tmp_path, monkeypatch):
    """The two archives as the dataset ships them, already in Keras's cache (no download): trainval/test by the
    dataset's lists, trimap values 2, 1, 3 as background, pet, border."""
    import tarfile

    from cnnlab.config import DataConfig
    from cnnlab.data.sources import load_raw
    from cnnlab.tasks.segmentation import Segmentation

    work = tmp_path / "work"
    (work / "images").mkdir(parents=True)
    (work / "annotations" / "trimaps").mkdir(parents=True)
    trimap = np.full((10, 12), 2, np.uint8)
    trimap[2:8, 3:9], trimap[2, 3:9] = 1, 3
    names = ["Abyssinian_1", "Abyssinian_2", "beagle_1", "beagle_2"]
    for name in names:
        Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(work / "images" / f"{name}.jpg")
        Image.fromarray(trimap).save(work / "annotations" / "trimaps" / f"{name}.png")
    (work / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\nbeagle_1 2 2 1\n")
    (work / "annotations" / "test.txt").write_text("Abyssinian_2 1 1 1\nbeagle_2 2 2 1\n")
    home = tmp_path / "keras"
    (home / "datasets").mkdir(parents=True)
    for what in ("images", "annotations"):
        with tarfile.open(home / "datasets" / f"oxford_pets_{what}.tar.gz", "w:gz") as archive:
            archive.add(work / what, arcname=what)
    monkeypatch.setenv("KERAS_HOME", str(home))
    raw = load_raw(DataConfig(dataset="oxford_pets", image_size=(8, 8)), Segmentation())
    assert raw.class_names == ["background", "pet", "border"]
    assert len(raw.train) == 2 and len(raw.test) == 2
    with Image.open(raw.train.labels[0]) as mask:
        assert set(np.unique(np.asarray(mask))) == {0, 1, 2} and np.asarray(mask)[5, 5] == 1


def test_tta_moves_each_view_s_scores_back_to_their_pixels():
    """A model that copies its input scores each view's pixels where that view moved them: averaged after
    moving back, every view agrees with the identity (away from the mirrored border)."""
    from cnnlab.inference.tta import Plan

    rng = np.random.default_rng(0)
    images = rng.random((2, 12, 16, 3)).astype(np.float32)
    for plan in (Plan(("identity", "flip_left_right", "flip_up_down")),
                 Plan(("identity", "shift_left", "shift_right", "shift_up", "shift_down"), step=2)):
        averaged = plan.average(np.asarray(plan.expand(images)))
        np.testing.assert_allclose(averaged[:, 2:-2, 2:-2], images[:, 2:-2, 2:-2], atol=1e-6)


def test_evaluate_tta_scores_a_segmentation_run(trained, cli):
    _, run, _ = trained
    result = cli("evaluate", str(run), "--tta")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluations" / "test-tta" / "metrics.json").read_text())
    plain = json.loads((run / "metrics.json").read_text())
    assert metrics["tta"] and metrics["mean_iou"] > plain["mean_iou"] - 0.1


@needs_jax
@pytest.mark.slow
def test_two_workers_train_a_segmentation_run(tmp_path, segmentation_npz):
    """`--workers 2` on JAX: the validation split's top-up weights apply to every pixel of their image."""
    path = experiment(tmp_path, {"dataset": "npz", "path": str(segmentation_npz)},
                      **{"runtime.backend": "jax", "training.epochs": 1, "distribution.timeout": 60})
    result = subprocess.run([*CNNLAB, "train", str(path), "--workers", "2"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    history = (next((tmp_path / "runs" / "seg").iterdir()) / "history.csv").read_text()
    assert "val_mean_iou" in history


def test_balanced_weights_weigh_each_pixel_by_its_class_s_rarity():
    import keras

    from cnnlab.tasks.segmentation import balanced_weights
    from cnnlab.training.losses import WeightedSparseCategoricalCrossentropy

    masks = np.array([[[0, 0, 0, 1], [0, 0, 255, 2]]])  # 5 background, 1 and 1 of the others, 1 ignored
    weights = balanced_weights(masks)
    np.testing.assert_allclose(weights, [7 / (3 * 5), 7 / 3, 7 / 3])
    probs = np.full((1, 2, 4, 3), 1 / 3, np.float32)
    loss = WeightedSparseCategoricalCrossentropy(weights.tolist(), ignore_class=255)
    per_pixel = keras.ops.convert_to_numpy(loss.call(masks, probs))
    np.testing.assert_allclose(per_pixel[0, 1, 2], 0.0)  # the ignored pixel
    np.testing.assert_allclose(per_pixel[0, 0, 3], np.log(3) * 7 / 3, rtol=1e-5)
    plain = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)(masks, probs)
    np.testing.assert_allclose(float(loss(masks, probs)), float(plain) * 7 / 8, rtol=1e-5)  # mean weight 1, 7 of 8


@pytest.mark.slow
def test_a_killed_run_resumes_with_its_balanced_loss(tmp_path, segmentation_npz):
    """SIGKILL after epoch 2, the same command again: the run goes on from epoch 3 with the weighted per-pixel
    loss it was compiled with, and completes."""
    from cnnlab import rundir

    path = experiment(tmp_path, {"dataset": "npz", "path": str(segmentation_npz)},
                      **{"training.epochs": 4, "training.class_weight": "balanced"})
    command = [*CNNLAB, "train", str(path)]
    run = sigkill_after_epoch(command, tmp_path, epoch=2)
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Resuming" in result.stdout + result.stderr
    assert rundir.status(run) == "completed" and len(rundir.read_history(run)) == 4


@pytest.mark.slow
def test_fcn_takes_the_body_of_a_cnnlab_vgg16_run(tmp_path):
    """``model.weights: <a vgg16 run's model.keras>`` copies the body's convolutions by name; a body of another
    width is one error saying what a pretrained body needs."""
    import keras

    from cnnlab.config import ModelConfig
    from cnnlab.errors import ConfigError
    from cnnlab.models.registry import build_model

    vgg = build_model(ModelConfig(architecture="vgg16"), (32, 32, 3), 3)
    vgg.save(tmp_path / "model.keras")
    keras.backend.clear_session()
    fcn = build_model(ModelConfig(architecture="fcn32s", weights=str(tmp_path / "model.keras")), (32, 32, 3), 2)
    for name in ("block1_conv1", "block5_conv3"):
        for ours, theirs in zip(fcn.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    keras.backend.clear_session()
    with pytest.raises(ConfigError, match="needs model.width 1"):
        build_model(ModelConfig(architecture="fcn8s", width=0.5, weights=str(tmp_path / "model.keras")),
                    (32, 32, 3), 2)


def test_a_balanced_loss_is_undone_outside_training(tmp_path, segmentation_npz):
    """With balanced weights the model ends in `PriorCorrection`: training sees the weighted probabilities,
    prediction the probabilities divided back by the weights."""
    import keras

    from cnnlab.config import load_config
    from cnnlab.data.pipeline import load_data
    from cnnlab.models.assemble import build

    cfg = load_config(experiment(tmp_path, {"dataset": "npz", "path": str(segmentation_npz)},
                                 **{"training.class_weight": "balanced"}))
    model = build(cfg, load_data(cfg))
    assert not isinstance(model.input, list)  # a SavedModel's signature takes the images, not a list of them
    layer = model.get_layer("prior_correction")
    weights = np.array(layer.class_weights)
    assert weights[0] < 1 < weights[1] and len(weights) == 3
    q = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(q, training=True)), q)
    corrected = keras.ops.convert_to_numpy(layer(q, training=False))
    expected = q / weights
    np.testing.assert_allclose(corrected, expected / expected.sum(-1, keepdims=True), rtol=1e-5)


def test_the_export_copy_takes_the_batch_itself_when_a_model_holds_its_input_as_a_list():
    """Runs trained before `finish_model` used ``inputs[0]`` hold their one input as a list; the SavedModel of
    their export copy still serves a plain batch."""
    import keras

    from cnnlab.export.prepare import export_copy

    inputs = keras.Input((8, 12, 1))
    listed = keras.Model([inputs], keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    assert isinstance(listed.input, list)
    copy, _ = export_copy(listed)
    assert not isinstance(copy.input, (list, tuple))
    np.testing.assert_allclose(copy.predict(np.ones((2, 8, 12, 1)), verbose=0),
                               listed.predict(np.ones((2, 8, 12, 1)), verbose=0), rtol=1e-6)


def test_report_and_visualize_a_segmentation_run(trained, cli, tmp_path):
    _, run, _ = trained
    result = cli("report", str(run), "-o", str(tmp_path / "page.html"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    measured = page.split('data-section="measured"')[1].split("</section>")[0]
    assert "mean_iou" in measured and "train, as logged during epoch" in measured
    assert "augmentation changes every training image" in page  # the run flips its images
    for key in ("filters", "feature-maps", "patterns"):
        assert 'src="data:image/png' in page.split(f'data-section="{key}"')[1].split("</section>")[0], key
    assert "<td>up1_conv2</td>" in page.split('data-section="layers"')[1]  # the decoder's rows too
    result = cli("visualize", str(run), "-o", str(tmp_path / "inside"))
    assert result.exit_code == 0, result.output
    assert {"filters.png", "patterns.png", "layers.csv"} <= {p.name for p in (tmp_path / "inside").iterdir()}
