"""Augmentation: both engines read the same keys and give the same kinds and ranges of change."""

import numpy as np
import pytest

from cnnlab.config import AugmentationConfig, build_config
from cnnlab.data.augment import augment_images, is_active
from cnnlab.data.pipeline import load_data
from cnnlab.errors import ConfigError

SIZE, N = 32, 300
ENGINES = ("layers", "generator")


def blob_images(n=N, row=8, col=22, value=255.0):
    """Black 32x32 images with one bright 4x4 square away from the centre."""
    x = np.zeros((n, SIZE, SIZE, 1), dtype="float32")
    x[:, row:row + 4, col:col + 4] = value
    return x


def centroids(images):
    weights = images[..., 0].clip(0, None)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    total = weights.sum(axis=(1, 2)) + 1e-9
    return (weights * rows).sum(axis=(1, 2)) / total, (weights * cols).sum(axis=(1, 2)) / total


def augmented(engine, value=255.0, **keys):
    cfg = AugmentationConfig(engine=engine, fill_mode="constant", **keys)
    return augment_images(cfg, blob_images(value=value), (SIZE, SIZE, 1), 2, seed=0)


def spread(engine, measure, **keys):
    return measure(*centroids(augmented(engine, **keys)))


def test_the_same_share_of_images_is_flipped():
    shares = [np.mean(centroids(augmented(e, horizontal_flip=True))[1] < SIZE / 2) for e in ENGINES]
    for share in shares:
        assert 0.4 < share < 0.6, shares


@pytest.mark.parametrize("keys, measure, expected", [
    # Uniform shifts of +-20 % of 32 px: standard deviation 0.4 * 32 / sqrt(12) = 3.7 px.
    ({"width_shift_range": 0.2}, lambda r, c: np.std(c), 0.4 * SIZE / np.sqrt(12)),
    ({"height_shift_range": 0.2}, lambda r, c: np.std(r), 0.4 * SIZE / np.sqrt(12)),
    # Uniform rotations of +-30 degrees: standard deviation 60 / sqrt(12) = 17.3 degrees.
    ({"rotation_range": 30}, lambda r, c: np.std(np.degrees(np.arctan2(r - 15.5, c - 15.5))), 60 / np.sqrt(12)),
    # Zoom 1 +- 0.2: the distance from the centre scales by 1 / zoom.
    ({"zoom_range": 0.2}, lambda r, c: np.std(np.hypot(r - 15.5, c - 15.5)), None),
])
def test_shifts_rotations_and_zooms_have_the_same_spread(keys, measure, expected):
    layers_spread, generator_spread = spread("layers", measure, **keys), spread("generator", measure, **keys)
    assert layers_spread == pytest.approx(generator_spread, rel=0.25)
    if expected is not None:
        assert layers_spread == pytest.approx(expected, rel=0.2)
        assert generator_spread == pytest.approx(expected, rel=0.2)


@pytest.mark.parametrize("params", [
    {"theta": 25.0}, {"dx": 3.0, "dy": -5.0}, {"shear": 20.0}, {"zx": 0.8, "zy": 1.2},
    {"theta": -15.0, "dx": 2.5, "dy": 1.0, "shear": 10.0, "zx": 1.1, "zy": 0.9},
])
def test_one_resampling_is_image_data_generators_transform(params):
    """The layers engine's composed matrix resamples as ImageDataGenerator's apply_affine_transform."""
    from keras import ops
    from keras.src.legacy.preprocessing.image import apply_affine_transform

    from cnnlab.data.augment import affine_transforms

    rows, cols = np.mgrid[:SIZE, :SIZE]
    image = (127 + 60 * np.sin(rows / 3.0) + 60 * np.cos(cols / 5.0)).astype("float32")[..., None]
    ours = ops.image.affine_transform(image[None], affine_transforms(
        SIZE, SIZE, **{k: np.array([v], "float32") for k, v in params.items()}), fill_mode="nearest")
    theirs = apply_affine_transform(image, theta=params.get("theta", 0), tx=params.get("dx", 0),
                                    ty=params.get("dy", 0), shear=params.get("shear", 0), zx=params.get("zx", 1),
                                    zy=params.get("zy", 1), row_axis=0, col_axis=1, channel_axis=2,
                                    fill_mode="nearest", order=1)
    np.testing.assert_allclose(np.asarray(ours)[0], theirs, atol=0.05)


def test_brightness_multiplies_alike():
    gray = 128.0  # mid-grey, so no multiplier is clipped at 255
    means = {e: augmented(e, gray, brightness_range=[0.5, 1.5]).mean(axis=(1, 2, 3)) / blob_images(value=gray)[0].mean()
             for e in ENGINES}
    for ratio in means.values():
        assert ratio.min() > 0.45 and ratio.max() < 1.55 and np.std(ratio) > 0.2
    assert np.std(means["layers"]) == pytest.approx(np.std(means["generator"]), rel=0.25)


def test_crop_padding_shifts_by_at_most_the_padding():
    for engine in ENGINES:
        _, cols = centroids(augmented(engine, crop_padding=4))
        assert np.abs(cols - 23.5).max() <= 4.01 and np.std(cols) > 1.5


def test_layers_engine_extras_run():
    x = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    cfg = AugmentationConfig(contrast_range=[0.8, 1.2], saturation_range=[0.5, 1.5], hue_delta=0.1,
                             random_erasing=0.5, rand_augment={"num_ops": 2, "factor": 0.5})
    out = augment_images(cfg, x, (SIZE, SIZE, 3), 4, seed=0)
    assert out.shape == x.shape and not np.allclose(out, x) and out.min() >= 0 and out.max() <= 255


def test_mixup_and_cutmix_mix_labels():
    cfg = build_config({"data": {"dataset": "digits", "batch_size": 64},
                        "augmentation": {"mixup_alpha": 0.4, "cutmix_alpha": 1.0}})
    _, labels = next(iter(load_data(cfg).dataset("train", training=True)))
    labels = np.asarray(labels)
    assert np.allclose(labels.sum(axis=1), 1.0, atol=1e-5) and (labels.max(axis=1) < 0.999).any()


def test_augmentation_touches_training_data_only():
    cfg = build_config({"data": {"dataset": "digits", "batch_size": 2000},
                        "augmentation": {"rotation_range": 30, "horizontal_flip": True}})
    data = load_data(cfg)
    for split in ("val", "test"):
        images, _ = next(iter(data.dataset(split)))
        assert np.array_equal(np.asarray(images)[..., 0], getattr(data, split).images[..., 0])


def test_generator_engine_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="engine: layers"):
        build_config({"data": {"dataset": "digits"}, "augmentation": {"engine": "generator", "mixup_alpha": 0.2}})
    assert not is_active(AugmentationConfig())


@pytest.mark.parametrize("engine", ENGINES)
def test_both_engines_feed_training_from_folders(engine, image_folder):
    cfg = build_config({"data": {"dataset": "directory", "path": str(image_folder), "batch_size": 4},
                        "augmentation": {"engine": engine, "rotation_range": 10, "horizontal_flip": True}})
    data = load_data(cfg)
    x, y = next(iter(data.dataset("train", training=True))) if engine == "layers" else \
        data.dataset("train", training=True)[0]
    assert tuple(np.shape(x)) == (4, 12, 12, 3) and tuple(np.shape(y)) == (4, 3)


@pytest.mark.slow
def test_both_engines_train_to_the_same_accuracy(tmp_path):
    from cnnlab.commands.evaluate import evaluate
    from cnnlab.commands.train import train

    accuracy = {}
    for engine in ENGINES:
        cfg = build_config({
            "name": engine, "seed": 0, "output_dir": str(tmp_path),
            "data": {"dataset": "digits", "batch_size": 32},
            "augmentation": {"engine": engine, "rotation_range": 10, "width_shift_range": 0.1,
                             "height_shift_range": 0.1, "zoom_range": 0.1},
            "model": {"architecture": "simple_cnn"},
            "training": {"epochs": 8},
            "callbacks": {"reduce_lr_on_plateau": False, "early_stopping": False}})
        run = train(cfg, echo=lambda *_: None, verbose=0)
        accuracy[engine] = evaluate(run, echo=lambda *_: None)["accuracy"]
    assert min(accuracy.values()) > 0.85, accuracy
    assert abs(accuracy["layers"] - accuracy["generator"]) < 0.05, accuracy


def test_augment_preview_writes_a_grid_of_pairs(cli, write_experiment, image_folder, tmp_path):
    from PIL import Image

    path = write_experiment({"data": {"dataset": "directory", "path": str(image_folder)},
                             "augmentation": {"rotation_range": 20, "horizontal_flip": True}})
    out = tmp_path / "preview.png"
    result = cli("augment-preview", path, "-n", 8, "-o", out)
    assert result.exit_code == 0, result.output
    assert "8 images, engine layers" in result.output
    width, height = Image.open(out).size
    assert width > 2 * height  # 4 pairs across, 2 rows


def fit_history(data, epochs=2):
    """Loss per epoch of a tiny CNN trained on `data` from seed 0, as `fit` feeds it."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(data.classes, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    steps = data.steps_per_epoch()
    train = data.train_dataset(initial_epoch=0, epochs=epochs)
    return model.fit(train, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0).history["loss"]


@pytest.mark.parametrize("engine", ENGINES)
def test_training_with_augmentation_is_reproducible(engine, npz_path):
    cfg = build_config({"seed": 5, "data": {"dataset": "npz", "path": str(npz_path), "batch_size": 16},
                        "augmentation": {"engine": engine, "rotation_range": 30, "horizontal_flip": True,
                                         "zoom_range": 0.2}})
    first, second = fit_history(load_data(cfg)), fit_history(load_data(cfg))
    assert first == second and len(first) == 2


def test_the_same_seed_gives_the_same_augmentation_and_another_seed_another():
    x = blob_images(16)
    cfg = AugmentationConfig(rotation_range=30, horizontal_flip=True, brightness_range=[0.5, 1.5], mixup_alpha=0.4)
    runs = [augment_images(cfg, x, (SIZE, SIZE, 1), 2, seed=s) for s in (0, 0, 1)]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_augmentation_layers_compute_in_float32_under_mixed_precision():
    import keras

    from cnnlab.data.augment import LayersAugmenter

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        augment = LayersAugmenter(AugmentationConfig(mixup_alpha=0.2, contrast_range=[0.8, 1.2], rand_augment={}),
                                  (SIZE, SIZE, 3), 2, seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    layers = [inner for layer in augment.geometric + augment.photometric + augment.mixing
              for inner in layer._flatten_layers()]
    assert len(layers) > 3 and {layer.compute_dtype for layer in layers} == {"float32"}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_resumed_epoch_reads_the_same_files_and_augmentation(engine, image_folder):
    cfg = build_config({"data": {"dataset": "directory", "path": str(image_folder), "batch_size": 4},
                        "augmentation": {"engine": engine, "rotation_range": 10, "horizontal_flip": True}})

    def epoch_one(initial_epoch):
        data = load_data(cfg)
        steps = data.steps_per_epoch()
        ds = data.train_dataset(initial_epoch=initial_epoch, epochs=2)
        batches = [ds[i] for i in range(len(ds))] if engine == "generator" else list(ds)
        return np.concatenate([np.asarray(x) for x, _ in batches[-steps:]])

    whole, resumed = epoch_one(0), epoch_one(1)
    assert whole.shape[1:] == (12, 12, 3) and np.array_equal(whole, resumed)
