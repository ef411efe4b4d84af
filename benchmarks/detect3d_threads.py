"""Do Python threads run two detect_3d calls at once? (issue 18: why a replay uses processes, not threads, for its
second core.)

Times `--calls` detect_3d calls on bench algo's frame one after another, then the same number split over two threads,
and prints the wall-clock milliseconds per call of each and their ratio (above 1: the threads are slower than one
thread doing all the calls; 0.5 would be two cores fully used).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detect3d_threads.py [--calls 30]
"""
from __future__ import annotations

import argparse
import os
import threading
import time

from perception3d.bench.algo import synthetic_frame
from perception3d.core.lift3d import detect_3d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="detect_3d calls per measurement (even)")
    args = parser.parse_args()
    frame = synthetic_frame()

    def calls(count: int) -> None:
        for _ in range(count):
            detect_3d(frame.points, frame.views, frame.rig.T_base_lidar)

    calls(1)  # imports, caches
    start = time.perf_counter()
    calls(args.calls)
    one = (time.perf_counter() - start) / args.calls
    threads = [threading.Thread(target=calls, args=(args.calls // 2,)) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    two = (time.perf_counter() - start) / (2 * (args.calls // 2))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores: one thread {1e3 * one:.1f} ms per call, two threads {1e3 * two:.1f} ms per call "
          f"(ratio {two / one:.2f})")


if __name__ == "__main__":
    main()
