"""How detect_3d's time scales with the sweep's points and the 2D boxes (issue 18, acceptance 2).

bench algo's frame (34,688 points, six cameras, 174 2D boxes), thinned: every point, a random quarter or a random
twentieth of them (sweep order kept), each with all the boxes, the first box of each camera, the first box of one
camera, or none. Per case, in this process with one thread: the process-time minimum of `--calls` calls of the whole
call and of each step (`timings=`: ground, support, anchors, choose_refine, merge). A time that hardly moves when
the points shrink twenty-fold is the cost of the numpy calls themselves (their count, not their sizes). Writes
benchmarks/results/detect3d_scaling.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detect3d_scaling.py [--calls 25] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np
from detect3d_steps import step_minima  # a sibling script

from perception3d.bench.algo import synthetic_frame
from perception3d.bench.common import format_table, write_results
from perception3d.core.frustum import CameraView
from perception3d.runtime.heap import keep_freed_memory

STEPS = ("ground", "support", "anchors", "choose_refine", "merge")
POINT_SHARES = (1.0, 0.25, 0.05)
BOX_SETS = ("all", "one per camera", "one", "none")


def boxes_kept(views: list[CameraView], which: str) -> list[CameraView]:
    """The views with all their boxes, the first of each camera's, the first box of the first camera that has one,
    or none."""
    first_camera = next(k for k, v in enumerate(views) if len(v.detections))
    counts = {"all": [len(v.detections) for v in views], "one per camera": [1] * len(views),
              "one": [int(k == first_camera) for k in range(len(views))], "none": [0] * len(views)}[which]
    return [dataclasses.replace(v, detections=v.detections.select(np.arange(min(n, len(v.detections)))))
            for v, n in zip(views, counts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    keep_freed_memory()  # as every host does
    load_start = os.getloadavg()[0]
    frame = synthetic_frame()
    rng = np.random.default_rng(0)
    rows, data = [], []
    for share in POINT_SHARES:
        keep = np.sort(rng.choice(len(frame.points), int(round(share * len(frame.points))), replace=False))
        points = frame.points[keep]
        for which in BOX_SETS:
            views = boxes_kept(frame.views, which)
            best = step_minima(points, views, frame.rig.T_base_lidar, args.calls)
            n_boxes = sum(len(v.detections) for v in views)
            rows.append([len(points), f"{which} ({n_boxes})", f"{best['total']:.1f}",
                         *(f"{best[s]:.1f}" if s in best else "-" for s in STEPS)])
            data.append({"points": len(points), "boxes": which, "n_boxes": n_boxes, "min_ms": best})
            print(rows[-1], flush=True)
    table = format_table(["LiDAR points", "2D boxes", "detect_3d [ms]", *STEPS], rows)
    notes = (f"Process-time minima of {args.calls} calls per case, one thread, one process; 1-minute load average "
             f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores. The "
             "steps are parts of the whole call (a step that does not run, with no box, is '-'). The points are a "
             "random subset of bench algo's sweep (seed 0); the boxes are the frame's perfect 2D boxes.")
    path = write_results(args.out, "detect3d_scaling", "detect_3d's time against the points and the 2D boxes "
                         "(benchmarks/detect3d_scaling.py)", table, {"cases": data, "calls": args.calls}, notes)
    print(table)
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
