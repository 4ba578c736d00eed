"""One model trained by several processes (``distribution:``): Keras's DataParallel on JAX's distributed runtime.

Every process (a *worker*) runs the same command. `start` joins them with
``jax.distributed.initialize`` (process 0 hosts the coordinator) and sets Keras's
``DataParallel`` over all the workers' devices: the variables are replicated, each
global batch is split across the workers and their gradients are combined, so the
workers train one model. Worker ``i`` of ``N`` loads only its shard, examples
``i, i + N, ...`` of every global batch (`shard`): the global batch size and the
learning rate stay what the YAML says, and every worker takes the same steps.

Only process 0 (`Cluster.primary`) writes: run folder, checkpoints, history. It
shares what the others need to start from the same point (`share`, `shared_file`):
the run, the resume state, the weights to load. A worker that dies ends the others
within ``distribution.timeout`` seconds (JAX's heartbeat), rather than leaving them
waiting; `launch` starts N local workers for trying it out and stops them all when one
fails.

TensorFlow's MultiWorkerMirroredStrategy fails inside ``Model.fit`` with Keras 3
(keras-team/keras#20585), so more than one worker needs ``runtime.backend: jax``.
Unset keys are read from the environment variables Keras's own
``keras.distribution.initialize`` reads; JAX finds the coordinator and process
number itself under Slurm, Open MPI and Kubernetes.
"""

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.backend import EXTRA
from cnnlab.processes import end_with_parent, exit_reason
from cnnlab.errors import CnnlabError, ConfigError

ENV_WORKERS = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"  # comma-separated; the first is process 0's
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
WHY_JAX = ("TensorFlow's MultiWorkerMirroredStrategy fails in Keras 3's Model.fit, keras-team/keras#20585; "
           f"JAX: {EXTRA['jax']}")


@dataclass(frozen=True)
class Cluster:
    """This process's place in the job: ``process_id`` of ``workers``."""

    workers: int = 1
    process_id: int = 0
    devices: int = 1  # in the whole job (a batch is split over all of them)

    @property
    def primary(self):
        """Whether this process writes the run (process 0)."""
        return self.process_id == 0


_cluster = Cluster()


def current():
    """The `Cluster` this process belongs to (one worker until `start` joins more)."""
    return _cluster


def plan(cfg, distributed=True):
    """``(workers, coordinator, process_id)`` of `cfg`: its ``distribution`` keys, else the environment.

    The coordinator and the process number may stay None: JAX then finds them (Slurm,
    Open MPI, Kubernetes), or says it cannot. Raises `ConfigError` for values that
    cannot work, and for more than one worker when `distributed` is False (a command
    that runs on one process only).
    """
    spec = cfg.distribution
    workers = spec.workers or _env_int(ENV_WORKERS, "distribution.workers") or 1
    coordinator = spec.coordinator or (os.environ.get(ENV_ADDRESSES, "").split(",")[0] or None)
    process_id = spec.process_id if spec.process_id is not None else _env_int(ENV_PROCESS_ID,
                                                                               "distribution.process_id")
    if workers == 1:
        return 1, None, 0
    if not distributed:
        raise ConfigError(f"distribution.workers is {workers}, but only `cnnlab train` (one seed) runs on several "
                          f"workers: run this on one process (distribution.workers: 1, and no {ENV_WORKERS}).")
    if process_id is not None and process_id >= workers:
        raise ConfigError(f"distribution.process_id is {process_id}, but the job has {workers} workers: "
                          f"give each worker a number from 0 to {workers - 1}.")
    if cfg.runtime.backend != "jax":
        raise ConfigError(f"distribution.workers {workers} needs runtime.backend: jax ({WHY_JAX}). "
                          "Set runtime.backend: jax, or train on one worker.")
    if cfg.data.batch_size % workers:
        raise ConfigError(f"data.batch_size {cfg.data.batch_size} does not split evenly over {workers} workers: "
                          f"give a multiple of {workers} (each worker takes batch_size / workers images per step).")
    if cfg.augmentation.engine == "generator":
        raise ConfigError("augmentation.engine: generator feeds fit from Python on one process; with several "
                          "workers use augmentation.engine: layers (the same transformations, in tf.data).")
    return workers, coordinator, process_id


def _env_int(name, key):
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name} (for {key}) must be a whole number. "
                          f"Received: {value!r}.") from None


def start(cfg, job, echo=print):
    """Join this process to `job` (`plan` of `cfg`; nothing for one worker); before any JAX computation."""
    global _cluster
    workers, coordinator, process_id = job
    if workers == 1:
        return _cluster
    import jax

    if not jax.distributed.is_initialized():
        timeout = cfg.distribution.timeout
        echo(f"Worker {'?' if process_id is None else process_id} of {workers}: joining the job at "
             f"{coordinator or 'the coordinator JAX finds'}; every worker must join within {timeout} s "
             "(distribution.timeout), or JAX ends the job")
        if process_id and coordinator:
            _wait_for(coordinator, timeout)
        # JAX's preemption notifier would take SIGTERM from cnnlab, which stops training on it like Ctrl-C
        jax.config.update("jax_enable_preemption_service", False)
        try:
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=workers, process_id=process_id,
                                       initialization_timeout=timeout, heartbeat_timeout_seconds=timeout,
                                       shutdown_timeout_seconds=timeout)
        except (RuntimeError, ValueError, TypeError) as exc:
            where = coordinator or "(not set: give distribution.coordinator or " + ENV_ADDRESSES + ")"
            raise CnnlabError(f"worker {process_id if process_id is not None else '?'} of {workers} could not join "
                              f"the job at coordinator {where} within {timeout} s: {str(exc).splitlines()[0]}. "
                              "Start every worker with the same coordinator (process 0's HOST:PORT) and "
                              "workers, each with its own process_id.") from None
    import keras

    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False))
    _cluster = Cluster(workers=jax.process_count(), process_id=jax.process_index(), devices=jax.device_count())
    if cfg.data.batch_size % _cluster.devices:
        raise ConfigError(f"data.batch_size {cfg.data.batch_size} does not split evenly over the job's "
                          f"{_cluster.devices} devices: give a multiple of {_cluster.devices}.")
    return _cluster


def _wait_for(coordinator, timeout):
    """Wait until process 0's coordinator accepts connections; a `CnnlabError` after `timeout` seconds.

    (JAX itself ends the process without a word when it cannot reach it.)
    """
    host, port = coordinator.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CnnlabError(f"could not reach the coordinator {coordinator} within {timeout} s "
                                  f"(distribution.timeout): {exc.strerror or exc}. Is process 0 running, on the "
                                  "machine and port that distribution.coordinator names?") from None
            time.sleep(0.5)


def shard(index, weights=False):
    """This worker's examples of a global batch's indices: every ``workers``-th from its own number.

    A batch that does not split evenly over the job's devices (a pass's short last one)
    is topped up with its own first examples: every worker gets the same number, never
    none, and no example is left out. With `weights`, also a weight per example: 0 for
    the top-up copies (so validation scores each example once).
    """
    if _cluster.workers == 1:
        return index
    import tensorflow as tf

    n, step = tf.shape(index)[0], _cluster.devices
    positions = tf.range((n + step - 1) // step * step)[_cluster.process_id::_cluster.workers]
    mine = tf.gather(index, positions % n)
    return (mine, tf.cast(positions < n, tf.float32)) if weights else mine


def share(value):
    """`value` (JSON data) as process 0 has it, on every worker; every worker must call it."""
    if _cluster.workers == 1:
        return value
    return json.loads(_broadcast(json.dumps(value).encode() if _cluster.primary else b""))


def primary_only(function):
    """``function()`` on process 0, its value (JSON data) on every worker.

    A `CnnlabError` it raises is raised on every worker, so none waits for a step
    process 0 will never take.
    """
    return _outcome(function, then_others=False)


def primary_first(function):
    """``function()`` on process 0, then on the others (a download lands once); its error raised on every worker."""
    return _outcome(function, then_others=True)


def _outcome(function, then_others):
    if _cluster.workers == 1:
        return function()
    value, error = None, None
    if _cluster.primary:
        try:
            value = function()
        except CnnlabError as exc:
            error = exc
    outcome = share({"error": str(error)} if error else {"value": None if then_others else value})
    if error:
        raise error
    if "error" in outcome:
        raise CnnlabError(f"{outcome['error']} (on worker 0)")
    if _cluster.primary:
        return value
    return function() if then_others else outcome["value"]


def agree(what, value):
    """Raise the same `CnnlabError` on every worker unless `value` (JSON data) is the same on all.

    Workers given different data would take different steps and wait for each other forever.
    """
    if _cluster.workers == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    digest = int.from_bytes(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()[:3], "little")
    digests = np.asarray(multihost_utils.process_allgather(np.int32(digest))).ravel().tolist()
    differ = [n for n, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise CnnlabError(f"worker(s) {', '.join(map(str, differ))} do not have the same {what} as worker 0: "
                          "give every worker the same experiment file, --set options and data.")


@contextlib.contextmanager
def shared_file(path):
    """Process 0's file `path` readable on every worker: the file itself there, elsewhere a temporary copy.

    Every worker must enter it (loading weights into a distributed model is a step all
    of them take, with the same values).
    """
    path = Path(path)
    if _cluster.workers == 1:
        yield path
        return
    data = _broadcast(path.read_bytes() if _cluster.primary else b"")
    if _cluster.primary:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cnnlab-worker-") as folder:
        copy = Path(folder) / path.name  # the suffix tells Keras the format
        copy.write_bytes(data)
        yield copy


CHUNK = 1 << 26  # bytes broadcast at once


def _broadcast(data):
    """Process 0's bytes on every worker."""
    import numpy as np
    from jax.experimental import multihost_utils

    # JAX computes in 32-bit integers: the size as two words, the bytes in chunks
    words = multihost_utils.broadcast_one_to_all(np.array([len(data) >> 31, len(data) & 0x7FFFFFFF], np.int32))
    size = (int(words[0]) << 31) | int(words[1])
    out = bytearray()
    for start in range(0, size, CHUNK):
        length = min(CHUNK, size - start)
        piece = (np.frombuffer(data, np.uint8, length, start) if _cluster.primary
                 else np.zeros(length, np.uint8))
        out += np.asarray(multihost_utils.broadcast_one_to_all(piece)).tobytes()
    return bytes(out)


@contextlib.contextmanager
def local():
    """Save a model on process 0 alone.

    Keras's saving makes a variable or two; under the distribution making one is a
    step every worker must join, so the distribution is set aside meanwhile.
    """
    if _cluster.workers == 1:
        yield
        return
    import keras

    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


# --------------------------------------------------------------------------- the local launcher

GRACE_SECONDS = 15  # how long a stopped worker gets to save its state before it is killed
INTERRUPT_SECONDS = 3  # after Ctrl-C, how long the workers get to stop by themselves
FOLLOW_SECONDS = 3  # when a worker fails, how long worker 0 gets to fail alike (its error is the one shown)
LOG_TAIL = 3000  # characters of a failed worker's output shown


def launch(arguments, workers, echo=print):
    """Run ``cnnlab ARGUMENTS`` (which set ``distribution.workers``) as `workers` processes on 127.0.0.1.

    Returns the job's exit code.

    Worker 0 prints to this terminal (its ``Error:`` line included); the others'
    output is kept, and shown when one of them fails. The first worker to fail stops
    the others as Ctrl-C does (the run is left to resume); a failure of another than
    worker 0 is raised as a `CnnlabError` quoting its own ``Error:`` line.
    """
    coordinator = f"127.0.0.1:{free_port()}"
    echo(f"Starting {workers} workers on {coordinator} (worker 0 prints here)")
    procs, logs = [], []
    try:
        for number in range(workers):
            place = ["--set", f"distribution.coordinator={coordinator}", "--set", f"distribution.process_id={number}"]
            log = None if number == 0 else tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "cnnlab", *arguments, *place], stdout=log,
                                          stderr=subprocess.STDOUT if log else None, preexec_fn=end_with_parent))
        failed, code = _watch(procs)
        if failed is not None and failed > 0:  # all may fail alike (a NaN loss): worker 0's own error is the one
            with contextlib.suppress(subprocess.TimeoutExpired):
                if procs[0].wait(timeout=FOLLOW_SECONDS) > 0:
                    failed, code = 0, procs[0].returncode
        if failed is None or (failed == 0 and code > 0):
            return code
        _stop(procs)
        output = _read(logs[failed]) if logs[failed] else ""
        if output:
            echo(f"Output of worker {failed} (last lines):\n{output[-LOG_TAIL:]}")
        reason = next((line.removeprefix("Error: ") for line in reversed(output.splitlines())
                       if line.startswith("Error:")), exit_reason(code))
        raise CnnlabError(f"worker {failed} of {workers} failed ({reason}); the other workers were stopped. "
                          "The run keeps its finished epochs: run the same command again to resume.")
    except KeyboardInterrupt:  # Ctrl-C reaches every worker too; a `kill` of this process does not
        _stop(procs, after=INTERRUPT_SECONDS)
        raise
    finally:
        _stop(procs)
        for log in logs:
            if log:
                log.close()


def _watch(procs):
    """Wait until every worker has succeeded, or one has failed: ``(failed worker or None, exit code)``."""
    while True:
        codes = [p.poll() for p in procs]
        failed = next((n for n, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is not None:
            return failed, codes[failed]
        if all(code == 0 for code in codes):
            return None, 0
        time.sleep(0.2)


def _stop(procs, after=0.0):
    """Stop the workers still running `after` seconds: SIGTERM (they stop like Ctrl-C), then kill the ones that hang."""
    deadline = time.monotonic() + after
    while after and time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _read(log):
    log.seek(0)
    return log.read().strip()


def free_port():
    """A TCP port free on 127.0.0.1 now (for the coordinator)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
