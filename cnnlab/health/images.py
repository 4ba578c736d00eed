"""Each image's problems, by cleanvision, over every split at once (so a duplicate across splits is seen).

The splits are handed to cleanvision as one indexable dataset that reads an image only
when asked (`SplitImages`): an image file is opened then, an array's image converted
then; cleanvision keeps only each image's statistics and hashes, so memory stays flat
as a folder grows.
"""

from dataclasses import dataclass

import numpy as np

# cleanvision's issue types, but grayscale (a grayscale dataset is not a problem for a CNN)
ISSUE_TYPES = ("exact_duplicates", "near_duplicates", "blurry", "dark", "light", "low_information",
               "odd_aspect_ratio", "odd_size")
SPLITS = ("train", "val", "test")
TRAIT_SHARE = 0.5  # an issue on more images than this is the dataset's trait, not a problem of some images


@dataclass(frozen=True)
class Item:
    """One image of the data: its split, index in that split, name in the source, and label."""

    split: str
    index: int
    id: str
    label: object


class SplitImages:
    """The images of a `DataBundle`'s splits, one after another, as cleanvision's torchvision-style dataset:
    ``dataset[i]`` is ``(PIL image, i)``, read when asked."""

    def __init__(self, bundle):
        self.parts = [(name, bundle.split(name)) for name in SPLITS if getattr(bundle, name) is not None]
        self.items = [Item(name, i, str(examples.ids[i]), examples.labels[i])
                      for name, examples in self.parts for i in range(len(examples))]
        self.starts = np.cumsum([0] + [len(examples) for _, examples in self.parts])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, position):
        return self.image(position), position

    def position(self, split, index):
        """Where the image `index` of `split` is in this dataset."""
        part = [name for name, _ in self.parts].index(split)
        return int(self.starts[part]) + int(index)

    def image(self, position):
        """The PIL image at `position` (RGB or L)."""
        from PIL import Image

        part = int(np.searchsorted(self.starts, position, side="right")) - 1
        examples = self.parts[part][1]
        index = position - int(self.starts[part])
        if examples.images is not None:
            array = np.asarray(examples.images[index])
            array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
            return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
        with Image.open(examples.paths[index]) as opened:
            return opened.convert("RGB" if opened.mode not in ("L", "RGB") else opened.mode)


@dataclass
class ImageFindings:
    """What cleanvision found: per issue type, the positions flagged (worst first) and each one's score; the
    duplicate sets (positions); the sets that span several splits (leakage)."""

    flagged: dict  # issue type -> [(position, score)], worst first
    duplicate_sets: dict  # "exact_duplicates" / "near_duplicates" -> [[positions]]
    leaks: dict  # the same, only the sets with images of several splits
    traits: dict  # issue type -> share of the images, for one flagged on most images (the dataset's trait)


def find_image_issues(images, progress=False):
    """Run cleanvision over `images` (`SplitImages`); the `ImageFindings`."""
    import contextlib
    import io

    from cleanvision import Imagelab

    quiet = contextlib.ExitStack()
    if not progress:  # cleanvision prints and draws progress bars of its own
        quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
        quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with quiet:
        lab = Imagelab(torchvision_dataset=images, verbose=progress)
        # one process: cleanvision's pool forks this process, whose TensorFlow threads a fork can deadlock
        lab.find_issues({name: {} for name in ISSUE_TYPES}, n_jobs=1, verbose=progress)
    flagged, traits = {}, {}
    for name in ISSUE_TYPES:
        column = f"is_{name}_issue"
        if column not in lab.issues:
            continue
        hits = lab.issues[lab.issues[column]]
        if not name.endswith("duplicates") and len(hits) > TRAIT_SHARE * len(images):
            traits[name] = len(hits) / len(images)  # cleanvision's thresholds are for photos: tiny digits trip them
            continue
        scores = hits[f"{name}_score"].astype(float)
        flagged[name] = [(int(p), float(s)) for p, s in sorted(scores.items(), key=lambda kv: kv[1])]
    duplicate_sets = {name: [[int(p) for p in group] for group in lab.info.get(name, {}).get("sets", [])]
                      for name in ("exact_duplicates", "near_duplicates")}
    leaks = {name: [group for group in sets if len({images.items[p].split for p in group}) > 1]
             for name, sets in duplicate_sets.items()}
    return ImageFindings(flagged, duplicate_sets, leaks, traits)
