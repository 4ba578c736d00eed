"""Where an export goes, and how it gets there: staged, checked, then moved into place.

An artifact is written into a temporary folder beside its destination
(``.partial-<pid>-<name>.d``), checked there, and only then renamed into place,
with a JSON beside it (``<name>.json``) that marks it as a cnnlab export. One that
fails its check is kept as ``<stem>.failed<suffix>`` (its JSON too), never under the
good name. An existing file that is not a cnnlab export is never replaced.
"""

import contextlib
import os
import shutil
from pathlib import Path

from cnnlab import files
from cnnlab.errors import CnnlabError, ConfigError

EXPORT_FOLDER = "export"
MARK = "cnnlab_export"  # the key every export's JSON holds
FAILED = ".failed"


def default_path(folder, fmt, quantize):
    """``<folder>/export/model[-<quantize>]<suffix>``, or ``<folder>/export/savedmodel`` (a folder)."""
    stem = "savedmodel" if not fmt.suffix else "model" if quantize == "none" else f"model-{quantize}"
    return Path(folder) / EXPORT_FOLDER / f"{stem}{fmt.suffix}"


def output_path(folder, fmt, quantize, output):
    """The artifact's path: `output` (``-o``) checked against the format, or the default in `folder`."""
    if output is None:
        return default_path(folder, fmt, quantize)
    path = Path(output)
    if fmt.suffix and path.suffix.lower() != fmt.suffix:
        raise ConfigError(f"-o for --format {fmt.name} must end in {fmt.suffix}. Received: {str(output)!r}.")
    if not fmt.suffix and path.is_file():
        raise ConfigError(f"-o for --format {fmt.name} names a folder to create; {str(output)!r} is a file.")
    return path


def stem(path, fmt):
    """The name every file of the artifact starts with (``model`` for model.xml and model.bin)."""
    return path.name[: len(path.name) - len(fmt.suffix)]


def failed_path(path, fmt):
    """Where an artifact that failed its check is kept: ``model.failed.onnx``, ``savedmodel.failed``."""
    return path.with_name(f"{stem(path, fmt)}{FAILED}{fmt.suffix}")


def meta_path(path):
    """The JSON beside an artifact: ``model.onnx.json``."""
    return path.with_name(f"{path.name}.json")


def refuse_foreign(path, fmt):
    """Refuse to replace anything at `path` (or its companion files) that is not an earlier cnnlab export."""
    ours = (files.read_json(meta_path(path)) or {}).get(MARK) is not None
    taken = [p for p in [path, *(path.with_suffix(s) for s in fmt.companions)] if p.exists() or p.is_symlink()]
    if taken and not ours:
        raise CnnlabError(f"{str(taken[0])!r} already exists and is not a cnnlab export (no "
                          f"{meta_path(path).name} beside it): remove it, or choose another -o.")
    return bool(taken)


@contextlib.contextmanager
def staging(path):
    """A temporary folder beside `path`; yields where to write the artifact in it; removed afterwards."""
    folder = path.parent / f"{files.PARTIAL_PREFIX}{os.getpid()}-{path.name}.d"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / path.name, ignore_errors=True)
    except OSError as exc:
        raise CnnlabError(f"cannot write into {str(path.parent)!r}: {exc.strerror or exc}.") from None
    try:
        yield folder / path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def move_into_place(staged, path, fmt):
    """Rename every staged file of the artifact to `path`'s name; returns the paths written."""
    old, new = stem(staged, fmt), stem(path, fmt)
    placed = []
    try:
        for entry in sorted(staged.parent.iterdir()):
            if entry.name.startswith(old):
                placed.append(replace(entry, path.with_name(new + entry.name[len(old):])))
    except OSError as exc:
        raise CnnlabError(f"could not write {str(path)!r}: {exc.strerror or exc}.") from None
    return placed


def replace(source, target):
    """``os.replace``, also over an earlier export's folder (moved aside, then removed)."""
    if target.is_dir() and not target.is_symlink():
        aside = target.with_name(f"{files.PARTIAL_PREFIX}{os.getpid()}-old-{target.name}")
        os.replace(target, aside)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)
    return target


def write_record(path, record):
    """The JSON beside the artifact at `path`, marked as a cnnlab export."""
    files.write_json(meta_path(path), {MARK: 1, **record})
