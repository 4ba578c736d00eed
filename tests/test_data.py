"""Data sources, splits and pipelines on data the tests make (no download)."""

import numpy as np
import pytest

from cnnlab.config import build_config
from cnnlab.data.pipeline import input_shape, load_data, make_dataset, stratified_split
from cnnlab.data.sources import Examples, load_raw
from cnnlab.errors import DataError


def data_cfg(**data):
    return build_config({"data": data, "seed": 3})


def test_digits_is_offline_and_scaled_to_pixels():
    raw = load_raw(data_cfg(dataset="digits").data)
    assert raw.train.images.shape == (1797, 8, 8, 1)
    assert raw.train.images.max() == 255 and raw.test is None
    assert raw.class_names == [str(i) for i in range(10)]


def test_digits_gets_a_stratified_seeded_test_and_validation_split():
    data = load_data(data_cfg(dataset="digits", validation_split=0.1, test_split=0.2))
    assert (len(data.train), len(data.val), len(data.test)) == (1293, 144, 360)
    for split in (data.train, data.val, data.test):
        share = np.bincount(split.labels) / len(split)
        assert np.allclose(share, 0.1, atol=0.02)  # every class keeps its share
    again = load_data(data_cfg(dataset="digits", validation_split=0.1, test_split=0.2))
    assert np.array_equal(again.val.images, data.val.images)


def test_npz_source_and_pipeline(npz_path):
    data = load_data(data_cfg(dataset="npz", path=str(npz_path), validation_split=0.25, batch_size=16))
    assert data.input_shape == (12, 12, 1) and data.classes == 3
    assert len(data.test) == 30 and len(data.val) == 30
    images, labels = next(iter(data.dataset("train", training=True)))
    assert images.shape == (16, 12, 12, 1) and labels.shape == (16, 3)
    assert float(images.numpy().max()) <= 255.0 and images.dtype.name == "float32"


def test_image_size_and_color_mode_reshape_the_pipeline(npz_path):
    cfg = data_cfg(dataset="npz", path=str(npz_path), image_size=[20, 16], color_mode="rgb", batch_size=8)
    data = load_data(cfg)
    assert data.input_shape == (20, 16, 3)
    images, _ = next(iter(data.dataset("test")))
    assert images.shape == (8, 20, 16, 3)


def test_npz_with_wrong_keys_or_shapes(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 8, 8)), labels=np.zeros(4))
    with pytest.raises(DataError, match="must hold x_train and y_train"):
        load_raw(data_cfg(dataset="npz", path=str(bad)).data)
    np.savez(bad, x_train=np.zeros((4, 8, 8)), y_train=np.zeros(3, dtype=int))
    with pytest.raises(DataError, match="3 labels for 4 images"):
        load_raw(data_cfg(dataset="npz", path=str(bad)).data)
    with pytest.raises(DataError, match="does not exist"):
        load_raw(data_cfg(dataset="npz", path=str(tmp_path / "missing.npz")).data)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_raw(data_cfg(dataset="npz", path=str(tmp_path / "text.npz")).data)


def test_directory_streams_files_and_ignores_hidden_folders(image_folder):
    data = load_data(data_cfg(dataset="directory", path=str(image_folder), validation_split=0.2,
                              test_split=0.25, batch_size=4))
    assert data.class_names == ["class_0", "class_1", "class_2"]
    assert data.train.images is None and data.train.paths is not None  # streamed from disk
    assert data.input_shape == (12, 12, 3)  # grayscale and RGB mixed -> rgb
    images, labels = next(iter(data.dataset("train")))
    assert images.shape == (4, 12, 12, 3) and labels.shape == (4, 3)


def test_directory_color_mode_grayscale(image_folder):
    data = load_data(data_cfg(dataset="directory", path=str(image_folder), color_mode="grayscale"))
    images, _ = next(iter(data.dataset("test")))
    assert images.shape[-1] == 1


def test_directory_reports_corrupt_files_by_name_or_skips_them(image_folder):
    (image_folder / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (image_folder / "class_2" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"2 bad image file\(s\).*broken.png.*notes.txt.*on_bad_image: skip"):
        load_raw(data_cfg(dataset="directory", path=str(image_folder)).data)
    raw = load_raw(data_cfg(dataset="directory", path=str(image_folder), on_bad_image="skip").data)
    assert len(raw.skipped) == 2 and len(raw.train) == 36


def test_directory_needs_two_classes_and_images(tmp_path, image_folder):
    with pytest.raises(DataError, match="is not a folder"):
        load_raw(data_cfg(dataset="directory", path=str(tmp_path / "nowhere")).data)
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2"):
        load_raw(data_cfg(dataset="directory", path=str(one)).data)
    (image_folder / "empty_class").mkdir()
    with pytest.raises(DataError, match="has no usable images"):
        load_raw(data_cfg(dataset="directory", path=str(image_folder)).data)


def test_directory_test_path_must_share_the_classes(tmp_path, image_folder):
    other = tmp_path / "other"
    (other / "zebra").mkdir(parents=True)
    with pytest.raises(DataError, match="zebra"):
        load_raw(data_cfg(dataset="directory", path=str(image_folder), test_path=str(other)).data)


def test_split_refuses_classes_too_small_to_split():
    examples = Examples(labels=np.array([0, 0, 0, 1]), images=np.zeros((4, 2, 2, 1)))
    with pytest.raises(DataError, match="class.*1.*single image"):
        stratified_split(examples, 0.5, 0, "data.validation_split", ["a", "1"])
    examples = Examples(labels=np.repeat(np.arange(5), 4), images=np.zeros((20, 2, 2, 1)))
    with pytest.raises(DataError, match="fewer images than the 5 classes"):
        stratified_split(examples, 0.1, 0, "data.validation_split", list("abcde"))


def test_input_shape_defaults_to_the_data():
    cfg = data_cfg(dataset="mnist").data
    assert input_shape((28, 28, 1), cfg) == (28, 28, 1)


AUGMENTATIONS = {"none": None,
                 "layers": {"engine": "layers", "rotation_range": 20, "horizontal_flip": True, "mixup_alpha": 0.4},
                 "generator": {"engine": "generator", "rotation_range": 20, "horizontal_flip": True}}


def train_data(npz_path, engine):
    """A freshly loaded bundle, as a new process would build it: 108 training images in batches of 16."""
    cfg = build_config({"seed": 3, "data": {"dataset": "npz", "path": str(npz_path), "batch_size": 16},
                        "augmentation": AUGMENTATIONS[engine] or {}})
    return load_data(cfg)


def training_batches(npz_path, engine, initial_epoch, epochs, steps=None):
    """All batches of `train_dataset` for epochs ``initial_epoch .. epochs - 1``, as numpy arrays."""
    ds = train_data(npz_path, engine).train_dataset(initial_epoch=initial_epoch, epochs=epochs,
                                                    steps_per_epoch=steps)
    batches = [ds[i] for i in range(len(ds))] if engine == "generator" else list(ds)
    return [(np.asarray(x), np.asarray(y)) for x, y in batches]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


@pytest.mark.parametrize("steps", [None, 5])  # 7 batches per pass; 5 cuts the passes
@pytest.mark.parametrize("engine", AUGMENTATIONS)
def test_an_epoch_is_the_same_batches_however_it_is_reached(npz_path, engine, steps):
    data = train_data(npz_path, engine)
    per_epoch = data.steps_per_epoch(steps)
    whole = training_batches(npz_path, engine, 0, 4, steps)
    resumed = training_batches(npz_path, engine, 2, 4, steps)
    assert len(whole) == 4 * per_epoch and len(resumed) == 2 * per_epoch
    assert same(resumed, whole[2 * per_epoch:])  # epochs 2-3 fresh, or after reading epochs 0-1
    assert same(training_batches(npz_path, engine, 0, 4, steps), whole)  # a second build, same seed
    first, second = whole[:per_epoch], whole[per_epoch:2 * per_epoch]
    assert not any(np.array_equal(x1, x2) for (x1, _), (x2, _) in zip(first, second))  # epochs differ


def test_an_epoch_is_one_pass_over_the_training_images_by_default(npz_path):
    data = train_data(npz_path, "none")
    assert len(data.train) == 108 and data.steps_per_epoch() == 7 and data.steps_per_epoch(20) == 20
    for epoch in range(2):
        images = np.concatenate([x for x, _ in training_batches(npz_path, "none", epoch, epoch + 1)])
        assert images.shape == (108, 12, 12, 1)
        assert sorted(map(bytes, images.astype("uint8"))) == sorted(map(bytes, data.train.images))


@pytest.mark.parametrize("engine", ["none", "layers"])
def test_every_pipeline_runs_without_tf_data_autotuning_thread(npz_path, tmp_path, engine):
    """TensorFlow can lose the wake-up of that thread when an iterator is destroyed, which stalled the
    end of fit for up to a minute (cnnlab.data.ops.prefetched): no pipeline of cnnlab may start it."""
    from PIL import Image

    from cnnlab.commands.predict import image_stream

    cfg = build_config({"seed": 3, "data": {"dataset": "npz", "path": str(npz_path), "batch_size": 16,
                                            "validation_split": 0.25},
                        "augmentation": AUGMENTATIONS[engine] or {}})
    data = load_data(cfg)
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "a.png")
    pipelines = {"train": data.train_dataset(epochs=2), "validation": data.validation_dataset(outputs=2),
                 "test": data.dataset("test"), "predict": image_stream([str(tmp_path / "a.png")], (12, 12, 1), 4, {}),
                 "in order (statistics, previews, calibration)": make_dataset(data.train, data.input_shape, 8)}
    for name, ds in pipelines.items():
        assert ds.options().autotune.enabled is False, name
        next(iter(ds))  # and each still yields
