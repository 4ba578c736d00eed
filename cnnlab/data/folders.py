"""Image folders, checked image by image before training: one sub-folder per class, or (segmentation)
``images/`` and ``masks/`` side by side (`FOLDER_SCANS`, by the task's `folder_layout`)."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DECODABLE = {"JPEG", "MPO", "PNG", "BMP", "GIF"}  # what tf.io.decode_image reads
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass(frozen=True)
class FolderScan:
    """The good images of a folder, with what the scan learnt about them."""

    paths: np.ndarray
    labels: np.ndarray
    class_names: list
    shapes: frozenset  # distinct (height, width)
    grayscale: bool  # every image is single-channel
    skipped: tuple  # (file, reason) of bad files left out


def class_folders(root, key):
    """Sorted class sub-folder names of `root`; hidden folders (``.ipynb_checkpoints``) ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{key} {str(root)!r} is not a folder: give a folder with one sub-folder per class.")
    try:
        entries = list(root.iterdir())
    except OSError as exc:
        raise DataError(f"{key} {str(root)!r} cannot be read: {exc.strerror or exc}.") from None
    folders = sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))
    if not folders and any(p.is_file() and not p.name.startswith(".") for p in entries):
        raise DataError(f"{key} {str(root)!r} holds files but no class sub-folders: it needs class sub-folders, "
                        f"one per class (e.g. {root / 'cat' / '001.jpg'}).")
    return folders


def visible_files(folder):
    """Every file under `folder`, recursively and sorted, hidden files and folders (``.name``) left out."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield os.path.join(dirpath, name)


def check_image(path):
    """Return ``(height, width, grayscale)`` of a readable image, or raise ValueError saying why not."""
    from PIL import Image

    if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise ValueError(f"not an image file (allowed: {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: finds truncated files, not just bad headers
            if image.format not in DECODABLE:
                raise ValueError(f"{image.format} data, not jpg, png, bmp or gif")
            return image.height, image.width, image.mode in GRAY_MODES
    except Image.DecompressionBombError:
        raise ValueError(f"image too large to decode safely (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels: "
                         "a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"unreadable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def scan_folder(root, *, on_bad_image="error", key="data.path", class_names=None):
    """Find and check every image under `root`'s class sub-folders.

    Args:
        root: the folder.
        on_bad_image: ``error`` stops with the list of bad files; ``skip`` leaves them out.
        key: the config key naming `root`, for messages.
        class_names: the training classes, when scanning a separate test folder.
    """
    found = class_folders(root, key)
    names = list(class_names) if class_names is not None else found
    _check_classes(found, names, root, key, is_test=class_names is not None)
    checked = _Checked()
    for label, name in enumerate(names):
        folder = Path(root) / name
        count = sum(checked.add(path, label) for path in (visible_files(folder) if folder.is_dir() else ()))
        if count == 0 and class_names is None:
            raise DataError(f"class folder {str(folder)!r} has no usable images "
                            f"(allowed: {', '.join(e[1:] for e in IMAGE_EXTENSIONS)}).")
    return checked.scan(root, key, names, on_bad_image, np.int64)


class _Checked:
    """Image files checked one by one (`check_image`): the good ones with their labels, the bad with why."""

    def __init__(self):
        self.paths, self.labels, self.shapes, self.bad, self.gray = [], [], set(), [], True

    def add(self, path, label, check_pair=None):
        """Check `path`; keep it with `label` if it is a readable image (and ``check_pair(height, width)``,
        given, raises no ValueError). Whether it was kept."""
        try:
            h, w, is_gray = check_image(path)
            if check_pair is not None:
                check_pair(h, w)
        except ValueError as exc:
            self.bad.append((path, str(exc)))
            return False
        self.paths.append(path)
        self.labels.append(label)
        self.shapes.add((h, w))
        self.gray = self.gray and is_gray
        return True

    def scan(self, where, key, names, on_bad_image, dtype):
        """The `FolderScan`, or a `DataError` for bad files (``data.on_bad_image: error``) or none good."""
        if self.bad and on_bad_image == "error":
            listed = "; ".join(f"{p}: {why}" for p, why in self.bad[:5])
            more = f" and {len(self.bad) - 5} more" if len(self.bad) > 5 else ""
            raise DataError(f"{len(self.bad)} bad image file(s) in {where}: {listed}{more}. Remove them, or set "
                            "data.on_bad_image: skip to train on the rest.")
        if not self.paths:
            raise DataError(f"{key} {str(where)!r} holds no usable images.")
        return FolderScan(np.array(self.paths), np.array(self.labels, dtype=dtype), names, frozenset(self.shapes),
                          self.gray, tuple(self.bad))


CSV_COLUMNS = ("path", "labels")


def scan_label_csv(path, *, on_bad_image="error", key="data.path", class_names=None):
    """Read and check a multi-label CSV: columns ``path,labels``, each image's path relative to the CSV's
    folder and its label names separated by spaces (empty: no label).

    The labels become multi-hot rows over the class names: the sorted names the CSV
    uses, or `class_names` (the training CSV's, for a separate test CSV).
    """
    rows = _label_rows(path, key)
    names = list(class_names) if class_names is not None else sorted({n for _, labels in rows for n in labels})
    unknown = sorted({n for _, labels in rows for n in labels} - set(names))
    if unknown:
        raise DataError(f"{key} {str(path)!r} has label(s) {', '.join(unknown[:10])} that the training CSV does "
                        f"not have (training labels: {', '.join(names[:20])}).")
    if not names:
        raise DataError(f"{key} {str(path)!r} names no label at all: the labels column holds each image's label "
                        "names separated by spaces.")
    index = {name: i for i, name in enumerate(names)}
    checked = _Checked()
    for file, labels in rows:
        hot = np.zeros(len(names), np.uint8)
        hot[[index[n] for n in labels]] = 1
        checked.add(str(Path(path).parent / file), hot)
    return checked.scan(path, key, names, on_bad_image, np.uint8)


def _label_rows(path, key):
    """``[(image path, [label names])]`` of a ``path,labels`` CSV, or a `DataError` saying what is wrong."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(CSV_COLUMNS) <= set(reader.fieldnames):
                raise DataError(f"{key} {str(path)!r} must be a CSV with the header path,labels. Received the "
                                f"columns: {', '.join(reader.fieldnames or []) or 'none'}.")
            rows = [((row["path"] or "").strip(), (row["labels"] or "").split()) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{key} {str(path)!r} is not a readable CSV: {exc}") from None
    empty = [i + 2 for i, (file, _) in enumerate(rows) if not file]
    if empty:
        raise DataError(f"{key} {str(path)!r} has rows without a path (line {empty[0]}).")
    if not rows:
        raise DataError(f"{key} {str(path)!r} lists no images.")
    return rows


def _check_classes(found, names, root, key, *, is_test):
    if is_test:
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise DataError(f"{key} {str(root)!r} has class folder(s) {', '.join(unknown)} that the training "
                            f"data does not have (training classes: {', '.join(names)}).")
    elif len(found) < 2:
        raise DataError(f"{key} {str(root)!r} has {len(found)} class sub-folder(s): a classifier needs at "
                        "least 2 (one sub-folder of images per class).")


def scan_mask_folder(root, *, on_bad_image="error", key="data.path", class_names=None, ignore_index=255):
    """Find and check the images of ``root/images`` and their masks ``root/masks/<image stem>.png``.

    A mask is a PNG of the image's size whose pixel values are class indices (a palette
    PNG's indices, not its colours). An image without a readable mask of its size is a
    bad file (``on_bad_image``). The class names are `class_names` (``data.classes``,
    or the training folder's for a test folder), else the indices up to the largest value.
    The scan's labels are the masks' paths.
    """
    from cnnlab.tasks.segmentation import mask_array, mask_class_names

    root = Path(root)
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DataError(f"{key} {str(root)!r} must hold images/ and masks/ (task segmentation): each image "
                        f"images/<name>.jpg|png with its mask masks/<name>.png, each pixel a class index.")
    checked, values = _Checked(), set()

    for path in visible_files(images):
        mask = masks / f"{Path(path).stem}.png"

        def check_pair(height, width, mask=mask):
            if not mask.is_file():
                raise ValueError(f"no mask {mask}")
            try:
                pixels = mask_array(mask)
            except (OSError, SyntaxError, ValueError) as exc:
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"unreadable mask {mask} ({detail})") from None
            if pixels.shape != (height, width):
                raise ValueError(f"mask {mask} is {pixels.shape[1]}x{pixels.shape[0]} but the image "
                                 f"{width}x{height}")
            values.update(np.unique(pixels).tolist())

        checked.add(path, str(mask), check_pair)
    scan = checked.scan(root, key, [], on_bad_image, str)
    names = mask_class_names(values, class_names, f"{key} {str(root)!r}", ignore_index)
    return FolderScan(scan.paths, scan.labels, names, scan.shapes, scan.grayscale, scan.skipped)


def _class_layout(root, data, key, class_names=None):
    return scan_folder(root, on_bad_image=data.on_bad_image, key=key, class_names=class_names)


def _mask_layout(root, data, key, class_names=None):
    return scan_mask_folder(root, on_bad_image=data.on_bad_image, key=key, class_names=class_names or data.classes,
                            ignore_index=data.ignore_index)


# A task's folder_layout -> its scan ``(folder, DataConfig, key, class_names=the training's, for a test folder)``.
FOLDER_SCANS = {"classes": _class_layout, "masks": _mask_layout}
