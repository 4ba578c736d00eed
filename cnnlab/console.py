"""What a command says, and what it keeps to itself: ``--verbose``, ``--quiet`` and TensorFlow's noise.

TensorFlow's C++ side writes its start-up lines (absl's "All log messages before
absl::InitializeLog()", oneDNN's notice, the CUDA probes) straight to file
descriptor 2, out of reach of ``TF_CPP_MIN_LOG_LEVEL``. By default a command runs
in a `session` that points descriptor 2 at a temporary file while Python's own
``sys.stderr`` (click's ``Error:`` lines, notes) still reaches the terminal; what
was captured is replayed only on an unexpected failure. Keras's warnings and
TensorFlow's Python logging are kept out of sight the same way. ``--verbose``
captures nothing and hides nothing.

Importing this module does not import TensorFlow.
"""

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

import click

NOISY_LOGGERS = ("tensorflow", "absl", "h5py")


@dataclass(frozen=True)
class Console:
    """How much a command says.

    Attributes:
        verbose: everything: TensorFlow's logs, Keras's warnings, tracebacks.
        quiet: only errors and the final result line.
    """

    verbose: bool = False
    quiet: bool = False

    def info(self, message=""):
        """Print progress or an informational line (a print-like ``echo`` for the domain functions)."""
        if not self.quiet:
            click.echo(message)

    @property
    def fit_verbose(self):
        """Keras's ``fit(verbose=...)``: a progress bar on a terminal, one line per epoch elsewhere."""
        return keras_verbose(self.quiet, sys.stdout)


def keras_verbose(quiet, stream):
    """0 when quiet, 1 (the progress bar) on a terminal, 2 (a line per epoch) on a file or pipe."""
    if quiet:
        return 0
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):  # a closed or fake stream
        return 2


@contextlib.contextmanager
def session(console, expected=()):
    """Run a command under `console`'s settings.

    Unless verbose, file descriptor 2 is captured (see `NativeStderr`), Python
    warnings go into the capture and TensorFlow's Python loggers show errors only.
    The capture is replayed if the command raises anything not in `expected`
    (an unexpected failure, exit code 1).
    """
    if console.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with NativeStderr() as native, _warnings_captured(), _loggers_at(logging.ERROR):
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, expected):
                native.replay()
            raise


class NativeStderr:
    """File descriptor 2 redirected into a temporary file; Python's ``sys.stderr`` still reaches the terminal.

    Use as a context manager; `replay` writes what was captured to the terminal.
    Under click's test runner (whose ``sys.stderr`` is no file descriptor)
    ``sys.stderr`` is left as it is.
    """

    def __init__(self):
        self._capture = None
        self._saved = None
        self._python_stderr = None
        self._replayed = False

    def __enter__(self):
        _flush(sys.stderr)
        self._capture = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._capture.fileno(), 2)
        if _is_fd2(sys.stderr):
            self._python_stderr = sys.stderr
            sys.stderr = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding=sys.stderr.encoding,
                                   errors="backslashreplace")
        return self

    def captured(self):
        """Everything written to descriptor 2 so far, as text."""
        self._capture.seek(0)
        return self._capture.read().decode(errors="replace")

    def replay(self):
        """Write the captured output to the terminal's stderr (once)."""
        if self._replayed:
            return
        self._replayed = True
        text = self.captured()
        if text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            _flush(sys.stderr)

    def __exit__(self, *exc_info):
        _flush(sys.stderr)
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if self._python_stderr is not None:
            # The terminal stream is left open: loggers created meanwhile may still hold it.
            sys.stderr = self._python_stderr
        self._capture.close()
        return False


def _is_fd2(stream):
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _flush(stream):
    with contextlib.suppress(AttributeError, OSError, ValueError):
        stream.flush()


@contextlib.contextmanager
def _warnings_captured():
    """Python warnings (Keras's UserWarnings among them) written to descriptor 2, the capture."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line)
        os.write(2, text.encode(errors="replace"))

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _loggers_at(level):
    """TensorFlow's, absl's and h5py's Python loggers at `level` or above, restored afterwards."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, old in zip(loggers, before):
            logger.setLevel(old)


def aligned(rows, right=()):
    """Lines of a plain-text table: each column as wide as its widest cell, two spaces apart.

    Args:
        rows: lists of cell strings, the header first.
        right: indices of the columns aligned right (numbers).
    """
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]
