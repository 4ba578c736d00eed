"""benchmarks/mnist_canvases.py on a fake MNIST whose digits are rectangles that say their label.

A fake digit of label d is faint noise (0..127, background in a mask) with a solid 20-row
rectangle d + 3 columns wide at rows 4.., columns 4..: its top row at intensity 128 (the mask
threshold), the rest at 255 in the training images and 200 in the test images. A canvas can so
be read back: where each digit went, which digit it is and which split it came from.
"""

import contextlib
import csv
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mnist_canvases.py"
INK = {"train": 255, "test": 200}
EDGE_INK, BRIGHT = 128, 128
RECT_TOP, RECT_LEFT, RECT_HEIGHT = 4, 4, 20
COUNTS = {"train": 40, "test": 10}


def load_script():
    """Import the script by path, as it is not part of the cnnlab package."""
    spec = importlib.util.spec_from_file_location("mnist_canvases", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


canvases = load_script()


def fake_digits(labels, ink, seed):
    """(N, 28, 28) uint8 fake digits: noise below 128 and a rectangle of width label + 3."""
    images = np.random.default_rng(seed).integers(0, BRIGHT, size=(len(labels), 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        image[RECT_TOP:RECT_TOP + RECT_HEIGHT, RECT_LEFT:RECT_LEFT + label + 3] = ink
        image[RECT_TOP, RECT_LEFT:RECT_LEFT + label + 3] = EDGE_INK
    return images


@pytest.fixture(scope="module")
def fake_npz(tmp_path_factory):
    y_train, y_test = np.arange(60) % 10, np.roll(np.arange(20) % 10, 3)
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    np.savez(path, x_train=fake_digits(y_train, INK["train"], 1), y_train=y_train.astype(np.uint8),
             x_test=fake_digits(y_test, INK["test"], 2), y_test=y_test.astype(np.uint8))
    return path


def run(npz, out, *extra):
    """main() with the test's counts; returns its exit code."""
    return canvases.main(["--npz", str(npz), "--out", str(out), "--train", str(COUNTS["train"]),
                          "--test", str(COUNTS["test"]), *extra])


@pytest.fixture(scope="module")
def written(fake_npz, tmp_path_factory):
    """The output folder of one default run (seed 0) and what it printed."""
    out = tmp_path_factory.mktemp("canvases")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run(fake_npz, out) == 0
    return out, printed.getvalue().splitlines()


def arrays(path):
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def rectangles(bright):
    """(top, left, height, width) of each run of bright columns of a 2-D bool array; each must be solid."""
    cols = np.flatnonzero(bright.any(axis=0))
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1) if cols.size else []
    found = []
    for run_cols in runs:
        rows = np.flatnonzero(bright[:, run_cols].any(axis=1))
        assert bright[rows[0]:rows[-1] + 1, run_cols].all(), "a digit's rectangle came out broken"
        found.append((rows[0], run_cols[0], rows.size, run_cols.size))
    return found


def test_npz_shapes_dtypes_and_class_names(written):
    out, _ = written
    expected = {"multilabel": ((64, 64, 1), (10,)), "segmentation": ((64, 84, 1), (64, 84))}
    for task, (x_shape, y_shape) in expected.items():
        data = arrays(out / f"{task}.npz")
        for split, n in COUNTS.items():
            assert data[f"x_{split}"].shape == (n, *x_shape) and data[f"x_{split}"].dtype == np.uint8
            assert data[f"y_{split}"].shape == (n, *y_shape) and data[f"y_{split}"].dtype == np.uint8
    assert arrays(out / "multilabel.npz")["class_names"].tolist() == [str(d) for d in range(10)]
    assert arrays(out / "segmentation.npz")["class_names"].tolist() == ["background", *map(str, range(10))]


def test_one_summary_line_per_written_layout(written):
    _, lines = written
    assert [line.split(":")[0] for line in lines[:4]] == [
        "multilabel npz", "multilabel csv", "segmentation npz", "segmentation folders"]
    assert lines[-1].startswith("done in")


def multilabel_digits(canvas, split):
    """The digits found in the 2 x 2 cells of a 64 x 64 canvas, checking where each sits and its ink."""
    found = []
    for cell_top in (0, 32):
        for cell_left in (0, 32):
            cell = canvas[cell_top:cell_top + 32, cell_left:cell_left + 32]
            rects = rectangles(cell >= BRIGHT)
            assert len(rects) <= 1
            for top, left, height, width in rects:
                # centred in its cell (2 px margin) +-2 px: the rectangle starts 4..8 px in
                assert RECT_TOP <= top <= RECT_TOP + 4 and RECT_LEFT <= left <= RECT_LEFT + 4
                assert height == RECT_HEIGHT
                assert set(np.unique(cell[cell >= BRIGHT])) <= {EDGE_INK, INK[split]}
                found.append(width - 3)
    return found


def test_multilabel_rows_are_the_digits_placed(written):
    data = arrays(written[0] / "multilabel.npz")
    for split in COUNTS:
        for canvas, row in zip(data[f"x_{split}"][..., 0], data[f"y_{split}"]):
            digits = multilabel_digits(canvas, split)
            assert 1 <= len(digits) <= 4
            assert 1 <= row.sum() <= 4 and set(np.unique(row)) <= {0, 1}
            assert sorted(set(digits)) == np.flatnonzero(row).tolist()


def check_segmentation_canvas(canvas, mask, split):
    """The mask is the canvas's bright pixels, each labelled with its digit; digits sit in their slots."""
    bright = canvas >= BRIGHT
    assert np.array_equal(mask > 0, bright)
    assert set(np.unique(canvas[bright])) <= {EDGE_INK, INK[split]}
    rects = rectangles(bright)
    assert 1 <= len(rects) <= 3
    for top, left, height, width in rects:
        slot = round((left - RECT_LEFT) / 28)
        assert abs(left - RECT_LEFT - 28 * slot) <= 2 and RECT_TOP <= top <= RECT_TOP + 36
        assert height == RECT_HEIGHT
        assert np.all(mask[top:top + height, left:left + width] == width - 3 + 1)
    lefts = [rect[1] for rect in rects]
    assert all(b - a >= 28 for a, b in zip(lefts, lefts[1:]))


def test_segmentation_masks_match_the_bright_pixels(written):
    data = arrays(written[0] / "segmentation.npz")
    for split in COUNTS:
        masks = data[f"y_{split}"]
        assert masks.max() <= 10
        for canvas, mask in zip(data[f"x_{split}"][..., 0], masks):
            check_segmentation_canvas(canvas, mask, split)


def test_each_split_draws_from_its_own_mnist_split(written):
    for task in ("multilabel", "segmentation"):
        data = arrays(written[0] / f"{task}.npz")
        for split, other in (("train", "test"), ("test", "train")):
            assert not np.any(data[f"x_{split}"] == INK[other])
            assert np.any(data[f"x_{split}"] == INK[split])


def read_png(path):
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


def test_multilabel_csv_reads_back_as_the_npz(written):
    out = written[0]
    data = arrays(out / "multilabel.npz")
    for split, n in COUNTS.items():
        with open(out / "multilabel" / f"{split}.csv", newline="") as f:
            assert f.readline() == "path,labels\n"
            rows = list(csv.reader(f))
        assert len(rows) == n
        for i, (path, labels) in enumerate(rows):
            assert path == f"images/{split}_{i:05d}.png"
            assert labels == " ".join(labels.split())
            multi_hot = np.zeros(10, np.uint8)
            multi_hot[[int(name) for name in labels.split()]] = 1
            assert np.array_equal(multi_hot, data[f"y_{split}"][i])
            assert np.array_equal(read_png(out / "multilabel" / path), data[f"x_{split}"][i, ..., 0])
    assert len(list((out / "multilabel" / "images").iterdir())) == sum(COUNTS.values())


def test_segmentation_pngs_read_back_as_the_npz(written):
    out = written[0]
    data = arrays(out / "segmentation.npz")
    for split, n in COUNTS.items():
        folder = out / "segmentation" / split
        assert len(list((folder / "images").iterdir())) == len(list((folder / "masks").iterdir())) == n
        for i in range(n):
            assert np.array_equal(read_png(folder / "images" / f"{split}_{i:05d}.png"), data[f"x_{split}"][i, ..., 0])
            assert np.array_equal(read_png(folder / "masks" / f"{split}_{i:05d}.png"), data[f"y_{split}"][i])


def test_same_seed_same_output_other_seed_different(written, fake_npz, tmp_path):
    out = written[0]
    assert run(fake_npz, tmp_path / "again", "--format", "npz", "csv") == 0
    assert run(fake_npz, tmp_path / "seed1", "--seed", "1", "--format", "npz") == 0
    for task in ("multilabel", "segmentation"):
        first, again, seed1 = (arrays(top / f"{task}.npz") for top in (out, tmp_path / "again", tmp_path / "seed1"))
        assert all(np.array_equal(first[key], again[key]) for key in first)
        assert not np.array_equal(first["x_train"], seed1["x_train"])
    for split in COUNTS:
        csv_name = f"multilabel/{split}.csv"
        assert (out / csv_name).read_text() == (tmp_path / "again" / csv_name).read_text()


def test_a_task_alone_gives_the_same_canvases(written, fake_npz, tmp_path):
    assert run(fake_npz, tmp_path, "--tasks", "segmentation", "--format", "npz") == 0
    alone, both = arrays(tmp_path / "segmentation.npz"), arrays(written[0] / "segmentation.npz")
    assert all(np.array_equal(alone[key], both[key]) for key in both)
    assert not (tmp_path / "multilabel.npz").exists()


def test_a_rerun_replaces_the_previous_folders(fake_npz, tmp_path):
    assert run(fake_npz, tmp_path, "--format", "csv", "folders") == 0
    assert canvases.main(["--npz", str(fake_npz), "--out", str(tmp_path), "--train", "3", "--test", "2",
                          "--format", "csv", "folders"]) == 0
    assert len(list((tmp_path / "segmentation" / "train" / "masks").iterdir())) == 3
    assert len(list((tmp_path / "multilabel" / "images").iterdir())) == 5
    assert not list(tmp_path.glob(".*partial"))


def test_placements_cover_the_jitter_and_counts():
    """Single-pixel digits give each digit's top-left corner directly."""
    images = np.zeros((10, 28, 28), np.uint8)
    images[:, 0, 0] = 255
    rng = np.random.default_rng(0)
    x, y = canvases.multilabel_canvases(images, np.arange(10), 2000, rng)
    index, rows, cols = np.nonzero(x[..., 0])
    assert set(np.bincount(index, minlength=2000)) == {1, 2, 3, 4}
    assert set((rows % 32) - 2) == set((cols % 32) - 2) == set(range(-2, 3))
    x, masks = canvases.segmentation_canvases(images, np.arange(10), 2000, rng)
    index, rows, cols = np.nonzero(masks)
    assert set(np.bincount(index, minlength=2000)) == {1, 2, 3}
    assert set(rows) == set(range(37))
    slots = (cols + 14) // 28
    assert set(cols - 28 * slots) == set(range(-2, 3)) and cols.min() >= 0 and cols.max() <= 84 - 28
    for canvas in range(2000):
        lefts = np.sort(cols[index == canvas])
        assert np.all(np.diff(lefts) >= 28)


def test_a_missing_npz_is_one_line_and_exit_2(tmp_path, capsys):
    assert canvases.main(["--npz", str(tmp_path / "nope.npz"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: MNIST npz not found:") and "nope.npz" in err


def test_an_npz_without_the_test_split_is_named(tmp_path, capsys):
    np.savez(tmp_path / "half.npz", x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.zeros(3, np.uint8))
    assert canvases.main(["--npz", str(tmp_path / "half.npz"), "--out", str(tmp_path)]) == 2
    assert "x_test, y_test" in capsys.readouterr().err


def test_a_format_that_writes_nothing_is_refused(fake_npz, tmp_path, capsys):
    assert run(fake_npz, tmp_path / "out", "--tasks", "multilabel", "--format", "folders") == 2
    assert "writes nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
