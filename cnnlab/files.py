"""Writing files so that a kill or a full disk never leaves one half-written.

Everything a run writes goes through `atomic_path`: the content is written to a
temporary sibling (``.partial-<pid>-<name>``, keeping the suffix Keras checks:
``.keras``, ``.weights.h5``), then renamed over the target in one step. A failed
write removes the temporary file and keeps the previous version.
"""

import contextlib
import json
import os
from pathlib import Path

from cnnlab.distribution import local
from cnnlab.errors import CnnlabError

PARTIAL_PREFIX = ".partial-"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; when the block ends, rename it over `path`.

    A block that writes nothing changes nothing. Raises `CnnlabError` if the file
    cannot be written (no space, no permission): `path` keeps its previous content.
    """
    path = Path(path)
    tmp = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield tmp
        if tmp.exists():
            os.replace(tmp, path)
    except OSError as exc:
        raise CnnlabError(f"could not write {str(path)!r}: {exc.strerror or exc}. "
                          "Its previous version, if any, is kept.") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, data):
    """Write `data` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path, default=None):
    """The JSON in `path`, or `default` when the file is missing or unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def save_arrays(path, arrays):
    """NumPy arrays ``{name: array}`` as an uncompressed .npz, atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_model(model, path):
    """``model.save(path)`` atomically (a .keras file)."""
    with atomic_path(path) as tmp, local():
        cache_keras_skipsets()
        model.save(tmp)


# The Keras object types whose attributes Keras's saving skips, each found from a reference object.
SKIPSET_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def cache_keras_skipsets():
    """Make Keras's per-type cache of the attributes saving skips work: a fifth of every save.

    Keras 3 (3.15) stores the set under ``saving_attr_skipset_<type>`` and looks for it under
    ``saving_attr_skiplist_<type>``, so each save builds reference Layer, Optimizer and Metric
    objects again: 9 of the deep CNN's 42 ms per checkpoint. This stores the same sets,
    computed by Keras, under the key it reads. ``clear_session`` empties both.
    """
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    skipset = getattr(saving_lib, "get_attr_skipset", None)
    for kind in SKIPSET_TYPES if skipset else ():
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, skipset(kind))


def remove_partials(folder):
    """Remove temporary files a killed process left in `folder`."""
    for leftover in Path(folder).glob(f"{PARTIAL_PREFIX}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()
