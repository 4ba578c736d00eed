"""`augment-preview`: training images beside their augmented versions, in one PNG."""

from pathlib import Path

from cnnlab import files
from cnnlab.session import setup


def augment_preview(cfg, n=16, output="preview.png", echo=print):
    """Write a PNG of `n` training images beside their augmented versions; return its path."""
    import numpy as np

    from cnnlab.data.augment import augment_images, is_active
    from cnnlab.data.pipeline import load_data, make_dataset
    from cnnlab.visual import plots

    files.check_writable_file(output, "the preview", "Give -o a .png in a folder you can write to.")
    setup(cfg)
    data = load_data(cfg)
    pick = np.random.default_rng(cfg.seed).choice(len(data.train), size=min(n, len(data.train)), replace=False)
    examples = data.train.take(np.sort(pick))
    originals, _ = next(iter(make_dataset(examples, data.input_shape, len(examples))))
    originals = originals.numpy()
    if not is_active(cfg.augmentation):
        echo("Note: the experiment enables no augmentation; both columns are the same.")
    augmented = augment_images(cfg.augmentation, originals, data.input_shape, data.classes, cfg.seed)
    plots.augmentation_grid(originals, augmented, output)
    echo(f"Wrote {output} ({len(originals)} images, engine {cfg.augmentation.engine})")
    return Path(output)
