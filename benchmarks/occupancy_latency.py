"""Per-stage latency of the occupancy node, geometric vs learned (onnxruntime, 1 thread), on bench graph's sweeps, for
the latency section of benchmarks/results/occupancy_training.md.

The 40 sweeps of `perception3d bench learned` replayed through the node alone (as there); per stage (pre, infer,
post, and the node's total with decoding, synchronization and messages) the minimum and the median over the sweeps
after the first. On a machine shared with other jobs the minimum is the least load-sensitive figure; to compare two
versions, run this script in both checkouts one after the other, twice, and keep the load beside the figures.
`--cpu-time` reads the node's stage clocks in process CPU time instead (the node runs one compute thread): on a
machine other jobs load beyond its cores, that is the figure that still compares two versions.

A third row runs the learned node with its network's outputs replayed: onnxruntime computes them on the first
sweep of the replay and returns them for every later one (bench graph's bag repeats one sweep, so they are that
sweep's outputs); the row is the learned node's cost without its network, the floor any network adds to.

Then, where the learned node's time goes: each step of its input and output work, and the network, timed alone
(minimum of 30 calls) on the inputs of the replay's last sweep (the arguments the node passed to
`occfusion_inputs.network_inputs`, kept by a wrapper during the replay).

    .venv/bin/python benchmarks/occupancy_latency.py [--cpu-time] [--checkpoint CHECKPOINT]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import onnxruntime

from perception3d.bench.graph import write_frame_bag
from perception3d.bench.learned import LIDAR_NODES
from perception3d.core.box_points import detection_maps
from perception3d.core.models import occfusion_inputs
from perception3d.core.models.bev import bev_input
from perception3d.core.models.occfusion_export import export_occupancy
from perception3d.core.models.options import RunnerOptions
from perception3d.core.models.runner import onnx_session
from perception3d.core.occupancy import free_voxels, occupied_voxels, presample_voxels
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


@contextlib.contextmanager
def network_outputs_replayed():
    """onnxruntime sessions return, for every run, the outputs of their first run with as many observed voxels (the
    node's warm-up runs on an empty sweep: it gets its own)."""
    run = onnxruntime.InferenceSession.run
    first = {}

    def replayed(session, output_names, feed, *args, **kwargs):
        key = (id(session), len(feed.get("observed_index", ())))
        if key not in first:
            first[key] = run(session, output_names, feed, *args, **kwargs)
        return first[key]

    onnxruntime.InferenceSession.run = replayed
    try:
        yield
    finally:
        onnxruntime.InferenceSession.run = run


def step_latency(args: tuple, onnx_file: str) -> dict[str, float]:
    """{step: min ms} of the learned node's steps on one sweep's network_inputs arguments."""
    points, intensity, origin, cameras, grid, presample_points, use_cameras, statistics = args
    coarse = occfusion_inputs.coarse_grid(grid)
    binned = grid.voxel_indices(points)
    inputs, observed = occfusion_inputs.network_inputs(*args)
    lidar = occfusion_inputs.lidar_inputs(points, intensity, origin, grid, statistics, binned)
    holding = lidar.shares(grid)[0] > 0  # the coarse voxels holding returns, as network_inputs passes them on
    session = onnx_session(Path(onnx_file), RunnerOptions(device="cpu", threads=1))
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    label, score, fine_index, fine_label, fine_score = session.run(None, feed)
    fine_index, observed_index = fine_index.astype(np.int64), inputs["observed_index"]
    volume = occfusion_inputs.fine_volume(observed_index, label, fine_index, fine_label, observed, grid)
    occupied = occupied_voxels(volume)
    steps = {
        "inputs, all (network_inputs)": lambda: occfusion_inputs.network_inputs(*args),
        "  ray casting (free_voxels; the geometric node's too)": lambda: free_voxels(points, grid, origin, 0.2),
        "  voxel indices of the sweep": lambda: grid.voxel_indices(points),
        "  LiDAR inputs (lidar_inputs, ray casting included)":
            lambda: occfusion_inputs.lidar_inputs(points, intensity, origin, grid, statistics, binned),
        "    of which BEV statistics (bev_input)":  # only when the model reads them
            (lambda: bev_input(points, intensity / 255, occfusion_inputs.bev_grid(grid))) if statistics else None,
        "  fused voxels and camera evidence (fused_voxels)": lambda: occfusion_inputs.fused_voxels(
            points, cameras, grid, presample_points, use_cameras, 0, binned, holding),
        "    of which pre-sampling (presample_voxels)":  # only when the model pre-samples
            (lambda: presample_voxels(points, coarse, presample_points)) if presample_points else None,
        "    of which detection maps": lambda: detection_maps(cameras),
        "  observed rows (observed_rows)": lambda: occfusion_inputs.observed_rows(
            lidar, grid, inputs["fused_index"], inputs["lidar_parents"]),
        "network (onnxruntime, 1 thread)": lambda: session.run(None, feed),
        "fine volume": lambda: occfusion_inputs.fine_volume(observed_index, label, fine_index, fine_label, observed,
                                                            grid),
        "occupied voxels (the geometric node's too)": lambda: occupied_voxels(volume),
        "voxel scores (of the occupied, as the node asks)": lambda: occfusion_inputs.voxel_scores(
            occupied, observed_index, score, fine_index[fine_label > 0], fine_score[fine_label > 0], grid),
    }
    return {name: 1e3 * min(timeit.repeat(fn, number=1, repeat=30)) for name, fn in steps.items() if fn is not None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-time", action="store_true", help="stage times in process CPU time, not wall time")
    parser.add_argument("--checkpoint", type=Path, help="the occupancy checkpoint (default: the shipped one)")
    options = parser.parse_args()
    if options.cpu_time:
        time.perf_counter = time.process_time  # the clock of the node's StageTimer and of its runner's total
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames_bag = work / "frames"
        write_frame_bag(frames_bag)
        onnx_file = str(LIDAR_NODES["occupancy"](work) if options.checkpoint is None else
                        export_occupancy(options.checkpoint, work / "occupancy.onnx"))
        learned = {"mode": "learned", "backend": "onnx", "device": "cpu", "model_path": onnx_file, "threads": 1}
        variants = {"geometric": ({"mode": "geometric"}, contextlib.nullcontext),
                    "learned, onnxruntime CPU, 1 thread": (learned, contextlib.nullcontext),
                    "learned, network outputs replayed": (learned, network_outputs_replayed)}
        captured = []
        network_inputs = occfusion_inputs.network_inputs
        occfusion_inputs.network_inputs = lambda *args: captured.append(args) or network_inputs(*args)
        try:
            for variant, (overrides, network) in variants.items():
                with network():
                    stats = stage_latency(frames_bag, work, overrides)
                cells = "  ".join(f"{stage} {low:6.1f} / {median:6.1f}" for stage, (low, median) in stats.items())
                print(f"{variant:36s} min / median ms: {cells}  (1-minute load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            occfusion_inputs.network_inputs = network_inputs
        print("learned node, step by step on the last sweep (min of 30 calls):")
        for step, ms in step_latency(captured[-1], onnx_file).items():
            print(f"  {step:56s} {ms:6.2f} ms")
        print(f"(1-minute load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
