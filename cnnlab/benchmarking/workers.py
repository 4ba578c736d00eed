"""The parent's side of `cnnlab.benchmarking.worker`: start a worker, ask it, hear why it died or hung."""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading

from cnnlab.benchmarking.timing import Dropped
from cnnlab.processes import end_with_parent, exit_reason

STDERR_LINES = 3  # the last lines of a dead worker's stderr that its row quotes
QUIT_SECONDS = 30  # how long a worker asked to quit may take before it is killed
ANSWER_SECONDS = 300  # the least time a worker has for one answer before it is deemed hung and killed
SLOW_FLOPS = 1e10  # floating-point operations per second of a slow CPU (two cores of today's manage several times)


def answer_seconds(spec):
    """How long the worker of `spec` may take over one answer: `ANSWER_SECONDS`, 50 measurements, or four
    training steps of the expected model at `SLOW_FLOPS` (a build traces and runs about three), the longest."""
    _, multiply_adds = spec.expected_counts()
    step = 3 * 2 * multiply_adds * spec.batch_size / SLOW_FLOPS  # forward and backward: 3 x 2 FLOPs per multiply-add
    return max(ANSWER_SECONDS, 50 * spec.seconds, 4 * step)


class Worker:
    """A running ``python -m cnnlab.benchmarking.worker`` for one `WorkerSpec`; its stderr goes to a file, its
    answers are read by a thread of their own, so that one that never comes is noticed (`answer_seconds`)."""

    COMMAND = (sys.executable, "-m", "cnnlab.benchmarking.worker")  # the spec's JSON follows

    def __init__(self, spec):
        self.spec, self.timeout = spec, answer_seconds(spec)
        self.log = tempfile.TemporaryFile(mode="w+", prefix="cnnlab-benchmark-")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        self.process = subprocess.Popen([*self.COMMAND, spec.to_json()], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
                                        preexec_fn=end_with_parent)
        self.answers = queue.Queue()
        self.reader = threading.Thread(target=self._read, name=f"benchmark-{spec.architecture}", daemon=True)
        self.reader.start()

    def _read(self):
        """Put every line of the worker's stdout on `answers`, then ``""``: stdout closed."""
        for line in self.process.stdout:
            self.answers.put(line)
        self.answers.put("")

    def imported(self):
        """Wait until the worker has imported TensorFlow (raises `Dropped`)."""
        return self._answer("the imports")

    def ask(self, **request):
        """Send one request, return its answer (raises `Dropped` when the worker failed, died or hung)."""
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise Dropped(self._death()) from None
        return self._answer(f"the {' '.join(request)} request")

    def _answer(self, what):
        """The worker's next answer, within `timeout` seconds (else it is killed); `what`: what was asked."""
        try:
            line = self.answers.get(timeout=self.timeout)
        except queue.Empty:
            self.process.kill()
            raise Dropped(f"the worker gave no answer to {what} within {self.timeout:,.0f} s (hung?), and was "
                          "killed") from None
        if not line:
            raise Dropped(self._death())
        message = json.loads(line)
        if "error" in message:
            raise Dropped(message["error"])
        return message["ok"]

    def _death(self):
        """Why the worker stopped answering: how it ended and the end of its stderr."""
        code = self.process.wait()
        self.log.seek(0)
        tail = [line.strip() for line in self.log.read().splitlines() if line.strip()][-STDERR_LINES:]
        hint = " (out of memory?)" if code == -9 else ""
        return f"the worker process ended ({exit_reason(code)}{hint})" + (f": {' | '.join(tail)}" if tail else "")

    def quit(self):
        """Ask the worker to quit (without waiting: several wind TensorFlow down at once)."""
        if self.process.poll() is None and not self.process.stdin.closed:
            try:
                self.process.stdin.write(json.dumps({"quit": True}) + "\n")
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def close(self):
        """Make sure the worker has ended (asked to quit, else killed after `QUIT_SECONDS`)."""
        self.quit()
        try:
            self.process.wait(timeout=QUIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=QUIT_SECONDS)  # it ends at the end of stdout, which the process's end closes
        self.process.stdout.close()
        self.log.close()
