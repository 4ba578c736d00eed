"""Offline multi-label and segmentation datasets made of MNIST digits on larger canvases.

    python benchmarks/mnist_canvases.py [--npz mnist.npz] [--out data/mnist_canvases]
        [--train 10000] [--test 2000] [--seed 0]
        [--tasks multilabel segmentation] [--format npz csv folders]

Reads MNIST in ``keras.datasets.mnist``'s npz layout (x_train (60000, 28, 28) uint8,
y_train, x_test, y_test; default ``../shared/datasets/mnist.npz`` beside the repository)
and writes, for cnnlab's multi-label and segmentation tasks:

- **multilabel**: 64 x 64 canvases holding 1-4 digits, one per cell of a 2 x 2 grid of
  32 x 32 cells, each digit moved by up to +-2 px inside its cell (digits never overlap).
  How many digits and which cells are drawn at random; the labels are the set of digits
  present (a digit drawn twice is one label).

  - ``OUT/multilabel.npz``: x_train (N, 64, 64, 1) uint8, y_train (N, 10) multi-hot uint8,
    x_test, y_test, class_names ("0".."9");
  - ``OUT/multilabel/``: ``images/<split>_<i>.png`` and ``train.csv`` / ``test.csv`` with
    the header ``path,labels``: the path relative to the CSV's folder, the digit names
    separated by single spaces (``images/train_00001.png,3 7``).

- **segmentation**: 64 x 84 (height x width) canvases holding 1-3 digits in three
  28-px-wide slots, each anywhere in rows 0..36 and moved sideways by up to +-2 px where
  that keeps the 28 x 28 boxes on the canvas and apart (three digits fill the width
  exactly, so they do not move sideways). The mask has 11 classes: 0 is the background,
  k + 1 is digit k; a pixel is the digit's where its MNIST intensity is at least
  ``INK_THRESHOLD`` (128).

  - ``OUT/segmentation.npz``: x_train (N, 64, 84, 1) uint8, y_train (N, 64, 84) uint8
    masks, x_test, y_test, class_names ("background", "0".."9");
  - ``OUT/segmentation/<split>/images/<split>_<i>.png`` and ``.../masks/<split>_<i>.png``
    (mode "L", pixel value = class index).

Row i of a split's arrays is file ``<split>_<i>`` (from 0, five digits or more). Train
canvases use only MNIST's training images and test canvases only its test images. The
output depends only on the seed and the counts: each (task, split) has its own random
stream spawned from ``--seed``, so writing one task alone gives the same canvases as
writing both. A layout is written beside its final place and then swapped in, replacing
the previous run's file or folder of the same name.
"""

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"
DIGIT = 28  # MNIST images are 28 x 28
INK_THRESHOLD = 128  # a pixel belongs to a digit in the mask where the digit's intensity >= this
DIGIT_NAMES = [str(d) for d in range(10)]

GRID, CELL, CELL_JITTER = 2, 32, 2  # multilabel: a 2 x 2 grid of 32 x 32 cells, +-2 px inside a cell
SLOTS, SEGMENTATION_HEIGHT, SLOT_JITTER = 3, 64, 2  # segmentation: 3 slots of 28 px, +-2 px sideways

TASKS = ("multilabel", "segmentation")
SPLITS = ("train", "test")
FORMATS = ("npz", "csv", "folders")
LAYOUTS = {"multilabel": ("npz", "csv"), "segmentation": ("npz", "folders")}
CLASS_NAMES = {"multilabel": DIGIT_NAMES, "segmentation": ["background", *DIGIT_NAMES]}
PASTE_CHUNK = 2048  # digits pasted per numpy call: keeps the broadcast index arrays small


class CanvasError(ValueError):
    """A problem with the input or the options, reported as one line and exit code 2."""


# ---------------------------------------------------------------- reading MNIST


def load_mnist(path):
    """Read MNIST from an npz in keras.datasets.mnist's layout.

    Args:
        path: the npz file.

    Returns:
        {"train": (images, labels), "test": (images, labels)}: images (N, 28, 28) uint8,
        labels (N,) int64 in 0..9.

    Raises:
        CanvasError: the file is missing or unreadable, or a key, shape or label is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CanvasError(f"MNIST npz not found: {path} (pass --npz FILE)")
    try:
        npz = np.load(path)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise CanvasError(f"{path} holds one array; an npz with x_train, y_train, x_test, y_test is needed")
        with npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test") if key in npz}
    except CanvasError:
        raise
    except (OSError, ValueError) as error:
        raise CanvasError(f"cannot read {path} as an npz: {error}") from None
    return {split: checked_split(arrays, split, path) for split in SPLITS}


def checked_split(arrays, split, path):
    """The (images, labels) of one split, after checking keys, shapes and label range."""
    x_key, y_key = f"x_{split}", f"y_{split}"
    missing = [key for key in (x_key, y_key) if key not in arrays]
    if missing:
        raise CanvasError(f"{path} lacks {', '.join(missing)}; keras.datasets.mnist's layout has "
                          f"x_train, y_train, x_test, y_test. Received keys: {sorted(arrays)}")
    images, labels = arrays[x_key], arrays[y_key].reshape(-1)
    if images.ndim != 3 or images.shape[1:] != (DIGIT, DIGIT) or len(images) != len(labels) or not len(images):
        raise CanvasError(f"{path}: {x_key} must be (N, 28, 28) with N = len({y_key}) > 0. "
                          f"Received: {x_key} {images.shape}, {y_key} {arrays[y_key].shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise CanvasError(f"{path}: {y_key} must hold digits 0..9. Received: {labels.min()}..{labels.max()}")
    return images.astype(np.uint8), labels.astype(np.int64)


# ---------------------------------------------------------------- building canvases


def random_subsets(n, slots, low, high, rng):
    """Which slots each canvas uses: low..high of them, how many and which at random.

    Returns:
        (n, slots) bool.
    """
    counts = rng.integers(low, high + 1, size=n)
    ranks = rng.random((n, slots)).argsort(axis=1).argsort(axis=1)  # a random permutation per row
    return ranks < counts[:, None]


def paste(canvases, index, top, left, patches):
    """Write patches (M, h, w) into canvases (N, H, W): patch m at canvas index[m], rows top[m]..

    The caller keeps patches inside their canvas and apart from each other.
    """
    h, w = patches.shape[1:]
    for start in range(0, len(patches), PASTE_CHUNK):
        part = slice(start, start + PASTE_CHUNK)
        rows = top[part, None, None] + np.arange(h)[None, :, None]  # M x h x 1
        cols = left[part, None, None] + np.arange(w)[None, None, :]  # M x 1 x w
        canvases[index[part, None, None], rows, cols] = patches[part]


def multilabel_canvases(images, labels, n, rng):
    """Canvases of 1-4 digits in a 2 x 2 grid and the set of digits each holds.

    Args:
        images: (M, 28, 28) uint8 digits to draw from (with replacement).
        labels: (M,) their digits 0..9.
        n: how many canvases.
        rng: a numpy Generator.

    Returns:
        x (n, 64, 64, 1) uint8 and y (n, 10) multi-hot uint8.
    """
    used = random_subsets(n, GRID * GRID, 1, GRID * GRID, rng)
    canvas, cell = np.nonzero(used)
    picks = rng.integers(0, len(images), size=canvas.size)
    jitter = rng.integers(-CELL_JITTER, CELL_JITTER + 1, size=(canvas.size, 2))
    margin = (CELL - DIGIT) // 2  # a centred digit leaves 2 px each side of its cell
    top = cell // GRID * CELL + margin + jitter[:, 0]
    left = cell % GRID * CELL + margin + jitter[:, 1]
    x = np.zeros((n, GRID * CELL, GRID * CELL), np.uint8)
    paste(x, canvas, top, left, images[picks])
    y = np.zeros((n, len(DIGIT_NAMES)), np.uint8)
    y[canvas, labels[picks]] = 1
    return x[..., None], y


def slot_shifts(used, rng):
    """Sideways shifts of up to +-SLOT_JITTER px that keep the digits' boxes on the canvas and apart.

    The first slot moves only right and the last only left; where two neighbouring slots are
    both used, the left digit moves no further right than the right one (shift_i <= shift_i+1).
    Three digits fill the canvas and do not move.

    Args:
        used: (n, slots) bool, the slots each canvas uses.
        rng: a numpy Generator.

    Returns:
        (n, slots) int64 shifts in px.
    """
    slots = used.shape[1]
    shifts = rng.integers(-SLOT_JITTER, SLOT_JITTER + 1, size=used.shape)
    shifts[:, 0] = np.maximum(shifts[:, 0], 0)
    neighbours = used[:, :-1] & used[:, 1:]  # slots i and i + 1 both used
    for i in range(1, slots):
        shifts[:, i] = np.where(neighbours[:, i - 1], np.maximum(shifts[:, i], shifts[:, i - 1]), shifts[:, i])
    shifts[:, -1] = np.minimum(shifts[:, -1], 0)
    for i in range(slots - 2, -1, -1):
        shifts[:, i] = np.where(neighbours[:, i], np.minimum(shifts[:, i], shifts[:, i + 1]), shifts[:, i])
    return shifts


def segmentation_canvases(images, labels, n, rng):
    """Canvases of 1-3 digits side by side and their 11-class masks.

    Args:
        images: (M, 28, 28) uint8 digits to draw from (with replacement).
        labels: (M,) their digits 0..9.
        n: how many canvases.
        rng: a numpy Generator.

    Returns:
        x (n, 64, 84, 1) uint8 and masks (n, 64, 84) uint8: 0 background, k + 1 digit k.
    """
    used = random_subsets(n, SLOTS, 1, SLOTS, rng)
    canvas, slot = np.nonzero(used)
    picks = rng.integers(0, len(images), size=canvas.size)
    top = rng.integers(0, SEGMENTATION_HEIGHT - DIGIT + 1, size=canvas.size)
    left = slot * DIGIT + slot_shifts(used, rng)[canvas, slot]
    digits = images[picks]
    x = np.zeros((n, SEGMENTATION_HEIGHT, SLOTS * DIGIT), np.uint8)
    paste(x, canvas, top, left, digits)
    ink = (digits >= INK_THRESHOLD) * (labels[picks] + 1).astype(np.uint8)[:, None, None]
    masks = np.zeros_like(x)
    paste(masks, canvas, top, left, ink)
    return x[..., None], masks


BUILDERS = {"multilabel": multilabel_canvases, "segmentation": segmentation_canvases}


def build_task(task, mnist, counts, seed):
    """Both splits of one task, each from its own random stream.

    Args:
        task: "multilabel" or "segmentation".
        mnist: load_mnist's {split: (images, labels)}.
        counts: {split: number of canvases}.
        seed: the run's seed.

    Returns:
        {split: (x, y)}.
    """
    streams = np.random.SeedSequence(seed).spawn(len(TASKS) * len(SPLITS))
    built = {}
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng(streams[TASKS.index(task) * len(SPLITS) + s])
        built[split] = BUILDERS[task](*mnist[split], counts[split], rng)
    return built


# ---------------------------------------------------------------- writing


def stem(split, i):
    """The file name (without .png) of row i of a split."""
    return f"{split}_{i:05d}"


def save_png(path, array):
    """Write a 2-D uint8 array as a mode "L" PNG."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, compress_level=1)


def swap_in(partial, final):
    """Move a finished file or folder to its place, replacing what a previous run left there."""
    if final.is_dir():
        shutil.rmtree(final)
    partial.replace(final)


def fresh_partial(final):
    """An empty folder beside final to write into before swap_in."""
    partial = final.with_name(f".{final.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def write_npz(path, built, class_names):
    """Write {split: (x, y)} as x_train, y_train, x_test, y_test and class_names (compressed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    arrays = {f"{kind}_{split}": a for split, pair in built.items() for kind, a in zip("xy", pair)}
    with open(partial, "wb") as f:
        np.savez_compressed(f, **arrays, class_names=np.array(class_names))
    swap_in(partial, path)


def label_text(row, class_names=DIGIT_NAMES):
    """A multi-hot row as the CSV's labels: the names of its positives, one space apart."""
    return " ".join(class_names[k] for k in np.flatnonzero(row))


def write_multilabel_csv(folder, built):
    """Write images/<stem>.png and <split>.csv (path,labels) for each split of {split: (x, y)}."""
    partial = fresh_partial(folder)
    (partial / "images").mkdir()
    for split, (x, y) in built.items():
        rows = []
        for i, (image, row) in enumerate(zip(x, y)):
            name = f"images/{stem(split, i)}.png"
            save_png(partial / name, image[..., 0])
            rows.append((name, label_text(row)))
        with open(partial / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("path", "labels"))
            writer.writerows(rows)
    swap_in(partial, folder)


def write_segmentation_folders(folder, built):
    """Write <split>/images/<stem>.png and <split>/masks/<stem>.png for {split: (x, masks)}."""
    partial = fresh_partial(folder)
    for split, (x, masks) in built.items():
        for kind in ("images", "masks"):
            (partial / split / kind).mkdir(parents=True)
        for i, (image, mask) in enumerate(zip(x, masks)):
            save_png(partial / split / "images" / f"{stem(split, i)}.png", image[..., 0])
            save_png(partial / split / "masks" / f"{stem(split, i)}.png", mask)
    swap_in(partial, folder)


# ---------------------------------------------------------------- summaries


def multilabel_stats(y):
    """One split's labels in brief: labels per canvas and the rarest and commonest digit."""
    per_digit = y.sum(axis=0)
    rare, common = per_digit.argmin(), per_digit.argmax()
    return (f"{y.sum(axis=1).mean():.2f} labels/canvas, canvases per digit "
            f"{per_digit[rare]} ('{rare}') to {per_digit[common]} ('{common}')")


def segmentation_stats(masks):
    """One split's masks in brief: digits' share of the pixels, the rarest and commonest class."""
    # count_nonzero per class: np.bincount would first copy the masks into int64 (8 x the memory)
    share = np.array([np.count_nonzero(masks == k + 1) for k in range(len(DIGIT_NAMES))]) / masks.size * 100
    rare, common = share.argmin(), share.argmax()
    return (f"digit pixels {share.sum():.1f}%, per digit "
            f"{share[rare]:.2f}% ('{rare}') to {share[common]:.2f}% ('{common}')")


STATS = {"multilabel": multilabel_stats, "segmentation": segmentation_stats}


def summary(task, layout, where, built):
    """The line printed for one written layout."""
    x = built["train"][0]
    splits = "; ".join(f"{split} {len(b[0])}: {STATS[task](b[1])}" for split, b in built.items())
    return f"{task} {layout}: {where} ({x.shape[1]}x{x.shape[2]} canvases; {splits})"


def write_layout(task, layout, built, out):
    """Write one layout of a task under out.

    Returns:
        The npz file or the folder written.
    """
    if layout == "npz":
        path = out / f"{task}.npz"
        write_npz(path, built, CLASS_NAMES[task])
    else:
        path = out / task
        FOLDER_WRITERS[layout](path, built)
    return path


FOLDER_WRITERS = {"csv": write_multilabel_csv, "folders": write_segmentation_folders}


# ---------------------------------------------------------------- command line


def plan(tasks, formats):
    """{task: the layouts to write}, keeping tasks that have one of the chosen formats.

    Raises:
        CanvasError: no chosen task has a layout in the chosen formats.
    """
    chosen = {task: [f for f in LAYOUTS[task] if f in formats] for task in dict.fromkeys(tasks)}
    chosen = {task: layouts for task, layouts in chosen.items() if layouts}
    if not chosen:
        offered = "; ".join(f"{task}: {', '.join(LAYOUTS[task])}" for task in tasks)
        raise CanvasError(f"--format {' '.join(formats)} writes nothing for --tasks {' '.join(tasks)}. "
                          f"Layouts per task: {offered}")
    return chosen


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1. Received: {text!r}")
    return value


def parse_args(argv):
    """The command line as an argparse Namespace."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help="MNIST in keras.datasets.mnist's npz layout")
    parser.add_argument("--out", type=Path, default=Path("data/mnist_canvases"), help="output folder")
    parser.add_argument("--train", type=positive_int, default=10000, help="training canvases per task")
    parser.add_argument("--test", type=positive_int, default=2000, help="test canvases per task")
    parser.add_argument("--seed", type=int, default=0, help="seed of all random draws")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="datasets to build")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="layouts to write: npz (both tasks), csv (multilabel), folders (segmentation)")
    return parser.parse_args(argv)


def main(argv=None):
    """Build and write the chosen datasets; returns the exit code (2 on a bad input)."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        chosen = plan(args.tasks, args.format)
        mnist = load_mnist(args.npz)
        for task, layouts in chosen.items():
            built = build_task(task, mnist, {"train": args.train, "test": args.test}, args.seed)
            for layout in layouts:
                path = write_layout(task, layout, built, args.out)
                print(summary(task, layout, path, built), flush=True)
    except (CanvasError, OSError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
