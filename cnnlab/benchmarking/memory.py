"""A process's resident memory, now and at its peak (Linux's ``/proc/self/status``).

TensorFlow's ``get_memory_info`` answers for GPUs only, so on a CPU a model's
memory is what the process holding it takes from the machine: the peak resident set
(``VmHWM``) of a fresh process that builds, trains and runs it, minus what it held
once TensorFlow, Keras and cnnlab were imported (`baseline`).
"""

import resource
import sys

METHOD = ("peak memory: the peak resident set (VmHWM) of the worker process that builds, trains and runs the "
          "model, minus its resident set once TensorFlow and cnnlab were imported")


def _status(key, pid="self"):
    """A ``kB`` figure of a process's ``/proc/<pid>/status`` in bytes, or None where there is none (not Linux)."""
    return _kilobytes(f"/proc/{pid}/status", key)


def _kilobytes(path, key):
    try:
        with open(path, encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def resident_bytes():
    """The resident set of this process now (its peak where the system does not say: macOS)."""
    return _status("VmRSS") or peak_bytes()


def peak_bytes(pid=None):
    """The largest resident set this process (or the process `pid`: None where unknown) has had."""
    if pid is not None:
        return _status("VmHWM", pid)
    found = _status("VmHWM")
    if found is not None:
        return found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB elsewhere


def available_bytes():
    """The memory the machine can still give (Linux's MemAvailable), or None where unknown."""
    return _kilobytes("/proc/meminfo", "MemAvailable")
