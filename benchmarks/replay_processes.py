"""Replay in one process against replay in worker processes (issue 18, acceptance 1): `perception3d replay` of the
geometric graph (detection3d, segmentation, occupancy) on one 8 s synthetic scene with `--processes 1` and
`--processes 2`, alternating round by round, each replay in its own process: wall, user and system seconds (the
workers' included) and the real-time factor (scene seconds / wall seconds). Writes
benchmarks/results/replay_processes.md.

    .venv/bin/python benchmarks/replay_processes.py [--rounds 3] [--bag BAG]   # BAG: a converted 8 s scene to reuse
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from thread_policy import GEOMETRIC_GRAPH, RESULTS, SCENE_SECONDS, cli, scene_bag, timed_run

from perception3d.bench.common import format_table, write_results

PROCESSES = (1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bag", type=Path, default=None,
                        help="replay this converted scene (seed 0, 8 s, good 2D) instead of synthesizing it")
    args = parser.parse_args()
    idle_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="p3d-processes-") as tmp:
        work = Path(tmp)
        bag = args.bag or scene_bag(work)
        runs: dict[int, list[dict[str, float]]] = {count: [] for count in PROCESSES}
        loads = []
        for round_ in range(args.rounds):
            for count in PROCESSES if round_ % 2 == 0 else PROCESSES[::-1]:
                loads.append(os.getloadavg()[0])
                out = work / f"out_{count}_{round_}"
                runs[count].append(timed_run(cli("replay", str(bag), "--out", str(out), "--graph",
                                                 *GEOMETRIC_GRAPH, "--processes", str(count), "--no-progress")))
                print(count, runs[count][-1], flush=True)
                shutil.rmtree(out)  # ~370 MB a replay: kept, they made the later runs reclaim page cache
    rows = []
    for count, samples in runs.items():
        factors = ", ".join(f"{SCENE_SECONDS / s['wall_s']:.2f}x" for s in samples)
        rows.append([count, " / ".join(f"{s['wall_s']:.1f}" for s in samples),
                     " / ".join(f"{s['user_s'] + s['system_s']:.1f}" for s in samples), factors])
    notes = (f"`perception3d replay` of one {SCENE_SECONDS:.0f} s synthetic scene (seed 0, `good` simulated 2D "
             "boxes, 160 sweeps) through the geometric graph; with 2 the worker processes run detection3d and "
             "segmentation -> occupancy (runtime.replay_processes). Each replay in its own process (start-up "
             f"included), {args.rounds} rounds, the two settings alternating; the figures are in round order. CPU "
             "seconds are the replay's and its workers'. 1-minute load average before the scene's synthesis "
             f"{idle_load:.1f}, and at each run's start (the synthesis and the runs before raise it): "
             f"{', '.join(f'{x:.1f}' for x in loads)}; {os.cpu_count()} cores.")
    table = format_table(["--processes", "wall [s]", "CPU (user + system) [s]", "real-time factor"], rows)
    print(write_results(RESULTS, "replay_processes",
                        "Replay in one process and in two worker processes (benchmarks/replay_processes.py)",
                        table, {"runs": {str(k): v for k, v in runs.items()}, "loads": loads, "idle_load": idle_load},
                        notes))


if __name__ == "__main__":
    main()
