"""Writing files so that a kill or a full disk never leaves one half-written.

Everything a run writes goes through `atomic_path`: the content is written to a
temporary sibling (``.partial-<pid>-<name>``, keeping the suffix Keras checks:
``.keras``, ``.weights.h5``), then renamed over the target in one step. A failed
write removes the temporary file and keeps the previous version.

Whether this process may write somewhere at all is asked here too, once for every
command: `check_writable` (a folder) and `check_writable_file` (an ``-o`` file)
fail with one line before a command reads data or builds a model, and
`permission_errors` turns a denial that still happens later into one line too;
`quiet_matplotlib_cache` keeps matplotlib from warning about a home it cannot write.
"""

import contextlib
import errno
import json
import os
import stat
import sys
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
        path.parent.mkdir(parents=True, exist_ok=True)  # what check_writable_file promised can be made
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


def write_bytes(path, data):
    """Write the bytes `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
    from cnnlab.keras_private import cache_saving_skipsets

    cache_saving_skipsets(SKIPSET_TYPES)


def remove_partials(folder):
    """Remove temporary files a killed process left in `folder`."""
    for leftover in Path(folder).glob(f"{PARTIAL_PREFIX}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


# --------------------------------------------------------------------------- may this process write there?

# What the operating system says when the user may not write (read-only file system included).
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def unwritable(folder):
    """Why this process cannot write files into `folder`, or None when it can.

    A folder that does not exist yet can be written if its nearest existing parent
    is a folder this process may create entries in (``mkdir -p`` then works).
    Permissions are asked with ``os.access``, so root passes wherever the file
    system is not read-only.
    """
    path = Path(os.path.abspath(folder))
    for existing in (path, *path.parents):
        try:
            mode = os.stat(existing).st_mode
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # not there, or behind a folder we may not enter: ask its parent
        except OSError as exc:
            return exc.strerror or str(exc)
        break
    where = "it" if existing == path else f"it does not exist and cannot be created: {str(existing)!r}"
    if not stat.S_ISDIR(mode):
        return f"{where} is a file, not a folder"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{where} is on a read-only file system"
    return f"{where} is not writable by {_user()}"


def check_writable(folder, what, fix):
    """Raise `CnnlabError` unless this process can write into `folder` (creating it if need be).

    Args:
        folder: where files will be written.
        what: what the folder is, for the message (e.g. ``"the runs folder"``).
        fix: the sentence that says what to do instead.
    """
    problem = unwritable(folder)
    if problem:
        raise CnnlabError(f"cannot write {what} {str(folder)!r}: {problem}. {fix}")


def check_writable_file(path, what, fix):
    """Raise `CnnlabError` unless `path` can be written: not a folder, in a folder this process can write.

    Files are written atomically (a temporary sibling renamed over `path`), so the
    folder's permissions decide, not the old file's.
    """
    path = Path(path)
    if path.is_dir():
        raise CnnlabError(f"cannot write {what} {str(path)!r}: it is a folder. {fix}")
    problem = unwritable(path.parent)
    if problem:
        raise CnnlabError(f"cannot write {what} {str(path)!r} into {str(path.parent)!r}: {problem}. {fix}")


@contextlib.contextmanager
def permission_errors():
    """A write (or read) the operating system denies, however deep, as one `CnnlabError` naming the file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DENIED or isinstance(exc, CnnlabError):
            raise
        where = f" {str(exc.filename)!r}" if exc.filename else ""
        raise CnnlabError(f"{exc.strerror or exc}:{where} (as {_user()}). Give a path this user may read or "
                          "write as needed, or change its permissions.") from None


def _user():
    """The user this process runs as, by name where the system knows it (``uid 65534`` otherwise)."""
    import pwd

    uid = os.geteuid()
    try:
        return f"the user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


def quiet_matplotlib_cache():
    """Give matplotlib a temporary folder, quietly, when it could not write its own; before it is imported.

    Matplotlib keeps its config and font cache in ``$MPLCONFIGDIR``, else (on Linux)
    ``~/.config/matplotlib`` and ``~/.cache/matplotlib``. When it cannot write there (a
    read-only or missing home, a service user) it makes a temporary folder itself and
    prints a warning asking for MPLCONFIGDIR. This makes the same choice without the
    warning: MPLCONFIGDIR points at a temporary folder, removed when the process ends.
    TensorFlow imports matplotlib, so the CLI calls this before any command runs.
    """
    if "matplotlib" in sys.modules:
        return
    home = os.path.expanduser("~")
    if os.environ.get("MPLCONFIGDIR"):
        folders = [os.environ["MPLCONFIGDIR"]]
    elif sys.platform.startswith(("linux", "freebsd")):
        folders = [os.path.join(os.environ.get(variable) or os.path.join(home, default), "matplotlib")
                   for variable, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"))]
    else:
        folders = [os.path.join(home, ".matplotlib")]
    if not any(folder.startswith("~") or unwritable(folder) for folder in folders):
        return
    import atexit
    import shutil
    import tempfile

    with contextlib.suppress(OSError):  # no temporary folder either: matplotlib says so itself
        folder = tempfile.mkdtemp(prefix="cnnlab-matplotlib-")
        os.environ["MPLCONFIGDIR"] = folder
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
