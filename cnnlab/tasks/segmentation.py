"""Semantic segmentation: a class for every pixel (the FCN of *Deep Learning from Scratch* ch.8).

Labels are masks the size of their images, each pixel a class index (``data.classes``
names them); ``data.ignore_index`` (default 255, VOC's void) marks pixels that count
for nothing. Masks come from an npz's ``y`` ``(N, H, W)`` or a folder's ``masks/``
PNGs (palette PNGs read as their indices), are resized with their images by nearest
neighbour and moved with them by augmentation. The loss is cross-entropy per pixel;
the metrics are pixel accuracy, per-class and mean IoU and Dice, from one confusion
matrix over every pixel of the split. Predict writes an index mask (a palette PNG)
and a colour overlay per image.
"""

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cnnlab.console import aligned
from cnnlab.errors import DataError
from cnnlab.tasks.base import PredictedFiles, Task, register_task

DEFAULT_IGNORE = 255
OVERLAY_ALPHA = 0.5  # the colour's share of an overlay pixel
PREDICTIONS_FILE = "predictions.csv"  # beside the masks in predict's --output folder


@register_task("segmentation")
class Segmentation(Task):
    """A class per pixel."""

    name = "segmentation"
    activation = "softmax"
    agreement_name = "pixel"
    spatial_labels = True
    folder_layout = "masks"
    output_folder = True

    # ------------------------------------------------------------------ data

    def read_labels(self, y, images, key):
        """Masks ``(N, H, W)`` (or ``(N, H, W, 1)``) of class indices 0..255, one per image and of its size."""
        y = np.asarray(y)
        if y.ndim == 4 and y.shape[-1] == 1:
            y = y[..., 0]
        if y.ndim != 3 or y.shape != images.shape[:3]:
            raise DataError(f"{key} must hold one mask per image, shaped like the images {images.shape[:3]} "
                            f"(N, H, W), each pixel a class index (task: segmentation). Received shape {y.shape}.")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 255:
            raise DataError(f"{key} mask pixels must be class indices 0..255 (integers). Received dtype "
                            f"{y.dtype}, values {y.min()} to {y.max()}.")
        return y.astype(np.uint8)

    def class_names(self, train, test, names, source, data=None):
        values = set(np.unique(train).tolist()) | (set(np.unique(test).tolist()) if test is not None else set())
        return mask_class_names(values, names, source, data.ignore_index if data else DEFAULT_IGNORE)

    def stratify(self, labels):
        """Masks are not one class to stratify by: splits are drawn at random (seeded)."""
        return None

    def fit_labels(self, labels, shape):
        """Masks (one or a batch; arrays, or PNG paths read by `read_mask`) resized to `shape` by nearest neighbour."""
        import tensorflow as tf

        size = tuple(shape[:2])

        def fit(mask):
            if tuple(mask.shape[-2:]) == size:
                return mask
            return tf.image.resize(mask[..., tf.newaxis], size, method="nearest")[..., 0]

        if labels.dtype != tf.string:
            return fit(labels)
        if labels.shape.rank == 0:
            return fit(read_mask(labels))
        return tf.map_fn(lambda path: fit(read_mask(path)), labels,
                         fn_output_signature=tf.TensorSpec(size, tf.uint8))

    def targets(self, labels, classes):
        import tensorflow as tf

        return tf.cast(labels, tf.int32)

    # ------------------------------------------------------------------ training

    def loss(self, cfg, training, labels=None):
        import keras

        ignore = cfg.data.ignore_index
        if training.class_weight != "balanced" or labels is None:
            return keras.losses.SparseCategoricalCrossentropy(ignore_class=ignore)
        from cnnlab.training.losses import WeightedSparseCategoricalCrossentropy

        weights = balanced_weights(labels, ignore)  # up to the largest class in the training masks; 1 beyond
        return WeightedSparseCategoricalCrossentropy(np.pad(weights, (0, 256 - len(weights)), constant_values=1.0)
                                                     .tolist(), ignore)

    def finish_model(self, model, cfg, data):
        """With ``training.class_weight: balanced``, the probabilities divided back by the weights outside
        training (`cnnlab.models.blocks.PriorCorrection`): the masks are not over-segmented."""
        if cfg.training.class_weight != "balanced":
            return model
        import keras

        from cnnlab.models.blocks import PriorCorrection

        weights = balanced_weights(data.train.labels, cfg.data.ignore_index)
        weights = np.concatenate([weights, np.ones(max(0, data.classes - len(weights)))])[:data.classes]
        out = PriorCorrection(weights.tolist(), dtype="float32", name="prior_correction")(model.outputs[0])
        return keras.Model(model.inputs[0], out, name=model.name)  # one input, not a list of one (exports' signature)

    def metrics(self, classes, cfg):
        import keras

        from cnnlab.catalog import TASK_METRICS
        from cnnlab.training.losses import PixelAccuracy

        accuracy, mean_iou = TASK_METRICS[self.name]  # the names the config's monitors are checked against
        ignore = cfg.data.ignore_index
        return [PixelAccuracy(ignore_class=ignore, name=accuracy),
                keras.metrics.MeanIoU(classes, ignore_class=ignore, sparse_y_pred=False, name=mean_iou)]

    def class_weight(self, cfg, labels, class_names):
        return None  # balanced weights are the loss's, per pixel (Keras's class_weight takes one class per image)

    # ------------------------------------------------------------------ evaluation

    def scores(self, outputs, targets, class_names, cfg, calibration=None):
        return scores(outputs, targets, class_names, ignore_of(cfg))

    def summary(self, result):
        return format_metrics(result)

    def headline(self, result):
        return {"mean_iou": result["mean_iou"], "pixel_accuracy": result["pixel_accuracy"], "loss": result["loss"]}

    def cards(self, result):
        return [("mean IoU", result.get("mean_iou"), "percent"), ("pixel accuracy", result.get("pixel_accuracy"),
                "percent"), ("mean Dice", result.get("mean_dice"), "number"), ("loss", result.get("loss"), "number"),
                ("images", result.get("images"), "count")]

    def keep(self, outputs, targets, cfg, calibration=None):
        """The images with wrong pixels, the largest share wrong first."""
        error = image_errors(outputs, targets, ignore_of(cfg))
        order = np.argsort(-error, kind="stable")
        return order[error[order] > 0]

    def plots(self, folder, result, kept, class_names):
        from cnnlab.visual import plots

        plots.confusion(np.array(result["confusion_matrix"]), class_names, folder / "confusion_matrix.png")
        if kept:
            plots.labelled_grid(*worst_overlays(kept, result["ignore_index"]), folder / "worst.png")

    # ------------------------------------------------------------------ predict, export, report

    def condense(self, outputs):
        """What predict keeps of a batch of class scores: each pixel's class and its probability."""
        return list(zip(outputs.argmax(axis=-1).astype(np.uint8), outputs.max(axis=-1).astype(np.float16)))

    def predictions(self, found, outputs, problems, class_names, calibration=None, **options):
        rows = []
        for index, path in enumerate(found):
            if index not in outputs:
                rows.append(Row(path, error=problems[index]))
                continue
            mask, confidence = outputs[index]
            counts = np.bincount(mask.ravel(), minlength=len(class_names))
            rows.append(Row(path, mask, float(confidence.mean()), tuple((counts / mask.size).tolist())))
        return Predictions(rows, class_names)

    def agreement(self, expected, got, cfg, calibration=None):
        """Pixels whose class is the same (a target's ignored pixels left out), of the batch's."""
        expected, got = np.asarray(expected), np.asarray(got)
        if expected.ndim == got.ndim:  # the Keras model's scores: every pixel counts
            truth, valid = expected.argmax(axis=-1), True
        else:  # the masks
            truth, valid = expected, expected != ignore_of(cfg)
        agree = (got.argmax(axis=-1) == truth) & valid
        return int(agree.sum()), int(np.broadcast_to(valid, truth.shape).sum())

    def report(self, page, model, cfg, data, split, outputs, targets, echo):
        from cnnlab.inference.predictions import images_at
        from cnnlab.visual import plots

        page.figures["confusion"] = plots.png(plots.confusion, np.array(page.metrics["confusion_matrix"]),
                                              data.class_names)
        worst = self.keep(outputs, targets, cfg)[:10].tolist()
        images = images_at(data, split, worst)
        kept = [(image, outputs[i], targets[i]) for image, i in zip(images, worst)]
        if kept:
            page.figures["mistakes"] = plots.png(plots.labelled_grid, *worst_overlays(kept, data.ignore_index))
        else:
            page.notes["mistakes"] = f"No wrong pixel in the {split} split."


def ignore_of(cfg):
    """The run's ``data.ignore_index`` (the default for a bare model)."""
    return cfg.data.ignore_index if cfg is not None else DEFAULT_IGNORE


def balanced_weights(masks, ignore_index=DEFAULT_IGNORE):
    """Per-class pixel weights as scikit-learn's "balanced" weighs classes: pixels / (classes x the class's
    pixels), over the training masks (arrays, or PNG paths); a class without pixels gets 1."""
    counts = np.zeros(256, np.int64)
    for mask in (mask_array(m) if isinstance(m, str) else m for m in masks):
        counts += np.bincount(np.asarray(mask, np.uint8).ravel(), minlength=256)
    counts[ignore_index] = 0
    classes = int(np.flatnonzero(counts).max()) + 1 if counts.any() else 1
    counts = counts[:classes]
    present = counts > 0
    return np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 1.0)


def mask_class_names(values, names, source, ignore_index=DEFAULT_IGNORE):
    """The class names of masks holding `values`: `names` (``data.classes`` or the data's own), else the
    indices up to the largest; a value beyond the names (other than `ignore_index`) is a `DataError`."""
    classes = sorted(v for v in values if v != ignore_index)
    if names is None:
        names = [str(c) for c in range(max(classes, default=0) + 1)]
    names = [str(n) for n in names]
    beyond = [v for v in classes if v >= len(names)]
    if beyond:
        raise DataError(f"{source}: mask value(s) {', '.join(map(str, beyond[:10]))} are no class: "
                        f"{len(names)} class names ({', '.join(names[:10])}) name the indices 0..{len(names) - 1}, "
                        f"and data.ignore_index is {ignore_index}. Name every class in data.classes, or mark void "
                        "pixels with data.ignore_index.")
    if len(names) < 2:
        raise DataError(f"{source}: the masks hold {len(names)} class ({', '.join(names)}): segmentation needs at "
                        "least 2 (e.g. background and object).")
    return names


def read_mask(path):
    """A mask PNG as ``(H, W)`` uint8 class indices (a palette PNG's indices, not its colours): Pillow in a
    ``tf.numpy_function``, since TensorFlow decodes palettes to colours."""
    import tensorflow as tf

    mask = tf.numpy_function(lambda p: mask_array(np.asarray(p).item().decode()), [path], tf.uint8, stateful=False)
    return tf.ensure_shape(mask, (None, None))


def mask_array(path):
    """The pixels of a mask file: ``(H, W)`` uint8 (modes L and P as stored; others as ``L``)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image if image.mode in ("L", "P") else image.convert("L"), dtype=np.uint8)


def scores(outputs, targets, class_names, ignore_index=DEFAULT_IGNORE):
    """Pixel accuracy, per-class and mean IoU and Dice, loss and the confusion matrix, over every pixel whose
    target is not `ignore_index`. A class absent from both target and prediction has no IoU (None) and is
    left out of the means."""
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    classes = len(class_names)
    valid = targets != ignore_index
    truth, predicted = targets[valid].astype(np.int64), outputs.argmax(axis=-1)[valid]
    matrix = np.bincount(truth * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    hits, true, chosen = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    union = true + chosen - hits
    iou = [float(hits[c] / union[c]) if union[c] else None for c in range(classes)]
    dice = [float(2 * hits[c] / (true[c] + chosen[c])) if union[c] else None for c in range(classes)]
    p = np.clip(np.take_along_axis(outputs[valid], truth[:, None], axis=-1)[:, 0], 1e-7, 1.0)
    known = [v for v in iou if v is not None]
    per_class = {name: {"iou": iou[c], "dice": dice[c], "pixels": int(true[c]), "predicted_pixels": int(chosen[c])}
                 for c, name in enumerate(class_names)}
    return {"images": len(targets), "pixels": int(valid.sum()), "loss": float(-np.mean(np.log(p))),
            "pixel_accuracy": float(hits.sum() / max(matrix.sum(), 1)),
            "mean_iou": float(np.mean(known)) if known else None,
            "iou": {name: iou[c] for c, name in enumerate(class_names)},
            "dice": {name: dice[c] for c, name in enumerate(class_names)},
            "mean_dice": float(np.mean([v for v in dice if v is not None])) if known else None,
            "per_class": per_class, "class_names": list(class_names), "ignore_index": ignore_index,
            "confusion_matrix": matrix.tolist()}


def image_errors(outputs, targets, ignore_index=DEFAULT_IGNORE):
    """Each image's share of wrong pixels (its ignored pixels left out)."""
    valid = targets != ignore_index
    wrong = (outputs.argmax(axis=-1) != targets) & valid
    return wrong.sum(axis=(1, 2)) / np.maximum(valid.sum(axis=(1, 2)), 1)


def format_metrics(result):
    """A short human-readable report of `scores`."""
    m = result["mean_iou"]
    lines = [f"{result['split']}: {result['images']} images  loss {result['loss']:.4f}  pixel accuracy "
             f"{result['pixel_accuracy']:.4f}  mean IoU {m:.4f}  mean Dice {result['mean_dice']:.4f}"
             if m is not None else f"{result['split']}: {result['images']} images (no labelled pixel)"]
    rows = [("class", "IoU", "Dice", "pixels", "predicted")]
    for name, s in result["per_class"].items():
        rows.append((name, "-" if s["iou"] is None else f"{s['iou']:.3f}",
                     "-" if s["dice"] is None else f"{s['dice']:.3f}", str(s["pixels"]), str(s["predicted_pixels"])))
    return "\n".join(lines + aligned(rows, right=(1, 2, 3, 4)))


# --------------------------------------------------------------------------- colours


def palette(classes):
    """``(classes, 3)`` uint8 colours: PASCAL VOC's colour map (class 0 black), the colours of its masks."""
    colours = np.zeros((max(classes, 256), 3), np.uint8)
    for index in range(len(colours)):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours[index] = (r, g, b)
    return colours


def overlay(image, mask, ignore_index=DEFAULT_IGNORE):
    """An RGB uint8 picture of `image` (0..255, ``(H, W, 1 or 3)``) with `mask`'s class colours blended over
    it (ignored pixels left as they are)."""
    rgb = np.broadcast_to(np.asarray(image, np.float32), (*mask.shape, 3)) if np.shape(image)[-1] == 1 \
        else np.asarray(image, np.float32)
    colours = palette(int(mask.max()) + 1)[mask].astype(np.float32)
    blended = np.where((mask != ignore_index)[..., None], (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * colours, rgb)
    return np.clip(blended, 0, 255).astype(np.uint8)


def mask_overlay(picture, mask):
    """`mask` (a class per pixel, at the model's input size) brought to `picture`'s own size by nearest
    neighbour, and its `overlay` on `picture` (``(H, W, 3)`` uint8): ``(mask (H, W) uint8, overlay)``."""
    from PIL import Image

    resized = np.asarray(Image.fromarray(np.asarray(mask, np.uint8), mode="L").resize(picture.shape[1::-1],
                                                                                      Image.NEAREST))
    return resized, overlay(picture, resized)


def worst_overlays(kept, ignore_index):
    """``(pictures, titles)`` for evaluation's grid: each kept image's true and predicted masks over it."""
    pictures, titles = [], []
    for image, output, target in kept:
        predicted = output.argmax(axis=-1).astype(np.uint8)
        wrong = image_errors(output[None], target[None], ignore_index)[0]
        pictures.append(np.concatenate([overlay(image, target.astype(np.uint8), ignore_index),
                                        overlay(image, predicted)], axis=1))
        titles.append(f"true | predicted\n{100 * wrong:.1f} % of pixels wrong")
    return pictures, titles


# --------------------------------------------------------------------------- predict's rows and files


@dataclass(frozen=True)
class Row:
    """One file's prediction: its mask (class per pixel, at the model's input size), the mean probability of
    the chosen classes, each class's share of the pixels; or an error."""

    path: str
    mask: Optional[np.ndarray] = None
    confidence: Optional[float] = None
    shares: Optional[tuple] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class Predictions(PredictedFiles):
    """The rows of one `predict` call of a segmentation run."""

    rows: list
    class_names: list

    def _present(self, row):
        """``[(class name, share)]`` of the classes on at least one pixel, the largest share first."""
        order = np.argsort(-np.asarray(row.shares), kind="stable")
        return [(self.class_names[c], row.shares[c]) for c in order if row.shares[c] > 0]

    def csv_text(self):
        """path, classes (name:share, largest first), confidence, mask (the file written), error."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "classes", "confidence", "mask", "error"])
        for row, mask in zip(self.rows, self.mask_names()):
            present = " ".join(f"{name}:{share:.4f}" for name, share in self._present(row)) if row.error is None else ""
            writer.writerow([row.path, present, "" if row.confidence is None else round(row.confidence, 6),
                             mask or "", row.error or ""])
        return buffer.getvalue()

    def json_text(self):
        records = [{"path": row.path,
                    "classes": None if row.error else {name: share for name, share in self._present(row)},
                    "confidence": row.confidence, "mask": mask, "error": row.error}
                   for row, mask in zip(self.rows, self.mask_names())]
        return json.dumps(records, indent=2) + "\n"

    def table_lines(self):
        """path, the classes present with their share of the pixels, the mean confidence, error (when any)."""
        has_errors = bool(self.bad)
        cells = [["path", "classes", "confidence"] + (["error"] if has_errors else [])]
        for row in self.rows:
            present = ", ".join(f"{name} {100 * share:.1f}%" for name, share in self._present(row)[:5]) \
                if row.error is None else ""
            cells.append([row.path, present, "" if row.confidence is None else f"{row.confidence:.3f}"]
                         + ([row.error or ""] if has_errors else []))
        return aligned(cells)

    def mask_names(self):
        """Each row's mask file name in the output folder (``<stem>.png``; a repeated stem gets ``_<n>``), or None."""
        names, used = [], set()
        for index, row in enumerate(self.rows):
            if row.error is not None:
                names.append(None)
                continue
            stem = Path(row.path).stem
            name = f"{stem}.png" if stem not in used else f"{stem}_{index}.png"
            used.add(stem)
            names.append(name)
        return names

    def write(self, output):
        """Into the folder `output`: each image's index mask ``<stem>.png`` (a palette PNG at the image's own
        size) and ``<stem>_overlay.png``, and ``predictions.csv``; each file written atomically."""
        from PIL import Image

        from cnnlab import files

        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        colours = palette(len(self.class_names)).ravel().tolist()
        for row, name in zip(self.rows, self.mask_names()):
            if name is None:
                continue
            with Image.open(row.path) as original:
                picture = np.asarray(original.convert("RGB"))
            mask, coloured = mask_overlay(picture, row.mask)
            indexed = Image.fromarray(mask, mode="P")
            indexed.putpalette(colours)
            coloured = Image.fromarray(coloured)
            for path, image in ((folder / name, indexed), (folder / f"{Path(name).stem}_overlay.png", coloured)):
                with files.atomic_path(path) as tmp:
                    image.save(tmp, format="PNG")
        files.write_text(folder / PREDICTIONS_FILE, self.csv_text())
