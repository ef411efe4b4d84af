"""Per-stage latency of the occupancy node, geometric vs learned (onnxruntime, 1 thread), on bench graph's sweeps, for
the latency section of benchmarks/results/occupancy_training.md.

The 40 sweeps of `perception3d bench learned` replayed through the node alone (as there); per stage (pre, infer,
post, and the node's total with decoding, synchronization and messages) the minimum and the median over the sweeps
after the first. On a machine shared with other jobs the minimum is the least load-sensitive figure; to compare two
versions, run this script in both checkouts one after the other, twice, and keep the load beside the figures.
`--cpu-time` reads the node's stage clocks in process CPU time instead (the node runs one compute thread): on a
machine other jobs load beyond its cores, that is the figure that still compares two versions.

    .venv/bin/python benchmarks/occupancy_latency.py [--cpu-time]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from perception3d.bench.graph import write_frame_bag
from perception3d.bench.learned import LIDAR_NODES
from perception3d.nodes.params import parameter_file
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH

STAGES = ("pre", "infer", "post", "total")


def stage_latency(frames_bag: Path, work: Path, overrides: dict) -> dict[str, tuple[float, float]]:
    """{stage: (min, median) ms} of the occupancy node over the bag's sweeps but the first."""
    config = work / f"occupancy_{len(list(work.glob('*.yaml')))}.yaml"
    config.write_text(parameter_file({"occupancy": overrides}))
    summary = replay(frames_bag, work / config.stem, FULL_GRAPH.select(("occupancy",)), config=config, progress=False)
    (runner,) = summary.runners
    out = {}
    for stage in STAGES:
        values = np.array(list(runner.stats.timings_ms[stage])[1:])
        out[stage] = (float(values.min()), float(np.median(values)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-time", action="store_true", help="stage times in process CPU time, not wall time")
    if parser.parse_args().cpu_time:
        time.perf_counter = time.process_time  # the clock of the node's StageTimer and of its runner's total
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames_bag = work / "frames"
        write_frame_bag(frames_bag)
        onnx_file = str(LIDAR_NODES["occupancy"](work))
        variants = {"geometric": {"mode": "geometric"},
                    "learned, onnxruntime CPU, 1 thread": {"mode": "learned", "backend": "onnx", "device": "cpu",
                                                           "model_path": onnx_file, "threads": 1}}
        for variant, overrides in variants.items():
            stats = stage_latency(frames_bag, work, overrides)
            cells = "  ".join(f"{stage} {low:6.1f} / {median:6.1f}" for stage, (low, median) in stats.items())
            print(f"{variant:36s} min / median ms: {cells}  (1-minute load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
