"""Does the host give this machine its cores? Pure-Python spinners, no TensorFlow.

One spinner process per core counts loop iterations for ``--seconds`` and, each
second, how many CPU seconds it got per wall second. On an idle machine that
owns its cores every spinner gets about 1.00 every second; well under 1.00 means
something else (another process, or the host) has the cores. Run it before timing:
a slow repetition of ``benchmarks/throughput.py`` on a machine that passes this
check is the process's own doing (BENCHMARKS.md: the tf.data stall at Keras's
epoch ends).

    python benchmarks/host_check.py [--seconds 30] [--spinners 2]
"""

import argparse
import multiprocessing
import os
import statistics
import time


def spin(seconds, queue):
    """Per second: (iterations, CPU seconds per wall second) of a tight loop."""
    out, count = [], 0
    end = time.perf_counter() + seconds
    start, cpu = time.perf_counter(), time.process_time()
    while start < end:
        for _ in range(20000):
            count += 1
        now = time.perf_counter()
        if now - start >= 1:
            out.append((count / (now - start), (time.process_time() - cpu) / (now - start)))
            count, start, cpu = 0, now, time.process_time()
    queue.put(out)


def cpu_times():
    """The guest's (busy, idle, steal) jiffies from /proc/stat's first line."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, open("/proc/stat").readline().split()[1:9])
    return user + nice + system + irq + softirq, idle + iowait, steal


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--spinners", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.seconds < 1 or args.spinners < 1:
        parser.error("--seconds and --spinners must be at least 1")
    queue = multiprocessing.Queue()
    before = cpu_times()
    workers = [multiprocessing.Process(target=spin, args=(args.seconds, queue)) for _ in range(args.spinners)]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    busy, idle, steal = (b - a for a, b in zip(before, cpu_times()))
    total = busy + idle + steal
    print(f"{args.spinners} spinners, {args.seconds} s; guest CPUs: busy {busy / total:.0%}, idle {idle / total:.0%}, "
          f"steal {steal / total:.0%}")
    for i, seconds in enumerate(results, start=1):
        shares = [share for _, share in seconds]
        print(f"spinner {i}: CPU share per second median {statistics.median(shares):.2f}, min {min(shares):.2f}; "
              + " ".join(f"{share:.2f}" for share in shares))


if __name__ == "__main__":
    main()
