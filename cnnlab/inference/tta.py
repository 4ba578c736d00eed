"""Test-time augmentation: each image seen in a few views, the class probabilities averaged.

The views follow what the model learnt to ignore: its mirror images when the run
trained with ``augmentation.horizontal_flip`` / ``vertical_flip``, else shifts of
about 5 % of the image side (at least one pixel) in the four directions, the
edges filled by mirroring the border as ``fill_mode: nearest`` roughly does. The
original image is always one of the views. Everything is TensorFlow ops on whole
batches, so a batch of B images becomes one model call on ``V * B`` images.
`Plan.notes` is what `evaluate --tta` and `predict --tta` tell the user: the views, and
a warning when a shift is a large part of a small image (one pixel of 8x8 digits).
"""

from dataclasses import dataclass

from cnnlab.registry import Registry

VIEWS = Registry("tta view")
SHIFT_FRACTION = 0.05
WARN_FRACTION = 0.1  # a shift above this part of the image side may move what the model looks at


@VIEWS.register("identity")
def identity(images, step):
    return images


@VIEWS.register("flip_left_right")
def flip_left_right(images, step):
    import tensorflow as tf

    return tf.image.flip_left_right(images)


@VIEWS.register("flip_up_down")
def flip_up_down(images, step):
    import tensorflow as tf

    return tf.image.flip_up_down(images)


def shifted(images, dy, dx):
    """`images` (B, H, W, C) moved down by `dy` and right by `dx` pixels, the border mirrored in."""
    import tensorflow as tf

    py, px = abs(dy), abs(dx)
    h, w = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [py, py], [px, px], [0, 0]], mode="SYMMETRIC")
    return padded[:, py - dy:py - dy + h, px - dx:px - dx + w, :]


for _name, (_dy, _dx) in {"shift_left": (0, -1), "shift_right": (0, 1),
                          "shift_up": (-1, 0), "shift_down": (1, 0)}.items():
    VIEWS.add(_name, lambda images, step, dy=_dy, dx=_dx: shifted(images, dy * step, dx * step))


INVERSES = {"identity": "identity", "flip_left_right": "flip_left_right", "flip_up_down": "flip_up_down",
            "shift_left": "shift_right", "shift_right": "shift_left", "shift_up": "shift_down",
            "shift_down": "shift_up"}  # the view that moves a view's pixels back


@dataclass(frozen=True)
class Plan:
    """Which views of an image are averaged, and the shift in pixels the shift views use."""

    views: tuple
    step: int = 0  # pixels; 0 when no view shifts
    side: int = 0  # the images' shorter side in pixels; 0 when unknown

    def expand(self, images):
        """(B, H, W, C) -> (V * B, H, W, C): every view of the batch, view by view."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        return tf.concat([VIEWS.get(name).fn(images, self.step) for name in self.views], axis=0)

    def average(self, probs):
        """(V * B, ...) outputs -> (B, ...): the mean over the views. Outputs per pixel (segmentation's
        ``(H, W, classes)``) are first moved back by each view's inverse, so every view scores the same pixel."""
        import numpy as np

        views = len(self.views)
        chunks = probs.reshape(views, probs.shape[0] // views, *probs.shape[1:])
        if probs.ndim == 4:
            chunks = np.stack([np.asarray(VIEWS.get(INVERSES[name]).fn(chunk, self.step))
                               for name, chunk in zip(self.views, chunks)])
        return chunks.mean(axis=0)

    def describe(self):
        step = f" by {self.step} px" if any(v.startswith("shift") for v in self.views) else ""
        return f"{len(self.views)} views ({', '.join(self.views)}{step})"

    def notes(self):
        """Lines for the user: the views, then a warning if a shift moves the image more than `WARN_FRACTION`
        of its side (the images' rounding makes the shift at least one pixel)."""
        lines = [f"Test-time augmentation: {self.describe()}."]
        if self.step and self.side and self.step / self.side > WARN_FRACTION:
            lines.append(f"Warning: a {self.step}-pixel shift is {self.step / self.side:.1%} of these images' "
                         f"{self.side}-pixel side (above {WARN_FRACTION:.0%}), which can cost accuracy: compare "
                         "`cnnlab evaluate --tta` with `cnnlab evaluate` before relying on it.")
        return lines


def plan(cfg, input_shape):
    """The views for a run trained with `cfg` (None: a bare model, shifts) on `input_shape` images."""
    aug = cfg.augmentation if cfg is not None else None
    flips = [name for name, on in (("flip_left_right", aug and aug.horizontal_flip),
                                   ("flip_up_down", aug and aug.vertical_flip)) if on]
    if flips:
        return Plan(("identity", *flips))
    side = min(input_shape[0], input_shape[1])
    step = max(1, round(SHIFT_FRACTION * side))
    return Plan(("identity", "shift_left", "shift_right", "shift_up", "shift_down"), step, side)
