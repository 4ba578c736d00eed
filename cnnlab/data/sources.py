"""Dataset sources, registered by ``data.dataset`` name.

A source returns `RawData`: training and (optional) test `Examples`, held either
as an image array (``N, H, W, C``, pixel values 0..255) or as a list of image
files that the pipeline streams from disk.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from cnnlab import catalog
from cnnlab.data.folders import FOLDER_SCANS, scan_label_csv, scan_mask_folder
from cnnlab.errors import DataError
from cnnlab.registry import Registry

SOURCES = Registry("data.dataset")


@dataclass(frozen=True)
class Examples:
    """Labelled images: in memory (``images``) or on disk (``paths``)."""

    labels: np.ndarray
    images: Optional[np.ndarray] = None
    paths: Optional[np.ndarray] = None
    ids: Optional[np.ndarray] = None  # each example's name in its source (`identify`): its file, or train:<i>

    def __len__(self):
        return len(self.labels)

    def take(self, index):
        """The examples at `index` (an integer array)."""
        def pick(array):
            return None if array is None else array[index]

        return replace(self, labels=self.labels[index], images=pick(self.images), paths=pick(self.paths),
                       ids=pick(self.ids))


@dataclass(frozen=True)
class RawData:
    """What a source gives: examples, class names and the images' own shape ``(H, W, C)``."""

    train: Examples
    test: Optional[Examples]
    class_names: list
    image_shape: tuple
    skipped: tuple = ()  # bad image files left out (data.on_bad_image: skip)


def load_raw(cfg, task=None):
    """Load the dataset named by ``cfg.dataset`` (a DataConfig), its labels read as `task` reads them
    (`cnnlab.tasks.base.Task.read_labels`; default: classification's class indices)."""
    from cnnlab.tasks import task_of

    return identify(SOURCES.get(cfg.dataset).fn(cfg, task or task_of(None)))


def identify(raw):
    """`raw` with each example named as it stays in its source, whatever the splits: an image file by its path,
    an image of an array by ``train:<index>`` or ``test:<index>`` (the source's own parts)."""
    def named(examples, part):
        if examples is None or examples.ids is not None:
            return examples
        ids = examples.paths.astype(str) if examples.paths is not None else \
            np.array([f"{part}:{i}" for i in range(len(examples))])
        return replace(examples, ids=ids)

    return replace(raw, train=named(raw.train, "train"), test=named(raw.test, "test"))


@dataclass(frozen=True)
class Exclusion:
    """What ``data.exclude`` left out: the file, how many it lists, how many images of train and val it named."""

    path: str
    listed: int
    left_out: int

    def describe(self):
        unmatched = f"; {self.listed - self.left_out} listed name(s) are no training or validation image" \
            if self.listed > self.left_out else ""
        return f"Excluded {self.left_out} image(s) listed in {self.path} (data.exclude){unmatched}"


def exclude(train, val, path):
    """`train` and `val` (`Examples`, val may be None) without the images the file `path` lists, and the
    `Exclusion`; never the test split, on which runs are compared. Lines: an image path (absolute, or relative
    to the file's folder) or ``train:<index>`` / ``test:<index>`` (an array source's own parts)."""
    listed = read_exclusions(path)

    def kept(examples):
        if examples is None:
            return None, 0
        names = [str(Path(i).resolve()) for i in examples.ids] if examples.paths is not None else examples.ids
        keep = np.flatnonzero([name not in listed for name in names])
        return examples.take(keep), len(examples) - len(keep)

    (train, out_train), (val, out_val) = kept(train), kept(val)
    if len(train) == 0:
        raise DataError(f"data.exclude {path} leaves no training image: it lists every one.")
    return train, val, Exclusion(str(path), len(listed), out_train + out_val)


def read_exclusions(path):
    """The set of names `path` lists: image files resolved against its folder, ``part:<index>`` as written."""
    base = Path(path).resolve().parent
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"data.exclude {path} cannot be read: {getattr(exc, 'strerror', None) or exc}.") from None
    names = set()
    for line in lines:
        name = line.split(" #", 1)[0].strip()  # a comment: a line that starts with #, or " #" after a name
        if not name or name.startswith("#"):
            continue
        part, _, index = name.partition(":")
        names.add(name if part in ("train", "test") and index.isdigit() else str((base / name).resolve()))
    return names


# --------------------------------------------------------------------------- in-memory sources


def _as_images(x, key):
    """N images of 0..255 pixels shaped (N, H, W, 1 or 3), or a `DataError` saying what is wrong."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]  # N, H, W -> N, H, W, 1
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape[1:3]:
        raise DataError(f"{key} must hold images shaped (N, H, W), (N, H, W, 1) or (N, H, W, 3). "
                        f"Received: shape {x.shape}.")
    if len(x) == 0:
        raise DataError(f"{key} holds no images (shape {x.shape}): it needs at least one per class.")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{key} must hold numbers (pixel values 0..255). Received dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{key} holds NaN or infinite pixel values: every pixel must be a number 0..255.")
    low, high = x.min(), x.max()
    if low < 0 or high > 255:
        raise DataError(f"{key} pixel values must be 0..255 (raw pixels; cnnlab scales them as data.scaling "
                        f"says). Received values from {low} to {high}.")
    return x


def _examples(x, y, source, split, task):
    x = np.asarray(x)
    if x.ndim == 0:
        raise DataError(f"{source} x_{split} must hold images shaped (N, H, W) or (N, H, W, C). "
                        f"Received: a single value.")
    images = _as_images(x, f"{source} x_{split}")
    return Examples(labels=task.read_labels(y, images, f"{source} y_{split}"), images=images)


def from_arrays(x_train, y_train, x_test=None, y_test=None, class_names=None, source="arrays", *, task, data=None):
    """Build `RawData` from arrays in ``keras.datasets`` layout, the labels read by `task` (`data`: the
    `DataConfig`, whose ``classes`` name the classes before `class_names` do)."""
    train = _examples(x_train, y_train, source, "train", task)
    test = None if x_test is None else _examples(x_test, y_test, source, "test", task)
    if test is not None and test.images.shape[1:] != train.images.shape[1:]:
        raise DataError(f"{source}: x_test images are {test.images.shape[1:]} but x_train images are "
                        f"{train.images.shape[1:]}: they must match.")
    given = data.classes if data is not None and data.classes else class_names
    names = task.class_names(train.labels, None if test is None else test.labels, given, source, data)
    return RawData(train, test, names, tuple(train.images.shape[1:]))


def _keras_dataset(name, class_names):
    def load(cfg, task):
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
        except PermissionError as exc:
            raise DataError(_cache_denied(name, exc)) from None
        except Exception as exc:  # urllib, SSL, HTTP and bad-archive errors alike
            raise DataError(f"could not download or read the {name} dataset ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Keras caches it in "
                            "~/.keras/datasets once downloaded; offline, use `data.dataset: npz` with "
                            "`data.path` pointing at a copy.") from None
        return from_arrays(x_train, y_train, x_test, y_test, class_names, source=name, task=task, data=cfg)

    load.__doc__ = f"keras.datasets.{name}: Keras's own downloader and cache."
    return load


def _cache_denied(name, exc):
    """One line for a Keras dataset cache this user may not write: the folder, KERAS_HOME, the alternatives."""
    home = os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras")
    return (f"cannot download the {name} dataset: Keras may not write its cache {str(exc.filename or home)!r} "
            f"({exc.strerror or exc}). Keras keeps datasets in $KERAS_HOME/datasets (KERAS_HOME now {home!r}; "
            "/tmp/.keras when that is not writable): set KERAS_HOME to a folder you can write to, or use "
            "`data.dataset: npz` with `data.path` pointing at a copy.")


def _known(name):
    """A dataset's shape and class count from the catalog, for describing it without a download."""
    spec = catalog.DATASETS[name]
    return {"shape": spec.shape, "classes": spec.classes}


for _name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
    SOURCES.add(_name, _keras_dataset(_name, list(catalog.DATASETS[_name].class_names)), **_known(_name))


@SOURCES.register("digits", **_known("digits"))
def load_digits(cfg, task):
    """scikit-learn's bundled 8x8 digits (1,797 images, no download); 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    return from_arrays(images, digits.target, source="digits", task=task, data=cfg)


@SOURCES.register("npz")
def load_npz(cfg, task):
    """An .npz file in keras.datasets' layout: x_train, y_train and optionally x_test, y_test, class_names."""
    path = Path(cfg.path)
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"data.path {str(path)!r} {problem}: dataset npz needs an .npz file.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data.path {str(path)!r} is not a readable .npz file: {detail}") from None
    missing = {"x_train", "y_train"} - set(arrays)
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        raise DataError(f"{path} must hold x_train and y_train (and optionally both x_test and y_test). "
                        f"Received keys: {', '.join(sorted(arrays))}.")
    names = arrays.get("class_names")
    return from_arrays(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
                       None if names is None else list(np.atleast_1d(names)), source=str(path), task=task, data=cfg)


# --------------------------------------------------------------------------- image folders


@SOURCES.register("directory")
def load_directory(cfg, task):
    """A folder as the task lays it out (`cnnlab.data.folders.FOLDER_SCANS`): class sub-folders, or
    ``images/`` and ``masks/`` (segmentation); scanned for bad images first, then streamed from disk."""
    scan = FOLDER_SCANS[task.folder_layout]
    train = scan(cfg.path, cfg, "data.path")
    test = scan(cfg.test_path, cfg, "data.test_path", class_names=train.class_names) if cfg.test_path else None
    return _from_scans(cfg, train, test)


@SOURCES.register("csv")
def load_csv(cfg, task):
    """A CSV of ``path,labels`` (multi-label: label names separated by spaces), its images streamed from disk."""
    train = scan_label_csv(cfg.path, on_bad_image=cfg.on_bad_image, key="data.path")
    test = None
    if cfg.test_path:
        test = scan_label_csv(cfg.test_path, on_bad_image=cfg.on_bad_image, key="data.test_path",
                              class_names=train.class_names)
    return _from_scans(cfg, train, test)


PETS_URL = "https://thor.robots.ox.ac.uk/datasets/pets/"  # where the keras-io segmentation example downloads
TRIMAP_CLASSES = {2: 0, 1: 1, 3: 2}  # a trimap's value -> the class (background, pet, border)


@SOURCES.register("oxford_pets", shape=(None, None, 3), classes=3)  # the photos vary in size: data.image_size
def load_oxford_pets(cfg, task):
    """The Oxford-IIIT Pet trimaps (Parkhi et al. 2012; the keras-io segmentation example's data): 3,680
    training and 3,669 test photos, each pixel background, pet or border. Downloaded once with Keras's
    downloader into Keras's cache, the trimaps re-indexed there as masks (`pets_folder`)."""
    names, folder = list(catalog.DATASETS["oxford_pets"].class_names), pets_folder()
    train, test = (scan_mask_folder(folder / split, on_bad_image=cfg.on_bad_image, key="data.dataset oxford_pets",
                                    class_names=names, ignore_index=cfg.ignore_index)
                   for split in ("trainval", "test"))
    return _from_scans(cfg, train, test)


def pets_folder():
    """``$KERAS_HOME/datasets/oxford_pets``, with ``trainval/`` and ``test/`` as the dataset's lists split it, each
    holding ``images/`` (links to the photos) and ``masks/`` (the trimaps as class indices); made on first use
    from the two archives (downloaded by ``keras.utils.get_file``), beside its place and then swapped in."""
    import shutil

    from PIL import Image

    home = Path(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"))
    folder = home / "datasets" / "oxford_pets"
    if (folder / "test" / "masks").is_dir():
        return folder
    photos, notes = (_download(f"oxford_pets_{what}.tar.gz", PETS_URL + f"{what}.tar.gz", home)
                     for what in ("images", "annotations"))
    lookup = np.arange(256, dtype=np.uint8)
    for value, cls in TRIMAP_CLASSES.items():
        lookup[value] = cls
    partial = folder.with_name(".partial-oxford_pets")
    shutil.rmtree(partial, ignore_errors=True)
    for split in ("trainval", "test"):
        (partial / split / "images").mkdir(parents=True)
        (partial / split / "masks").mkdir()
        listing = (notes / "annotations" / f"{split}.txt").read_text().splitlines()
        for name in (line.split()[0] for line in listing if line.strip() and not line.startswith("#")):
            os.symlink(photos / "images" / f"{name}.jpg", partial / split / "images" / f"{name}.jpg")
            with Image.open(notes / "annotations" / "trimaps" / f"{name}.png") as trimap:
                Image.fromarray(lookup[np.asarray(trimap)]).save(partial / split / "masks" / f"{name}.png")
    os.replace(partial, folder)
    return folder


def _download(name, url, home):
    """``keras.utils.get_file`` of an archive into ``home/datasets``, extracted: the extracted folder."""
    import keras

    try:
        return Path(keras.utils.get_file(name, url, cache_dir=str(home), extract=True))
    except PermissionError as exc:
        raise DataError(_cache_denied("oxford_pets", exc)) from None
    except Exception as exc:  # urllib, SSL, HTTP and bad-archive errors alike
        raise DataError(f"could not download or read {url} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Keras caches it in "
                        "$KERAS_HOME/datasets once downloaded; offline, use `data.dataset: directory` with "
                        "images/ and masks/ folders.") from None


def _from_scans(cfg, train, test):
    """`RawData` of the checked image files of a training (and a test) scan, of one size unless resized."""
    shapes = set(train.shapes) | (set(test.shapes) if test else set())
    if cfg.image_size is None and len(shapes) > 1:
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(shapes)[:4])
        raise DataError(f"images in {cfg.path} have different sizes ({sizes}, ...): set data.image_size "
                        "to the [height, width] to resize them to.")
    h, w = sorted(shapes)[0]
    channels = 1 if train.grayscale and (test is None or test.grayscale) else 3
    examples = [None if s is None else Examples(labels=s.labels, paths=s.paths) for s in (train, test)]
    skipped = train.skipped + (test.skipped if test else ())
    return RawData(examples[0], examples[1], train.class_names, (h, w, channels), skipped)
