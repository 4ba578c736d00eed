"""How long `cnnlab serve` takes to answer one image, request after request, through the page's own API.

As a user runs it: ``cnnlab serve RUN --port P`` in a fresh process on a free port; once it
says it is serving, one warm-up request, then ``--requests`` requests of one image, one
after another, through ``gradio_client.Client(url).predict(handle_file(image),
api_name="/answer_image")`` (the upload, the queue, the model, Grad-CAM for a classifier,
the answer and its picture downloaded back). It prints the median and 95th-percentile
latency in milliseconds, the run, the image and the model's answer; then stops the server
with Ctrl-C (SIGINT) and checks that it exits with 0.

    python benchmarks/serve_latency.py --run runs/mnist_simple_cnn [--requests 100] [--image digit.png]

The default image is a digit of scikit-learn's bundled digits (8 x 8, bright on black),
which the server brings to the run's input size as ``cnnlab predict`` would.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 300  # seconds for the server to import TensorFlow, load the run and trace the model


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(run, port, log):
    """``cnnlab serve RUN --port PORT`` in a fresh process (its stderr into the file `log`): ``(process, url)``
    once it says it serves."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "w") as errors:
        process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    deadline = time.time() + START_TIMEOUT
    for line in process.stdout:
        found = re.search(r"^Serving .* at (http://\S+)", line)
        if found:
            return process, found.group(1)
        if time.time() > deadline:
            break
    process.kill()
    process.wait()
    raise SystemExit(f"cnnlab serve did not start: {Path(log).read_text()[-2000:]}")


def digit_image(folder):
    """A PNG of scikit-learn's first digit (a 0), 0..255, bright on black: its path."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    path = Path(folder) / "digit.png"
    Image.fromarray((load_digits().images[0] * 255 / 16).astype(np.uint8)).save(path)
    return path


def measure(url, image, requests):
    """Milliseconds of each of `requests` answers of `image`, after one warm-up; and the last answer's text."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    answer = client.predict(handle_file(str(image)), api_name="/answer_image")  # warm-up: not counted
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        answer = client.predict(handle_file(str(image)), api_name="/answer_image")
        times.append(1000 * (time.perf_counter() - began))
    return times, answer[0]


def percentile(values, share):
    """The `share` (0..1) percentile of `values`, by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    place = share * (len(ordered) - 1)
    low = int(place)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (place - low)


def stop(process):
    """Ctrl-C the server; its exit code."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="The run folder (or .keras file) to serve.")
    parser.add_argument("--requests", type=int, default=100, help="Timed requests, one after another.")
    parser.add_argument("--image", type=Path, help="The image to send (default: one of scikit-learn's digits).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-latency-") as scratch:
        image = args.image or digit_image(scratch)
        process, url = start(args.run.resolve(), free_port(), Path(scratch) / "serve.log")
        try:
            times, answer = measure(url, image, args.requests)
        finally:
            code = stop(process)
    print(f"run: {args.run}  image: {image if args.image else 'a scikit-learn digit (8 x 8)'}  url: {url}")
    print(f"answer: {answer}")
    print(f"{len(times)} requests one after another: median {statistics.median(times):.1f} ms, "
          f"95th percentile {percentile(times, 0.95):.1f} ms (min {min(times):.1f}, max {max(times):.1f})")
    print(f"server exit code after Ctrl-C: {code}")


if __name__ == "__main__":
    main()
