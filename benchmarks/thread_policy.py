"""The process thread policy (runtime/threads.py) measured: `perception3d replay` of the full geometric graph on one
8 s synthetic scene with `process_threads: 0` (the numeric libraries' default pools, one thread per core) and
`process_threads: 1` (the default), alternating, each replay in its own process; wall, user and system seconds of
that process (wait4), and the real-time factor (scene seconds / wall seconds). Writes benchmarks/results/threads.md.

    .venv/bin/python benchmarks/thread_policy.py [--repeats 2] [--bag BAG]   # BAG: a converted 8 s scene to reuse
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perception3d.bench.common import format_table, write_results
from perception3d.nodes.params import parameter_file

SCENE_SECONDS = 8.0
GEOMETRIC_GRAPH = ("detection3d", "segmentation", "occupancy")  # the 2D boxes are the bag's simulated ones
RESULTS = Path(__file__).resolve().parent / "results"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "perception3d.cli", *args]


def timed_run(command: list[str]) -> dict[str, float]:
    """Wall, user and system seconds of one child process (its own threads, and the processes it started and
    waited for, included)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {child.stderr.read()[-2000:]}")
    return {"wall_s": wall, "user_s": usage.ru_utime, "system_s": usage.ru_stime}


def scene_bag(work: Path) -> Path:
    """A converted SCENE_SECONDS synthetic scene (seed 0, `good` simulated 2D boxes) under work."""
    subprocess.run(cli("synth", "--out", str(work / "root"), "--scenes", "1", "--seconds", str(SCENE_SECONDS),
                       "--seed", "0"), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(cli("convert", "--dataroot", str(work / "root"), "--version", "v1.0-synth", "--out",
                       str(work / "bags"), "--simulate-2d", "good"), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    (bag,) = sorted((work / "bags").iterdir())
    return bag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bag", type=Path, default=None,
                        help="replay this converted scene (seed 0, 8 s, good 2D) instead of synthesizing it")
    args = parser.parse_args()
    environment = {k: os.environ.get(k, "") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if any(environment.values()):
        sys.exit(f"unset {environment} first: the 0 row must see the libraries' own defaults")
    with tempfile.TemporaryDirectory(prefix="p3d-threads-") as tmp:
        work = Path(tmp)
        bag = args.bag or scene_bag(work)
        load_before = os.getloadavg()[0]
        runs: dict[int, list[dict[str, float]]] = {0: [], 1: []}
        for repeat in range(args.repeats):
            for count in (0, 1) if repeat % 2 == 0 else (1, 0):
                config = work / f"threads{count}.yaml"
                config.write_text(parameter_file({}, shared={"process_threads": count}))
                out = work / f"out_{count}_{repeat}"
                runs[count].append(timed_run(cli("replay", str(bag), "--out", str(out), "--config", str(config),
                                                 "--graph", *GEOMETRIC_GRAPH, "--processes", "1", "--no-progress")))
        load_after = os.getloadavg()[0]
    rows, data = [], {"runs": {str(k): v for k, v in runs.items()}, "load": [load_before, load_after]}
    for count, samples in runs.items():
        best = min(samples, key=lambda s: s["wall_s"])
        rows.append([f"{count} ({'libraries default' if count == 0 else 'one thread per pool'})",
                     f"{best['wall_s']:.1f}", f"{best['user_s']:.1f}", f"{best['system_s']:.1f}",
                     f"{SCENE_SECONDS / best['wall_s']:.2f}x"])
    notes = (f"`perception3d replay` of one {SCENE_SECONDS:.0f} s synthetic scene (seed 0, `good` simulated 2D "
             "boxes) through the full geometric graph (detection3d, segmentation, occupancy), each run in its own "
             f"process; the fastest of {args.repeats} runs per setting, settings alternating. Seconds of the replay "
             "process (synthesis and conversion excluded). 1-minute load average "
             f"{load_before:.1f} before and {load_after:.1f} after, on {os.cpu_count()} cores.")
    table = format_table(["process_threads", "wall [s]", "user [s]", "system [s]", "real-time factor"], rows)
    print(write_results(RESULTS, "threads", "Thread policy of the host process (benchmarks/thread_policy.py)",
                        table, data, notes))


if __name__ == "__main__":
    main()
