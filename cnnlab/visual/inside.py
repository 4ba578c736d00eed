"""Pictures of what a network learned: first-layer filters, feature maps, filter patterns.

The book's section 7.6 in pictures: the first convolution's filters before training
(noise) and after (edge and blob detectors); each block's feature maps for one image,
its most active channels first (edges, then textures, then parts); and the pattern
each of a few filters responds to most, found by gradient ascent on the input
(keras-io's "Visualizing what convnets learn", Chollet). The models come from
`cnnlab.models.anatomy`, which finds the layers in any network cnnlab builds.
"""

import math

import numpy as np

from cnnlab.backend import gradients_unavailable
from cnnlab.inference.inputs import input_shape
from cnnlab.visual.plots import _pyplot, _save

PATTERN_STEPS = 30  # keras-io's iterations of gradient ascent
PATTERN_STEP = 2.0  # pixels (0..255) a step moves an average pixel
BORDER = 0.1  # the share of each side left out of a pattern's loss and picture (keras-io's border)


def normalized(images):
    """Each image of ``(N, h, w, c)`` stretched to 0..1 on its own (min to max)."""
    images = np.asarray(images, dtype="float32")
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-12)


def mosaic(tiles, columns, gap=1):
    """One image of ``(N, h, w, c)`` tiles (0..1) laid out `columns` to a row, `gap` white pixels apart."""
    count, height, width, channels = tiles.shape
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, channels), dtype="float32")
    for index, tile in enumerate(tiles):
        top, left = (place * (size + gap) for place, size in zip(divmod(index, columns), (height, width)))
        canvas[top:top + height, left:left + width] = tile
    return canvas


def _viewable(tiles):
    """Tiles of 1 or 3 channels as they are; other channel counts: their mean (a grey tile)."""
    return tiles if tiles.shape[-1] in (1, 3) else tiles.mean(axis=-1, keepdims=True)


def _show(ax, picture, title):
    ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", interpolation="nearest",
              vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def filters(after, before, image_shape, path, limit=64):
    """The first layer's filters after training, beside the same filters before it.

    Args:
        after: `cnnlab.models.anatomy.FirstWeights` of the trained model.
        before: the run's `FirstWeights` before training, or None (not kept: only `after` is drawn).
        image_shape: ``(H, W, C)`` of the model's input (a dense layer's columns are shown as images).
        path: the PNG to write, or a binary file object.
        limit: at most this many filters.
    """
    plt = _pyplot()
    panels = [(before, "as training started"), (after, "trained")] if before is not None else [(after, "trained")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.6), squeeze=False)
    if before is not None:
        change = np.linalg.norm(after.kernel - before.kernel) / max(np.linalg.norm(before.kernel), 1e-12)
        panels[1] = (after, f"trained (moved {100 * change:.0f} %)")
    for ax, (weights, when) in zip(axes[0], panels):
        tiles = _viewable(normalized(weights.as_images(image_shape)[:limit]))
        columns = math.ceil(math.sqrt(len(tiles)))
        kind = f"{tiles.shape[1]}x{tiles.shape[2]} filters" if weights.kind == "conv" else "units' weights"
        _show(ax, mosaic(tiles, columns), f"{weights.layer}: {len(tiles)} {kind}, {when}")
    _save(fig, path)


def strongest(maps, count):
    """The indices of the `count` channels of ``(h, w, C)`` `maps` with the largest mean, largest first."""
    return np.argsort(-maps.mean(axis=(0, 1)))[:count]


def feature_maps(image, maps, path, channels=8):
    """One row per block: the image, then the block's `channels` strongest feature maps.

    Args:
        image: ``(H, W, C)`` pixels 0..255.
        maps: ``[(layer path, (h, w, C) float32)]`` in the order the data flows.
        path: the PNG to write, or a binary file object.
    """
    plt = _pyplot()
    columns = channels + 1
    fig, axes = plt.subplots(len(maps), columns, figsize=(1.3 * columns, 1.45 * len(maps) + 0.2), squeeze=False)
    picture = np.clip(np.asarray(image, dtype="float32") / 255.0, 0, 1)
    for row, (name, values) in enumerate(maps):
        _show(axes[row, 0], picture, "input" if row == 0 else "")
        axes[row, 0].text(-0.1, 0.5, f"{name}\n{values.shape[0]}x{values.shape[1]}x{values.shape[2]}",
                          transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=7)
        picks = strongest(values, channels)
        for col in range(1, columns):
            axes[row, col].axis("off")
            if col - 1 < len(picks):
                channel = values[..., picks[col - 1]]
                axes[row, col].imshow(channel, cmap="viridis", interpolation="nearest")
                axes[row, col].set_title(f"#{picks[col - 1]}", fontsize=7)
    fig.suptitle("feature maps per block, strongest channels first", fontsize=9)
    _save(fig, path)


def patterns(model, layers, channels, *, steps=PATTERN_STEPS, seed=0):
    """The input each chosen channel responds to most, by gradient ascent from a grey, noisy image.

    Each channel's image climbs the mean of that channel's map (its border left out)
    in steps of gradient divided by its own standard deviation; the pixels stay in
    0..255. All channels of a layer climb together, one image each.

    Args:
        model: the model (its first member, for an ensemble) whose input is climbed.
        layers: ``[(layer, path)]`` whose outputs are climbed.
        channels: for each layer, the channel indices to climb.
        steps: the number of ascent steps.

    Returns:
        ``[(path, channels, (n, H, W, C) float32 0..1)]``: each pattern stretched to 0..1, its border cut off.
    """
    from cnnlab.models.anatomy import Tap

    shape = input_shape(model, model.name, verb="visualize")
    random = np.random.default_rng(seed)
    out = []
    for (layer, path), picks in zip(layers, channels):
        start = 128.0 + (random.random((len(picks), *shape)) - 0.5) * 32.0
        climbed = climb(Tap(model, [layer]), layer, picks, start, steps)
        out.append((path, list(picks), normalized(_cut_border(climbed))))
    return out


def climb(tap, layer, picks, start, steps):
    """`steps` of gradient ascent from the images `start`, image i climbing channel ``picks[i]`` of `layer`
    (read through `tap`, a `cnnlab.models.anatomy.Tap`). Returns the images, 0..255."""
    import tensorflow as tf

    images = tf.Variable(np.asarray(start, dtype="float32"))
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = _channel_means(tf.cast(tap(images)[id(layer)], "float32"), picks)
        grads = tape.gradient(loss, images)
        grads = grads / (tf.math.reduce_std(grads, axis=(1, 2, 3), keepdims=True) + 1e-8)
        images.assign(tf.clip_by_value(images + PATTERN_STEP * grads, 0.0, 255.0))
    return images.numpy()


def _channel_means(maps, picks):
    """The sum over the batch of image i's mean of channel ``picks[i]`` (the border left out)."""
    import tensorflow as tf

    height, width = maps.shape[1], maps.shape[2]
    top, left = int(height * BORDER), int(width * BORDER)
    inner = maps[:, top:height - top or None, left:width - left or None, :]
    chosen = tf.gather(inner, tf.constant(list(picks)), axis=3, batch_dims=0)  # N x h x w x N
    diagonal = tf.linalg.diag_part(tf.transpose(chosen, (1, 2, 0, 3)))  # h x w x N
    return tf.reduce_sum(tf.reduce_mean(diagonal, axis=(0, 1)))


def _cut_border(images):
    height, width = images.shape[1:3]
    top, left = int(height * BORDER), int(width * BORDER)
    return images[:, top:height - top or None, left:width - left or None]


def pattern_grid(found, path):
    """One row per layer of `patterns`' images, titled by the layer and channel."""
    plt = _pyplot()
    columns = max(len(picks) for _, picks, _ in found)
    fig, axes = plt.subplots(len(found), columns, figsize=(1.5 * columns, 1.7 * len(found) + 0.2), squeeze=False)
    for row, (name, picks, images) in enumerate(found):
        images = _viewable(images)
        for col in range(columns):
            axes[row, col].axis("off")
            if col < len(picks):
                _show(axes[row, col], images[col], f"#{picks[col]}")
        axes[row, 0].text(-0.1, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle("what each channel responds to most (gradient ascent on the input)", fontsize=9)
    _save(fig, path)


class Insight:
    """Everything `cnnlab visualize` draws of one model, computed once, drawn on demand.

    Attributes:
        image_shape: the model's ``(H, W, C)``.
        before, after: the first layer's `FirstWeights` before training (None if the run kept none) and now.
        images: the images whose feature maps are shown (0..255).
        maps: per image, ``[(layer path, (h, w, C) float32)]`` of each block's end.
        found: `patterns`' result.
        notes: sentences on what could not be drawn, and why.
    """

    def __init__(self, image_shape, before, after, images, maps, found, notes):
        self.image_shape, self.before, self.after = image_shape, before, after
        self.images, self.maps, self.found, self.notes = images, maps, found, notes

    @classmethod
    def of(cls, model, images, *, run=None, steps=None, layers=3, channels=8):
        """Compute the maps of `images` and the patterns of `channels` channels of `layers` blocks of `model`
        (`run`: the run folder whose kept initial filters are drawn too, or None; `steps` 0: no patterns)."""
        from cnnlab.models.anatomy import Tap, block_ends, main_model

        inner = main_model(model)
        shape = input_shape(inner, inner.name, verb="visualize")
        before, after, notes = _first_weights(model, run)
        if inner is not model:
            notes.insert(0, f"An averaged ensemble: its first member, {inner.name}, is shown.")
        ends = block_ends(model)
        if not ends:
            notes.append("No convolutional layer: no feature maps nor filter patterns (a dense network's first "
                         "layer is drawn as images instead).")
            return cls(shape, before, after, images, [], [], notes)
        values = Tap(inner, [layer for layer, _ in ends])(np.asarray(images, dtype="float32"))
        maps = [[(path, np.asarray(values[id(layer)][i], dtype="float32")) for layer, path in ends]
                for i in range(len(images))]
        elsewhere = gradients_unavailable("Gradient ascent")
        if elsewhere or steps == 0:
            notes += [f"{elsewhere}: no filter patterns."] if elsewhere else []
            return cls(shape, before, after, images, maps, [], notes)
        chosen = _pattern_layers(ends, layers)
        average = {path: np.mean([image_maps[k][1] for image_maps in maps], axis=0) for k, (_, path) in enumerate(ends)}
        picks = [strongest(average[path], channels) for _, path in chosen]
        found = patterns(inner, chosen, picks, steps=PATTERN_STEPS if steps is None else steps)
        return cls(shape, before, after, images, maps, found, notes)

    def pictures(self):
        """``{file name: PNG bytes}``: filters.png, feature_maps_<n>.png (from 1), patterns.png."""
        from cnnlab.visual.plots import png

        out = {"filters.png": png(filters, self.after, self.before, self.image_shape)} if self.after else {}
        for number, (image, maps) in enumerate(zip(self.images, self.maps), 1):
            out[f"feature_maps_{number}.png"] = png(feature_maps, image, maps)
        if self.found:
            out["patterns.png"] = png(pattern_grid, self.found)
        return out


def _first_weights(model, run):
    """``(before, after, notes)``: the first layer's weights as `run` kept them when training started (None if
    it kept none, or none of this layer) and now."""
    from cnnlab.models.anatomy import first_weights, read_initial

    before, after = read_initial(run), first_weights(model)
    if before is None or after is None:
        reason = ("The run kept no weights from when training started (runs trained before cnnlab kept them, "
                  "ensembles and bare models have none): only the trained ones are drawn.")
        return None, after, [reason] if after is not None and run is not None else []
    if before.layer != after.layer or before.kernel.shape != after.kernel.shape:
        return None, after, [f"The weights kept as training started ({before.layer}) are not this model's first "
                             f"layer ({after.layer}): only the trained ones are drawn."]
    return before, after, []


def _pattern_layers(ends, count):
    """`count` block ends from the first to the deepest (the smallest map; a decoder after it is left out)."""
    from cnnlab.models.anatomy import output_shape

    sizes = [np.prod(output_shape(layer)[:2]) for layer, _ in ends]
    encoder = ends[: int(np.argmin(sizes)) + 1]
    picks = np.unique(np.linspace(0, len(encoder) - 1, min(count, len(encoder))).round().astype(int))
    return [encoder[i] for i in picks]
