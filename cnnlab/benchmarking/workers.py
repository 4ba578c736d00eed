"""The parent's side of `cnnlab.benchmarking.worker`: start a worker, ask it, hear why it died."""

import json
import os
import subprocess
import sys
import tempfile

from cnnlab.benchmarking.timing import Dropped
from cnnlab.processes import end_with_parent, exit_reason

STDERR_LINES = 3  # the last lines of a dead worker's stderr that its row quotes
QUIT_SECONDS = 30  # how long a worker asked to quit may take before it is killed


class Worker:
    """A running ``python -m cnnlab.benchmarking.worker`` for one `WorkerSpec`; its stderr goes to a file."""

    def __init__(self, spec):
        self.spec = spec
        self.log = tempfile.TemporaryFile(mode="w+", prefix="cnnlab-benchmark-")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        self.process = subprocess.Popen([sys.executable, "-m", "cnnlab.benchmarking.worker", spec.to_json()],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        env=env, preexec_fn=end_with_parent)

    def imported(self):
        """Wait until the worker has imported TensorFlow (raises `Dropped`)."""
        return self._answer()

    def ask(self, **request):
        """Send one request, return its answer (raises `Dropped` when the worker failed or died)."""
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise Dropped(self._death()) from None
        return self._answer()

    def _answer(self):
        line = self.process.stdout.readline()
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
        self.process.stdout.close()
        self.log.close()
