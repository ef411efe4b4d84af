"""detect_3d step by step in several checkouts, alternated, in process CPU time (issue 16 acceptance 4, issue 18).

On a shared 2-core machine wall-clock minima of two versions measured minutes apart can differ by 30 % with no
change in the code. This runs each checkout in turn, round after round, each in its own process with
PYTHONPATH=<checkout>/src and one thread, and reads the process CPU time of detect_3d's steps (`timings=`: ground,
support, anchors, choose_refine, merge) on bench algo's frame (34,688 points, six cameras, 174 2D boxes). Per
checkout and round: the minimum of the whole call and of each step over `--calls` calls, and the sum of the step
minima.

    .venv/bin/python benchmarks/detect3d_steps.py /path/to/old /path/to/new [--rounds 4] [--calls 40]

The checkouts must share this environment's packages (the same .venv); old ones must have `detect_3d(...,
timings=)`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def measure(calls: int) -> dict[str, float]:
    """{'total': min, step: min, ...} [ms] of detect_3d on bench algo's frame in this process (CPU time)."""
    from perception3d.bench.algo import synthetic_frame

    frame = synthetic_frame()
    return step_minima(frame.points, frame.views, frame.rig.T_base_lidar, calls)


def step_minima(points, views, T_base_lidar, calls: int) -> dict[str, float]:
    """{'total': min, step: min, ...} [ms]: the process-time minimum of the whole call and of each of its steps
    (`timings=`) over `calls` calls of detect_3d on these inputs, after one warm-up call (imports, caches)."""
    from perception3d.core.lift3d import detect_3d  # imported here: a worker takes its checkout's (run_in_checkout)

    detect_3d(points, views, T_base_lidar)
    best: dict[str, float] = {}
    for _ in range(calls):
        steps: dict[str, float] = {}
        start = time.process_time()
        detect_3d(points, views, T_base_lidar, timings=steps)
        steps["total"] = 1e3 * (time.process_time() - start)
        for name, ms in steps.items():
            best[name] = min(best.get(name, float("inf")), ms)
    return best


def run_in_checkout(script: str, checkout: Path, *args: str) -> dict[str, float]:
    """The JSON object `script ARGS` prints last, run in a process that imports perception3d from checkout/src, with
    one thread (the scripts' --worker mode)."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, script, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def alternated(script: str, checkouts: list[Path], rounds: int, *worker_args: str):
    """(round, checkout, 1-minute load average before it, what `script` WORKER_ARGS printed) for each checkout in
    turn, round after round (run_in_checkout)."""
    for round_ in range(1, rounds + 1):
        for checkout in checkouts:
            load = os.getloadavg()[0]
            yield round_, checkout, load, run_in_checkout(script, checkout, *worker_args)


def checkout_comparison(parser: argparse.ArgumentParser, rounds: int,
                        measure_args: Callable[[argparse.Namespace], dict[str, float]]) -> argparse.Namespace | None:
    """Parse the arguments of a script that compares checkouts with `alternated`: its own ones (already on parser),
    the checkouts, --rounds (default `rounds`) and the hidden --worker of run_in_checkout's side. In --worker mode
    prints measure_args(args) as JSON and returns None; else returns the arguments (at least one checkout)."""
    parser.add_argument("checkouts", type=Path, nargs="*", help="repository roots to compare")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_args(args)))
        return None
    if not args.checkouts:
        parser.error("give at least one checkout")
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="detect_3d calls per checkout and round")
    args = checkout_comparison(parser, 4, lambda worker_args: measure(worker_args.calls))
    if args is None:
        return
    print("| round | checkout | load | whole call [ms] | ground | support | anchors | choose_refine | merge | sum |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for round_, checkout, load, best in alternated(__file__, args.checkouts, args.rounds, "--worker", "--calls",
                                                   str(args.calls)):
        steps = [best.get(name, float("nan")) for name in ("ground", "support", "anchors", "choose_refine", "merge")]
        cells = " | ".join(f"{ms:.1f}" for ms in [best["total"], *steps, sum(steps)])
        print(f"| {round_} | {checkout} | {load:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
