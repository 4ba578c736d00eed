"""`task: multilabel`: several labels per image, from an npz of multi-hot rows or a path,labels CSV; every
command a user runs on such a run (train, evaluate, predict, export, ensemble), and the inputs it refuses."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import dotted_experiment, error_line, trained_run

CLASSES = 4  # digits 0..3 of scikit-learn's 8x8 digits


def canvases(n, rng):
    """16x16 canvases of up to four 8x8 digits (0..3) in a 2x2 grid; multi-hot labels of the digits drawn."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pool = np.flatnonzero(digits.target < CLASSES)
    images = np.zeros((n, 16, 16), np.uint8)
    labels = np.zeros((n, CLASSES), np.uint8)
    for i in range(n):
        cells = rng.choice(4, size=rng.integers(0, 5), replace=False)  # 0..4 digits: some images have none
        for cell in cells:
            pick = rng.choice(pool)
            r, c = divmod(cell, 2)
            images[i, 8 * r:8 * r + 8, 8 * c:8 * c + 8] = (digits.images[pick] * 255 / 16).astype(np.uint8)
            labels[i, digits.target[pick]] = 1
    return images, labels


@pytest.fixture(scope="module")
def multilabel_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    x, y = canvases(600, rng)
    xt, yt = canvases(120, rng)
    path = tmp_path_factory.mktemp("ml") / "canvases.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt, class_names=np.array(["zero", "one", "two", "three"]))
    return path


BASE = {"name": "ml", "task": "multilabel", "seed": 1, "data": {"batch_size": 32, "validation_split": 0.2},
        "model": {"architecture": "deep_cnn", "dropout": 0.1}, "training": {"epochs": 6, "learning_rate": 0.003},
        "callbacks": {"model_checkpoint": {"monitor": "val_loss"}, "reduce_lr_on_plateau": False,
                      "early_stopping": False}}


def experiment(folder, data, **changes):
    """The experiment file of a multi-label deep CNN on `data` (``data`` keys), with ``section.key`` `changes`."""
    return dotted_experiment(folder, BASE, {f"data.{k}": v for k, v in data.items()} | changes)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, multilabel_npz):
    """A multi-label run trained on the canvases, through the CLI as a user runs it."""
    folder = tmp_path_factory.mktemp("mlrun")
    path = experiment(folder, {"dataset": "npz", "path": str(multilabel_npz)})
    return (folder, *trained_run(folder, path))


def test_train_scores_the_run_with_the_multilabel_metrics(trained):
    _, run, output = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"mean_average_precision", "average_precision", "f1_micro", "f1_macro", "exact_match",
                            "thresholds"}
    assert metrics["mean_average_precision"] > 0.7  # four digits on 16x16 canvases, six epochs (0.80 measured)
    assert list(metrics["average_precision"]) == ["zero", "one", "two", "three"]
    thresholds = json.loads((run / "thresholds.json").read_text())  # chosen on validation, saved with the run
    assert thresholds == metrics["thresholds"] and all(0 < t <= 1 for t in thresholds)
    assert "mAP" in output and "exact match" in output
    assert (run / "plots" / "pr_curves.png").is_file() and (run / "plots" / "curves.png").is_file()
    history = (run / "history.csv").read_text().splitlines()[0]
    assert "pr_auc" in history and "val_f1" in history


def test_evaluate_uses_the_saved_thresholds_and_scores_alike(trained, cli):
    _, run, _ = trained
    before = json.loads((run / "metrics.json").read_text())
    result = cli("evaluate", str(run), "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["thresholds"] == before["thresholds"]
    assert again["exact_match"] == pytest.approx(before["exact_match"])


def test_evaluate_tta_averages_views_and_keeps_the_thresholds(trained, cli):
    _, run, _ = trained
    before = json.loads((run / "metrics.json").read_text())
    result = cli("evaluate", str(run), "--tta", "--json")
    assert result.exit_code == 0, result.output
    tta = json.loads(result.stdout)
    assert tta["tta"] is True and len(tta["tta_views"]) > 1
    assert tta["thresholds"] == before["thresholds"]
    assert abs(tta["mean_average_precision"] - before["mean_average_precision"]) < 0.1  # same model, other views
    assert (run / "evaluations" / "test-tta" / "metrics.json").is_file()


def test_ensemble_scores_members_and_average_with_thresholds_chosen_on_validation(trained, cli, tmp_path):
    _, run, _ = trained
    before = json.loads((run / "metrics.json").read_text())
    saved = tmp_path / "ens"
    result = cli("ensemble", str(run), str(run), "--save", str(saved))
    assert result.exit_code == 0, result.output
    ensemble = json.loads((saved / "metrics.json").read_text())
    # each member is scored with its own saved thresholds, as its evaluate does, not with 0.5 ...
    assert ensemble["members"][0]["exact_match"] == pytest.approx(before["exact_match"])
    # ... and two copies of one run average to that run: the thresholds chosen on the average are its own
    assert ensemble["thresholds"] == pytest.approx(before["thresholds"])
    assert ensemble["exact_match"] == pytest.approx(before["exact_match"])
    assert json.loads((saved / "thresholds.json").read_text()) == pytest.approx(before["thresholds"])


def test_predict_lists_every_label_above_its_threshold(trained, cli, tmp_path):
    _, run, _ = trained
    rng = np.random.default_rng(5)
    images, labels = canvases(6, rng)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    out = tmp_path / "p.csv"
    result = cli("predict", str(run), str(tmp_path), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == [f"{i}.png" for i in range(6)]
    thresholds = json.loads((run / "thresholds.json").read_text())
    for row in rows:
        probs = [float(p) for p in row["probabilities"].split()]
        assert len(probs) == len(row["labels"].split())
        names = ["zero", "one", "two", "three"]
        assert all(p >= thresholds[names.index(n)] for n, p in zip(row["labels"].split(), probs))
    table = cli("predict", str(run), str(tmp_path / "0.png"))
    assert table.exit_code == 0 and "labels" in table.output.splitlines()[1]


def test_export_checks_label_set_agreement(trained, cli):
    _, run, _ = trained
    result = cli("export", str(run), "--format", "savedmodel")
    assert result.exit_code == 0, result.output
    record = json.loads(next((run / "export").glob("*.json")).read_text())
    assert record["check"]["agreement"] >= 0.99


def test_a_csv_of_paths_and_label_names_trains(tmp_path, cli):
    rng = np.random.default_rng(2)
    images, labels = canvases(90, rng)
    names = ["cat", "dog", "bird", "fish"]
    (tmp_path / "img").mkdir()
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        for i, (image, row) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(tmp_path / "img" / f"{i}.png")
            writer.writerow([f"img/{i}.png", " ".join(names[c] for c in np.flatnonzero(row))])
    path = experiment(tmp_path, {"dataset": "csv", "path": str(tmp_path / "labels.csv")}, **{"training.epochs": 1})
    result = cli("train", str(path))
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs" / "ml").iterdir())
    assert json.loads((run / "class_names.json").read_text()) == sorted(names)  # the CSV's names, sorted


@pytest.mark.parametrize("changes, words", [
    ({"training.label_smoothing": 0.1}, "label_smoothing is refused for task multilabel"),
    ({"training.class_weight": {"0": 2.0}}, "balanced"),
    ({"data.dataset": "digits", "data.path": None}, "holds labels for classification, not for task multilabel"),
    ({"callbacks.model_checkpoint": {"monitor": "val_accuracy"}}, "val_pr_auc"),
])
def test_combinations_that_cannot_work_are_one_error_line(tmp_path, cli, multilabel_npz, changes, words):
    path = experiment(tmp_path, {"dataset": "npz", "path": str(multilabel_npz)}, **changes)
    result = cli("train", str(path))
    assert result.exit_code == 2 and words in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_labels_that_are_not_multi_hot_are_refused(tmp_path, cli):
    x = np.zeros((20, 8, 8), np.uint8)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.arange(20) % 3)
    path = experiment(tmp_path, {"dataset": "npz", "path": str(tmp_path / "bad.npz")})
    result = cli("train", str(path))
    assert result.exit_code == 2 and "multi-hot rows" in error_line(result)


@pytest.mark.parametrize("architecture", ["slp", "mlp", "simple_cnn", "deep_cnn", "alexnet", "vgg11", "googlenet",
                                          "resnet20"])
def test_every_family_ends_in_the_task_s_activation(architecture):
    """The output layer's activation is the task's (sigmoid for multilabel), in every family of the zoo."""
    import keras

    from cnnlab.config import ModelConfig
    from cnnlab.models.registry import build_model

    model = build_model(ModelConfig(architecture=architecture), (32, 32, 3), 3, output_activation="sigmoid")
    layer = model.get_layer("predictions")
    assert layer.activation is keras.activations.sigmoid
    keras.backend.clear_session()


def test_report_and_visualize_a_multilabel_run(trained, cli, tmp_path):
    _, run, _ = trained
    result = cli("report", str(run), "-o", str(tmp_path / "page.html"))
    assert result.exit_code == 0, result.output
    measured = (tmp_path / "page.html").read_text(encoding="utf-8").split('data-section="measured"')[1]
    assert "mean_average_precision" in measured.split("</section>")[0]
    result = cli("visualize", str(run), "-o", str(tmp_path / "inside"))
    assert result.exit_code == 0, result.output
    assert {"filters.png", "feature_maps_1.png", "patterns.png"} <= {p.name for p in (tmp_path / "inside").iterdir()}
