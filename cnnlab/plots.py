"""PNG plots for a run folder: learning curves, confusion matrix, misclassified examples."""

import math
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    from cnnlab.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    _pyplot().close(fig)


def write_all(folder, result, mistakes, class_names, history_from=None):
    """Write every plot there is material for into ``folder/plots``; the curves from the run `history_from`."""
    from cnnlab.artifacts import read_history

    plots = Path(folder) / "plots"
    history = read_history(history_from or folder)
    if history:
        curves(history, plots / "curves.png")
    confusion(np.array(result["confusion_matrix"]), class_names, plots / "confusion_matrix.png")
    if mistakes:
        mistakes_grid(mistakes, class_names, plots / "mistakes.png")


def curves(history, path):
    """Loss and accuracy per epoch, training and validation."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] + 1 for row in history]
    for ax, metric in zip(axes, ("loss", "accuracy")):
        if metric not in history[0]:
            metric = f"predictions_{metric}"  # a model with auxiliary outputs
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history[0]:
                ax.plot(epochs, [row[key] for row in history], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    _save(fig, path)


def confusion(matrix, class_names, path):
    """The confusion matrix, rows true classes, columns predictions."""
    plt = _pyplot()
    n = len(class_names)
    size = min(max(4, n * 0.5), 20)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _save(fig, path)


def mistakes_grid(mistakes, class_names, path):
    """Misclassified images titled ``true -> predicted (confidence)``."""
    plt = _pyplot()
    cols = min(5, len(mistakes))
    rows = math.ceil(len(mistakes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, true, pred, conf) in zip(axes.flat, mistakes):
        image = np.clip(image, 0, 255).astype(np.uint8)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(f"{class_names[true]} -> {class_names[pred]} ({conf:.2f})", fontsize=8)
    _save(fig, path)


def augmentation_grid(originals, augmented, path, columns=4):
    """Pairs of images side by side: the training image, then its augmented version."""
    plt = _pyplot()
    n = len(originals)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.6 * columns, 1.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (before, after) in enumerate(zip(originals, augmented)):
        r, c = divmod(i, columns)
        for ax, image, title in ((axes[r, 2 * c], before, "original"), (axes[r, 2 * c + 1], after, "augmented")):
            image = np.clip(image, 0, 255).astype(np.uint8)
            gray = image.shape[-1] == 1
            ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
            if r == 0:
                ax.set_title(title, fontsize=8)
    _save(fig, Path(path))
