"""Child processes cnnlab starts (the workers of a job, the trials of a study): tied to their parent's life,
and how one ended, in words."""

import contextlib
import ctypes
import signal

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _libc_prctl():
    """libc's prctl, found when this module is imported: in the parent, never between fork and exec, where
    loading a library can wait forever on a lock another thread (TensorFlow's) held when the process forked."""
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return None


_PRCTL = _libc_prctl()


def end_with_parent():
    """In a child, before it runs (``preexec_fn``): a SIGTERM when its parent dies (Linux), so that no child
    outlives the process that started it (SIGTERM stops training as Ctrl-C does). Only a system call here:
    the function was looked up before the fork."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def exit_reason(code):
    """How a process with the return code `code` ended: ``exit code 2``, ``killed by SIGKILL``."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"
