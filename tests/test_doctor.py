"""`cnnlab doctor`: leakage across splits, unreadable files, flipped labels found by cross-validated confident
learning and by a run's model on its held-out splits, and the exclusion list that data.exclude reads."""

import csv
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import error_line, make_images, trained_run

pytest.importorskip("cleanlab", reason="cnnlab doctor needs the doctor extra (pip install 'cnnlab[doctor]')")
pytest.importorskip("cleanvision", reason="cnnlab doctor needs the doctor extra (pip install 'cnnlab[doctor]')")

FLIPPED = [3, 17, 45, 70, 101, 130]  # training images whose label the test flips


def experiment(folder, data, epochs=8, name="doc"):
    cfg = {"name": name, "seed": 1, "output_dir": str(folder / "runs"), "data": {"batch_size": 32, **data},
           "model": {"architecture": "mlp", "dropout": 0.0}, "training": {"epochs": epochs, "learning_rate": 0.003},
           "callbacks": {"model_checkpoint": {"monitor": "loss"}, "reduce_lr_on_plateau": False,
                         "early_stopping": False}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def findings(folder):
    with open(folder / "doctor.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def flipped_npz(tmp_path_factory):
    """4 classes of 12x12 images (a bright square per corner), 6 training labels flipped, and one test image
    copied into the training split."""
    x, y = make_images(40, classes=4)
    xt, yt = make_images(10, classes=4, seed=1)
    y = y.copy()
    y[FLIPPED] = (y[FLIPPED] + 1) % 4
    x = np.concatenate([x, xt[5:6]])
    y = np.concatenate([y, yt[5:6]])
    path = tmp_path_factory.mktemp("doctor") / "flipped.npz"
    np.savez(path, x_train=x[..., 0], y_train=y, x_test=xt[..., 0], y_test=yt)
    return path


@pytest.mark.slow
def test_cross_validation_finds_flipped_labels_and_the_leaked_test_image(tmp_path, cli, flipped_npz):
    path = experiment(tmp_path, {"dataset": "npz", "path": str(flipped_npz), "validation_split": 0.0})
    result = cli("doctor", str(path), "--folds", "3")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "doc" / "doctor"
    rows = findings(folder)
    suspects = {int(r["id"].removeprefix("train:")) for r in rows if r["issue"] == "label"}
    assert len(suspects & set(FLIPPED)) >= 5, suspects  # confident learning on cross-validated probabilities
    assert len(suspects - set(FLIPPED)) <= 3
    leaked = {(r["split"], r["id"]) for r in rows if r["issue"] == "leakage (exact)"}
    assert leaked == {("train", "train:160"), ("test", "test:5")}
    excluded = [line for line in (folder / "exclude.txt").read_text().splitlines() if not line.startswith("#")]
    assert "train:160" in excluded and "test:5" not in excluded  # a test image is never left out
    assert set(excluded) >= {f"train:{i}" for i in suspects}
    page = (folder / "doctor.html").read_text()
    assert "leakage (exact)" in page and "data:image/png;base64," in page and "given" in page
    assert "likely wrong" in result.output and "exclude.txt" in result.output

    excluded_run = cli("doctor", str(path), "--set", f"data.exclude={folder / 'exclude.txt'}", "-o",
                       str(tmp_path / "again"))
    assert excluded_run.exit_code == 0, excluded_run.output
    assert f"train {160 + 1 - len(excluded)}," in excluded_run.output  # the listed images are left out
    assert not [r for r in findings(tmp_path / "again") if r["issue"].startswith("leakage")]


@pytest.mark.slow
def test_a_run_s_model_checks_its_held_out_splits_and_unreadable_files_are_reported(tmp_path, cli):
    root = tmp_path / "images"
    x, y = make_images(16, classes=3, channels=3)
    for i, (image, label) in enumerate(zip(x, y)):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / f"c{label}" / f"{i}.png")
    (root / "c0" / "broken.png").write_bytes(b"not a png at all")
    shutil.copy(root / "c1" / "20.png", root / "c1" / "20_copy.png")  # an exact duplicate
    path = experiment(tmp_path, {"dataset": "directory", "path": str(root), "validation_split": 0.2,
                                 "test_split": 0.2, "on_bad_image": "skip"}, epochs=6)
    run, _ = trained_run(tmp_path, path)
    (run / "doctor").mkdir()
    result = cli("doctor", str(run))
    assert result.exit_code == 0, result.output
    rows = findings(run / "doctor")
    assert [r["id"].rsplit("/", 1)[-1] for r in rows if r["issue"] == "unreadable"] == ["broken.png"]
    duplicates = {r["id"].rsplit("/", 1)[-1] for r in rows if r["issue"] in ("exact_duplicate", "leakage (exact)")}
    assert duplicates == {"20.png", "20_copy.png"}
    assert "Labels (val)" in result.output and "Labels (test)" in result.output
    assert "training split's labels are not checked" in result.output


def test_data_exclude_leaves_listed_training_images_out_and_keeps_the_splits(tmp_path, npz_path):
    from cnnlab.config import load_config
    from cnnlab.data.pipeline import load_data

    data = {"dataset": "npz", "path": str(npz_path), "validation_split": 0.25}
    before = load_data(load_config(experiment(tmp_path, data)))
    train_listed, val_listed = str(before.train.ids[0]), str(before.val.ids[3])
    listing = tmp_path / "exclude.txt"
    listing.write_text(f"# a training image, a validation image, a test image, a name of none\n{train_listed}\n"
                       f"{val_listed}  # val\ntest:2\nfile#1.png\n")
    after = load_data(load_config(experiment(tmp_path, {**data, "exclude": str(listing)})))
    assert set(after.train.ids) == set(before.train.ids) - {train_listed}
    assert set(after.val.ids) == set(before.val.ids) - {val_listed}  # the splits are drawn as without the list
    assert list(after.test.ids) == list(before.test.ids)  # runs are compared on the test split: never left out
    assert after.excluded.left_out == 2 and "2 listed name(s) are no training or validation image" in \
        after.excluded.describe()


@pytest.mark.parametrize("args, words", [
    (["--folds", "1"], "--folds"),
    (["--set", "data.exclude=missing.txt"], "data.exclude"),
    (["--set", "data.batch_sise=3"], "unknown key 'data.batch_sise'"),
])
def test_bad_doctor_input_is_one_error_line(tmp_path, cli, npz_path, args, words):
    path = experiment(tmp_path, {"dataset": "npz", "path": str(npz_path)})
    result = cli("doctor", str(path), *args)
    assert result.exit_code == 2 and words in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_a_keras_file_outside_a_run_is_refused(tmp_path, cli):
    model = tmp_path / "bare.keras"
    model.write_bytes(b"x")
    result = cli("doctor", str(model))
    assert result.exit_code == 2 and "outside a run folder" in error_line(result)

