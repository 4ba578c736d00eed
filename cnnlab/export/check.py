"""Every export checks itself: the artifact, in its own runtime, against the Keras model on held-out images."""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnnlab.models.heads import main_probabilities

FLOORS = {"none": 0.99, "float16": 0.99, "int8": 0.97}  # least agreement with Keras per quantisation
LATENCY_IMAGES = 50
WARMUP = 3


@dataclass(frozen=True)
class CheckResult:
    """What the check measured.

    Attributes:
        images: how many images were compared.
        agreement: the task's agreement with the Keras model (classification: the fraction of images whose
            top-1 class is the Keras model's).
        floor: the least agreement that passes.
        accuracy: the artifact's agreement with the images' targets (classification: top-1 accuracy).
        keras_accuracy: the Keras model's, on the same images.
        max_probability_difference: the largest difference of one class probability.
        latency_ms: median milliseconds per image, one image at a time, in the artifact's runtime.
        size_bytes: the artifact's size on disk (every file of it).
        runtime: the runtime and its version.
    """

    images: int
    agreement: float
    floor: float
    accuracy: float
    keras_accuracy: float
    max_probability_difference: float
    latency_ms: float
    size_bytes: int
    runtime: str

    @property
    def passed(self):
        return self.agreement >= self.floor

    def to_dict(self):
        return {**asdict(self), "passed": self.passed}


def check_artifact(runtime, model, batches, floor, size_bytes, task, cfg=None, calibration=None):
    """Run `runtime` and the Keras `model` on `batches` of ``(raw images, targets)``; compare.

    Agreement is the `task`'s (`cnnlab.tasks.base.Task.agreement`, with the run's `cfg` and its `calibration`): with the
    Keras model's outputs, and, as accuracy, with the targets.
    """
    agree = correct = keras_correct = compared = images_seen = 0
    largest, sample = 0.0, None
    for images, targets in batches:
        images, targets = np.asarray(images, np.float32), np.asarray(targets)
        expected = main_probabilities(model.predict_on_batch(images))
        got = runtime.predict(images)
        count, total = task.agreement(expected, got, cfg, calibration)
        agree, compared = agree + count, compared + total
        correct += task.agreement(targets, got, cfg, calibration)[0]
        keras_correct += task.agreement(targets, expected, cfg, calibration)[0]
        largest = max(largest, float(np.max(np.abs(got - expected))))
        images_seen += len(images)
        sample = images[:LATENCY_IMAGES] if sample is None else sample
    if not images_seen:
        raise ValueError("no images to check the export on")
    return CheckResult(images=images_seen, agreement=agree / compared, floor=floor, accuracy=correct / compared,
                       keras_accuracy=keras_correct / compared, max_probability_difference=largest,
                       latency_ms=latency_ms(runtime, sample), size_bytes=size_bytes, runtime=runtime.name)


def latency_ms(runtime, images):
    """Median milliseconds to predict one image, over up to `LATENCY_IMAGES` images (after a warm-up)."""
    for image in images[:WARMUP]:
        runtime.predict(image[None])
    times = []
    for image in images:
        start = time.perf_counter()
        runtime.predict(image[None])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def size_on_disk(paths):
    """Total bytes of `paths` (files, or folders walked recursively)."""
    total = 0
    for path in map(Path, paths):
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total


def describe(result, what):
    """One line: agreement, accuracy, latency and size."""
    return (f"Check on {result.images} {what} with {result.runtime}: agreement with Keras "
            f"{100 * result.agreement:.2f} % (at least {100 * result.floor:.0f} %), accuracy "
            f"{result.accuracy:.4f} (Keras {result.keras_accuracy:.4f}), {result.latency_ms:.3f} ms per image, "
            f"{human_size(result.size_bytes)}")


def human_size(size):
    """Bytes as B, kB, MB or GB (powers of 1000)."""
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"
