"""`cnnlab predict` and test-time augmentation (`--tta`, also on `evaluate`), on a tiny digits run."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import error_line

DIGITS = 30  # images written per folder fixture


def invoke(*args):
    """Run cnnlab in-process (click 8.2+: ``stdout`` and ``stderr`` apart, ``output`` both)."""
    from cnnlab.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits MLP trained for 2 epochs: its run folder."""
    root = tmp_path_factory.mktemp("predict")
    experiment = {
        "name": "tiny", "seed": 1, "output_dir": str(root / "runs"),
        "data": {"dataset": "digits", "validation_split": 0.2, "batch_size": 64},
        "model": {"architecture": "mlp", "dropout": 0.1},
        "training": {"epochs": 2, "learning_rate": 0.003},
        "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                      "reduce_lr_on_plateau": False, "early_stopping": False},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(experiment))
    result = invoke("train", path, "--quiet")
    assert result.exit_code == 0, result.output
    (folder,) = (root / "runs" / "tiny").iterdir()
    return folder


def save_digits(folder, count=DIGITS, start=0):
    """Save scikit-learn digits as 8x8 grayscale PNGs named ``<index>_<label>.png``; return the labels by name."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(start, start + count):
        name = f"{i:04d}_{digits.target[i]}.png"
        Image.fromarray((digits.images[i] * 255 / 16).round().astype(np.uint8)).save(folder / name)
        labels[name] = str(digits.target[i])
    return labels


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def top_columns(row, k):
    return [(row[f"top{i}_label"], float(row[f"top{i}_prob"])) for i in range(1, k + 1)]


def test_csv_has_a_header_and_one_row_per_image_top_k_in_order(run, tmp_path):
    labels = save_digits(tmp_path / "images")
    out = tmp_path / "predictions.csv"
    result = invoke("predict", run, tmp_path / "images", "--top-k", 3, "--output", out)
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob(".partial-*"))  # written atomically
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "top1_label", "top1_prob", "top2_label", "top2_prob",
                             "top3_label", "top3_prob", "error"]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(labels)
    names = json.loads((run / "class_names.json").read_text())
    for row in rows:
        top = top_columns(row, 3)
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert len({label for label, _ in top}) == 3 and all(label in names for label, _ in top)
        assert row["error"] == ""
    correct = np.mean([row["top1_label"] == labels[Path(row["path"]).name] for row in rows])
    assert correct >= 0.6, correct  # 2 epochs of an MLP: far above chance (0.1)


def test_all_probs_are_every_class_in_order_and_agree_with_the_top_k(run, tmp_path):
    save_digits(tmp_path / "images", count=5)
    out = tmp_path / "p.csv"
    assert invoke("predict", run, tmp_path / "images", "--all-probs", "-k", 2, "-o", out).exit_code == 0
    names = json.loads((run / "class_names.json").read_text())
    for row in read_csv(out):
        every = np.array([float(row[f"prob_{name}"]) for name in names])
        assert every.sum() == pytest.approx(1, abs=1e-4)
        assert row["top1_label"] == names[int(every.argmax())]
        assert float(row["top2_prob"]) == pytest.approx(np.sort(every)[-2], abs=1e-6)


def bad_files(folder):
    """A corrupt .png, a zero-byte .jpg, a .txt and a truncated .png in `folder`; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.png").write_bytes(b"\x89PNG not really")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    whole = (folder / "0000_0.png").read_bytes() if (folder / "0000_0.png").exists() else None
    if whole is not None:
        (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return ["corrupt.png", "empty.jpg", "notes.txt"] + (["truncated.png"] if whole else [])


def test_bad_files_are_named_and_listed_while_the_rest_are_predicted(run, tmp_path):
    save_digits(tmp_path / "images", count=10)
    bad = bad_files(tmp_path / "images")
    out = tmp_path / "p.csv"
    result = invoke("predict", run, tmp_path / "images", "-o", out)
    assert result.exit_code == 0, result.output
    for name in bad:
        assert any(name in line for line in result.stderr.splitlines()), result.stderr
    rows = {Path(r["path"]).name: r for r in read_csv(out)}
    assert len(rows) == 10 + len(bad)
    for name in bad:
        assert rows[name]["error"] and rows[name]["top1_label"] == ""
    assert "0 bytes" in rows["empty.jpg"]["error"] and "not an image file" in rows["notes.txt"]["error"]
    assert "truncated" in rows["truncated.png"]["error"]
    assert all(r["error"] == "" and r["top1_label"] for n, r in rows.items() if n not in bad)


def test_a_bad_file_does_not_change_its_batch_neighbours(run, tmp_path):
    save_digits(tmp_path / "clean", count=9)
    shutil.copytree(tmp_path / "clean", tmp_path / "dirty")
    (tmp_path / "dirty" / "0004_x.png").write_bytes(b"broken")  # lands mid-batch (sorted names)
    clean, dirty = tmp_path / "clean.json", tmp_path / "dirty.json"
    assert invoke("predict", run, tmp_path / "clean", "--all-probs", "-o", clean).exit_code == 0
    assert invoke("predict", run, tmp_path / "dirty", "--all-probs", "--batch-size", 4, "-o", dirty).exit_code == 0
    by_name = {Path(r["path"]).name: r for r in json.loads(dirty.read_text())}
    assert by_name.pop("0004_x.png")["error"]
    for record in json.loads(clean.read_text()):
        assert by_name[Path(record["path"]).name]["probabilities"] == pytest.approx(record["probabilities"], abs=1e-5)


def test_no_readable_image_is_one_error_line_and_exit_2(run, tmp_path):
    bad_files(tmp_path / "junk")
    result = invoke("predict", run, tmp_path / "junk")
    assert result.exit_code == 2
    line = error_line(result)
    assert "none of the 3 file(s)" in line and "corrupt.png" in line


def test_folders_are_searched_recursively_and_hidden_files_skipped(run, tmp_path):
    save_digits(tmp_path / "images", count=3)
    save_digits(tmp_path / "images" / "deeper" / "still", count=2, start=3)
    save_digits(tmp_path / "images" / ".ipynb_checkpoints", count=2, start=5)
    shutil.copy(tmp_path / "images" / "0000_0.png", tmp_path / "images" / ".hidden.png")
    single = save_digits(tmp_path / "one", count=1, start=7)
    result = invoke("predict", run, tmp_path / "images", tmp_path / "one" / next(iter(single)), "--json")
    assert result.exit_code == 0, result.output
    paths = [record["path"] for record in json.loads(result.stdout)]
    assert len(paths) == 6 and sum("still" in p for p in paths) == 2
    assert not any(".ipynb_checkpoints" in p or ".hidden" in p for p in paths)


def test_json_output_file_and_stdout_hold_the_same_records(run, tmp_path):
    save_digits(tmp_path / "images", count=4)
    out = tmp_path / "p.json"
    printed = invoke("predict", run, tmp_path / "images", "--json", "-k", 2)
    written = invoke("predict", run, tmp_path / "images", "-o", out, "-k", 2)
    assert printed.exit_code == written.exit_code == 0
    records = json.loads(printed.stdout)
    assert records == json.loads(out.read_text())
    assert set(records[0]) == {"path", "top", "error"} and len(records[0]["top"]) == 2
    assert records[0]["top"][0]["probability"] >= records[0]["top"][1]["probability"]


def test_the_table_is_aligned_and_other_output_suffixes_are_refused(run, tmp_path):
    save_digits(tmp_path / "images", count=3)
    bad_files(tmp_path / "images")
    table = invoke("predict", run, tmp_path / "images").stdout.splitlines()
    assert table[0].split() == ["path", "top1", "top2", "top3", "error"] and len(table) == 1 + 3 + 4
    for column in ("top1", "top2", "top3"):
        start = table[0].index(column)
        for line in (line for line in table[1:] if "_" in Path(line.split()[0]).name):  # the digits
            assert line[start - 1] == " " and line[start] != " ", (column, line)
    refused = invoke("predict", run, tmp_path / "images", "-o", tmp_path / "p.txt")
    assert refused.exit_code == 2 and ".csv or .json" in error_line(refused)
    missing = invoke("predict", run, tmp_path / "nowhere")
    assert missing.exit_code == 2 and "nowhere" in error_line(missing)
    alone = invoke("predict", run)
    assert alone.exit_code == 2 and "give the images" in error_line(alone)


def test_top_k_beyond_the_classes_is_clamped_with_a_note(run, tmp_path):
    save_digits(tmp_path / "images", count=2)
    result = invoke("predict", run, tmp_path / "images", "-k", 50, "--json")
    assert result.exit_code == 0
    assert "--top-k 50 is more than the model's 10 classes" in result.stderr
    assert all(len(record["top"]) == 10 for record in json.loads(result.stdout))


def test_target_defaults_to_the_latest_run_and_a_bare_model_uses_indices(run, tmp_path, monkeypatch):
    save_digits(tmp_path / "images", count=2)
    monkeypatch.chdir(run.parents[2])  # holds runs/tiny/<stamp>
    default = invoke("predict", tmp_path / "images", "--json")
    assert default.exit_code == 0, default.output
    shutil.copy(run / "model.keras", tmp_path / "bare.keras")
    bare = invoke("predict", tmp_path / "bare.keras", tmp_path / "images", "--json")
    assert bare.exit_code == 0, bare.output
    assert [r["top"] for r in json.loads(bare.stdout)] == [r["top"] for r in json.loads(default.stdout)]


def test_tta_probabilities_sum_to_one(run, tmp_path):
    save_digits(tmp_path / "images", count=6)
    result = invoke("predict", run, tmp_path / "images", "--tta", "--all-probs", "--json")
    assert result.exit_code == 0, result.output
    assert "5 views" in result.stderr  # no flips in training: the image and four 1-pixel shifts
    assert "Warning: a 1-pixel shift is 12.5% of these images' 8-pixel side" in result.stderr
    for record in json.loads(result.stdout):
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_tta_follows_the_run_flips_or_shifts_by_five_percent():
    from cnnlab.config import build_config
    from cnnlab.inference.tta import plan

    flips = build_config({"data": {"dataset": "digits"},
                          "augmentation": {"horizontal_flip": True, "vertical_flip": True}})
    assert plan(flips, (32, 32, 3)).views == ("identity", "flip_left_right", "flip_up_down")
    shifts = plan(build_config({"data": {"dataset": "digits"}}), (32, 32, 3))
    assert shifts.views[0] == "identity" and len(shifts.views) == 5 and shifts.step == 2
    assert plan(None, (8, 8, 1)).step == 1


def test_tta_warns_when_a_shift_is_more_than_a_tenth_of_the_side():
    from cnnlab.inference.tta import Plan, plan

    digits = plan(None, (8, 8, 1)).notes()  # 1 pixel of 8: 12.5 %
    assert digits[0] == ("Test-time augmentation: 5 views (identity, shift_left, shift_right, shift_up, "
                         "shift_down by 1 px).")
    assert len(digits) == 2 and "12.5%" in digits[1] and "compare `cnnlab evaluate --tta`" in digits[1]
    assert len(plan(None, (12, 12, 1)).notes()) == 1  # 1 pixel of 12: 8.3 %
    assert len(plan(None, (32, 32, 3)).notes()) == 1  # 2 pixels of 32
    flips = Plan(("identity", "flip_left_right"))
    assert flips.notes() == ["Test-time augmentation: 2 views (identity, flip_left_right)."]


def test_evaluate_tta_prints_the_views_and_the_warning(run):
    result = invoke("evaluate", run, "--tta")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    views = next(i for i, line in enumerate(lines) if line.startswith("Test-time augmentation: 5 views"))
    assert lines[views + 1].startswith("Warning: a 1-pixel") and lines[views + 2].startswith("test (TTA):")


def test_shifts_move_the_image_and_mirror_the_border():
    from cnnlab.inference.tta import shifted

    images = np.arange(2 * 5 * 6 * 1, dtype=np.float32).reshape(2, 5, 6, 1)
    right = np.asarray(shifted(images, 0, 2))
    assert np.array_equal(right[:, :, 2:], images[:, :, :-2])
    assert np.array_equal(right[:, :, :2], images[:, :, 1::-1])  # mirrored: columns 1, 0
    up = np.asarray(shifted(images, -1, 0))
    assert np.array_equal(up[:, :-1], images[:, 1:]) and np.array_equal(up[:, -1], images[:, -1])


def test_tta_of_a_flip_invariant_model_equals_its_plain_prediction():
    import keras

    from cnnlab.inference.predictions import predict_batch
    from cnnlab.inference.tta import Plan

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4, activation="softmax")])  # blind to where pixels are
    images = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)
    plain = predict_batch(model, images)
    flipped = predict_batch(model, images, Plan(("identity", "flip_left_right", "flip_up_down")))
    assert flipped.shape == (5, 4) and flipped == pytest.approx(plain, abs=1e-6)


def test_evaluate_tta_writes_its_own_metrics_and_keeps_the_plain_ones(run):
    assert invoke("evaluate", run, "--quiet").exit_code == 0
    before = (run / "metrics.json").read_text()
    result = invoke("evaluate", run, "--tta", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluations" / "test-tta" / "metrics.json").read_text())
    assert metrics["tta"] is True and len(metrics["tta_views"]) == 5 and metrics["split"] == "test"
    assert metrics == json.loads(result.stdout)
    assert "Test-time augmentation:" in result.stderr and "Warning:" in result.stderr  # 8x8 digits: 12.5 % shifts
    assert (run / "metrics.json").read_text() == before
    assert 0.5 <= metrics["accuracy"] <= 1


def test_predict_in_a_fresh_process(run, tmp_path):
    save_digits(tmp_path / "images", count=3)
    out = tmp_path / "p.csv"
    done = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(run), str(tmp_path / "images"), "-o",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(read_csv(out)) == 3 and "Wrote 3 row(s)" in done.stdout
    assert done.stderr == f"Run: {run}\n"  # which run; TensorFlow's start-up noise is held back
