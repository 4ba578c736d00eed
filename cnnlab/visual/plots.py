"""PNG plots for a run folder: learning curves, confusion matrix, misclassified examples."""

import math
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, tight=True):
    """Write `fig` as a PNG to `path` (atomically), or into `path` when it is a binary file object.

    ``tight`` crops the figure to what it draws (which costs a second drawing).
    """
    options = {"dpi": 100, "format": "png", "bbox_inches": "tight" if tight else None}
    if hasattr(path, "write"):
        fig.savefig(path, **options)
        _pyplot().close(fig)
        return
    from cnnlab.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, **options)
    _pyplot().close(fig)


class Evaluation:
    """An evaluation's plots in ``folder/plots``, begun before the model predicts.

    The learning curves (from the run `history_from`), and importing matplotlib, are
    drawn on a thread at once, while the model's predictions run (TensorFlow computes
    without the GIL); `finish` waits for them, then draws what needs the predictions.
    Only one thread draws at a time.
    """

    def __init__(self, folder, history_from=None):
        import threading

        self.folder = Path(folder) / "plots"
        self._failure = None
        self._thread = threading.Thread(target=self._curves, args=(history_from or folder,), daemon=True,
                                        name="cnnlab-plots")
        self._thread.start()

    def _curves(self, source):
        from cnnlab.rundir import read_history

        try:
            history = read_history(source)
            if history:
                curves(history, self.folder / "curves.png")
            else:
                _pyplot()
        except BaseException as exc:  # raised again, in the caller's thread, by finish
            self._failure = exc

    def finish(self, draw):
        """Once the curves are drawn, ``draw(folder)``: the plots of the predictions (a task's)."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        draw(self.folder)


def png(plot, *args, **kwargs):
    """The PNG bytes of one of this module's plots (which take the path after their data)."""
    import io

    buffer = io.BytesIO()
    plot(*args, buffer, **kwargs)
    return buffer.getvalue()


PHASES = {1: ("phase 1: head", "#fde6c4"), 2: ("phase 2: fine-tuning", "#d6ecd2")}


def curves(history, path, learning_rates=None):
    """Loss and accuracy per epoch, training and validation, and the learning rate in its own panel.

    Epochs are numbered from 1 on integer ticks; fine-tuning's phases (history.csv's
    ``phase`` column) are shaded.

    Args:
        history: rows of history.csv (`cnnlab.rundir.read_history`).
        path: the PNG to write, or a binary file object.
        learning_rates: one rate per row, for runs whose history did not log
            ``learning_rate``; None to use the history's own column, if any.
    """
    plt = _pyplot()
    epochs = [row["epoch"] + 1 for row in history]
    rates = [row.get("learning_rate") for row in history] if learning_rates is None else list(learning_rates)
    rates = rates if rates and all(isinstance(r, (int, float)) for r in rates) else None
    fig, axes = plt.subplots(1, 3 if rates else 2, figsize=(14 if rates else 10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        if metric not in history[0]:
            metric = f"predictions_{metric}"  # a model with auxiliary outputs
        for key, style in ((metric, "o-"), (f"val_{metric}", "s--")):
            if key in history[0]:
                ax.plot(epochs, [row[key] for row in history], style, markersize=3, label=key)
        ax.set_title(metric)
    if rates:
        axes[2].plot(epochs, rates, "o-", color="tab:purple", markersize=3, label="learning_rate")
        if max(rates) > 10 * min(rates) > 0:
            axes[2].set_yscale("log")
        axes[2].set_title("learning rate")
    for ax in axes:
        _epoch_axis(ax, epochs)
        _shade_phases(ax, history)
        ax.legend(fontsize=8)
    _save(fig, path)


def _epoch_axis(ax, epochs):
    """Integer epoch ticks from 1, and a light grid."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _shade_phases(ax, history):
    """Shade each run of epochs with the same fine-tuning ``phase`` (nothing for a plain training run)."""
    spans = []
    for row in history:
        phase = row.get("phase")
        if not isinstance(phase, (int, float)) or phase != phase:  # missing or NaN
            continue
        epoch = row["epoch"] + 1
        if spans and spans[-1][0] == phase and spans[-1][2] == epoch - 1:
            spans[-1][2] = epoch
        else:
            spans.append([phase, epoch, epoch])
    for phase, first, last in spans:
        label, color = PHASES.get(int(phase), (f"phase {int(phase)}", "#e4e4f4"))
        ax.axvspan(first - 0.5, last + 0.5, color=color, alpha=0.7, zorder=0, label=label)


def compare_curves(histories, path):
    """Validation accuracy and loss of several runs, overlaid.

    Args:
        histories: ``{label: rows of history.csv}``, in the order to draw them.
        path: the PNG to write, or a binary file object.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, metric in zip(axes, ("val_accuracy", "val_loss")):
        for label, history in histories.items():
            key = metric if history and metric in history[0] else metric.replace("val_", "val_predictions_")
            if history and key in history[0]:
                ax.plot([r["epoch"] + 1 for r in history], [r[key] for r in history], "o-", markersize=3,
                        label=label)
        _epoch_axis(ax, [r["epoch"] + 1 for h in histories.values() for r in h])
        ax.set_title(metric)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
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
    """Misclassified images titled ``true -> predicted (confidence)``, five to a row.

    One axes holds every image (each cell one unit square, the image in its lower part,
    the title above it): a grid of 25 axes took seconds to draw, this a tenth of that.
    """
    plt = _pyplot()
    cols = min(5, len(mistakes))
    rows = math.ceil(len(mistakes) / cols)
    fig = plt.figure(figsize=(2.2 * cols, 2.4 * rows))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    for index, (image, true, pred, conf) in enumerate(mistakes):
        row, col = divmod(index, cols)
        image = np.clip(image, 0, 255).astype(np.uint8)
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None,
                  extent=(col + 0.06, col + 0.94, row + 0.97, row + 0.16))
        ax.text(col + 0.5, row + 0.13, f"{class_names[true]} -> {class_names[pred]} ({conf:.2f})", fontsize=8,
                ha="center", va="bottom")
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("auto")
    _save(fig, path, tight=False)


def labelled_grid(images, titles, path):
    """Images with a (multi-line) title each, five to a row, in one axes (as `mistakes_grid`)."""
    plt = _pyplot()
    cols = min(5, len(images))
    rows = math.ceil(len(images) / cols)
    fig = plt.figure(figsize=(2.6 * cols, 2.9 * rows))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    for index, (image, title) in enumerate(zip(images, titles)):
        row, col = divmod(index, cols)
        image = np.clip(image, 0, 255).astype(np.uint8)
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None,
                  extent=(col + 0.1, col + 0.9, row + 0.97, row + 0.25))
        ax.text(col + 0.5, row + 0.22, title, fontsize=7, ha="center", va="bottom")
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("auto")
    _save(fig, path, tight=False)


def pr_curves(curves, class_names, path, limit=20):
    """Precision against recall, one line per class (`curves`: ``{class: {"recall", "precision"}}``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name in [n for n in class_names if n in curves][:limit]:
        ax.plot(curves[name]["recall"], curves[name]["precision"], linewidth=1.2, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.set_title("precision-recall per class" + (f" (first {limit})" if len(curves) > limit else ""))
    if curves:
        ax.legend(fontsize=7, ncol=2)
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
    _save(fig, path)


def gradcam_grid(items, class_names, path, layer_name=""):
    """Pairs of images: a misclassified image, then its Grad-CAM heat-map over it.

    Args:
        items: ``(image, overlay, true, predicted, confidence)`` tuples; pixels 0..255.
        class_names: names of the class indices.
        path: the PNG to write, or a binary file object.
        layer_name: the explained layer, for the title.
    """
    plt = _pyplot()
    columns = min(4, len(items))
    rows = math.ceil(len(items) / columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(3.4 * columns, 2.0 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, heat, true, pred, conf) in enumerate(items):
        r, c = divmod(i, columns)
        image = np.clip(image, 0, 255).astype(np.uint8)
        gray = image.shape[-1] == 1
        axes[r, 2 * c].imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
        axes[r, 2 * c].set_title(f"{class_names[true]} -> {class_names[pred]} ({conf:.2f})", fontsize=8)
        axes[r, 2 * c + 1].imshow(heat)
        axes[r, 2 * c + 1].set_title(f"Grad-CAM: {class_names[pred]}", fontsize=8)
    if layer_name:
        fig.suptitle(f"heat-maps of layer {layer_name}", fontsize=9)
    _save(fig, path)


def lr_find(result, path):
    """The range test's loss (raw and smoothed) against the learning rate, log scale, its rates marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.rates, result.losses, color="0.75", linewidth=1, label="loss per batch")
    ax.plot(result.rates, result.smoothed, color="C0", label="smoothed")
    marks = ((result.valley, "valley (suggested)", "C3"), (result.steepest, "steepest", "C1"),
             (result.minimum_tenth, "minimum / 10", "C2"))
    for rate, name, color in marks:
        if rate:
            ax.axvline(rate, color=color, linestyle="--", label=f"{name}: {rate:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    finite = [v for v in (*result.losses, *result.smoothed) if math.isfinite(v)]
    if finite:  # the divergence at the end would flatten the rest
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 1.5 * result.smoothed[0]) * 1.05)
    ax.legend()
    _save(fig, path)
