"""Every augmentation key x every training.precision x both engines: one batch, one training step.

The keys come from `augment.IDENTITY` (checked against `AugmentationConfig`'s
fields), so a new key without a value in `ACTIVE` fails here until it is covered.
"""

import numpy as np
import pytest

from cnnlab.config import AugmentationConfig, TrainingConfig, build_config
from cnnlab.data.augment import IDENTITY
from cnnlab.data.pipeline import DataBundle
from cnnlab.data.sources import Examples
from cnnlab.errors import ConfigError

SHAPE, CLASSES, BATCH = (8, 8, 3), 3, 4
PRECISIONS = TrainingConfig.model_fields["precision"].annotation.__args__
SETTINGS = {"engine", "fill_mode", "cval"}  # how the keys act, not keys of their own

# A value that changes images, for every key.
ACTIVE = {"rotation_range": 20.0, "width_shift_range": 0.2, "height_shift_range": 0.2, "zoom_range": 0.2,
          "shear_range": 10.0, "horizontal_flip": True, "vertical_flip": True, "brightness_range": [0.5, 1.5],
          "contrast_range": [0.7, 1.3], "saturation_range": [0.5, 1.5], "hue_delta": 0.1,
          "channel_shift_range": 20.0, "crop_padding": 2, "random_erasing": 0.5, "mixup_alpha": 0.4,
          "cutmix_alpha": 1.0, "rand_augment": {"num_ops": 2, "factor": 0.5}}
GENERATOR_LACKS = {"hue_delta", "random_erasing", "mixup_alpha", "cutmix_alpha", "rand_augment"}

CASES = [(key, engine) for key in IDENTITY for engine in ("layers", "generator")
         if not (engine == "generator" and key in GENERATOR_LACKS)]


def test_every_key_is_in_the_matrix():
    assert set(IDENTITY) == set(AugmentationConfig.model_fields) - SETTINGS
    assert set(ACTIVE) == set(IDENTITY), "give the new key a value that changes images in ACTIVE"


@pytest.mark.parametrize("key", sorted(GENERATOR_LACKS))
def test_the_generator_engine_refuses_what_it_lacks(key):
    with pytest.raises(ConfigError, match="engine: layers"):  # from the config's checks, or else the engine
        cfg = build_config({"data": {"dataset": "digits"}, "augmentation": {"engine": "generator", key: ACTIVE[key]}})
        bundle(cfg.augmentation).train_dataset(epochs=1)


@pytest.fixture
def precision(request):
    """Set the global dtype policy as `cnnlab train` does, and put float32 back afterwards."""
    import keras

    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


_MODELS = {}


def tiny_model(precision):
    """A one-layer classifier under `precision`, compiled once per precision."""
    import keras

    if precision not in _MODELS:
        inputs = keras.Input(SHAPE)
        outputs = keras.layers.Dense(CLASSES, activation="softmax", dtype="float32")(keras.layers.Flatten()(
            keras.layers.Rescaling(1 / 255)(inputs)))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        _MODELS[precision] = model
    return _MODELS[precision]


def bundle(augmentation):
    rng = np.random.default_rng(0)
    train = Examples(labels=np.arange(2 * BATCH) % CLASSES,
                     images=rng.integers(0, 256, (2 * BATCH, *SHAPE)).astype("uint8"))
    return DataBundle(train=train, val=None, test=None, class_names=[str(i) for i in range(CLASSES)],
                      input_shape=SHAPE, batch_size=BATCH, seed=0, augmentation=augmentation)


def first_batch(batches):
    return batches[0] if hasattr(batches, "__getitem__") else next(iter(batches))


@pytest.mark.parametrize("precision", PRECISIONS, indirect=True)
@pytest.mark.parametrize("key, engine", CASES)
def test_one_training_step(key, engine, precision):
    augmentation = AugmentationConfig(engine=engine, **{key: ACTIVE[key]})
    data = bundle(augmentation)
    batches = data.train_dataset(epochs=1)
    images, labels = (np.asarray(t) for t in first_batch(batches))
    assert images.shape == (BATCH, *SHAPE) and images.dtype == np.float32
    epoch = [np.asarray(x) for x, _ in (batches[i] for i in range(len(batches)))] if engine == "generator" else [
        np.asarray(x) for x, _ in batches]
    originals = data.train.images.astype(np.float32)
    changed = [not (image == originals).all(axis=(1, 2, 3)).any() for image in np.concatenate(epoch)]
    assert any(changed), f"{key} changed none of the epoch's images"
    assert labels.shape == (BATCH, CLASSES) and labels.dtype == np.float32
    assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 255
    assert np.allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    loss = tiny_model(precision).train_on_batch(images, labels)
    assert np.isfinite(loss)
