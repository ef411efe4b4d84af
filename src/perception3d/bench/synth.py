"""Synthetic data generation speed: one 20 s scene (400 LiDAR sweeps, 1440 images, 40 occupancy volumes) end to
end, plus the per-item cost of its three expensive parts. Target: under 3 minutes per 20 s scene."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import format_table, time_call, write_results

SCENE_SECONDS = 20.0
TARGET_S = 180.0


def _dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run(out_dir: Path) -> Path:
    from ..core.voxels import VoxelGrid
    from ..data.lidar import LidarSimulator
    from ..data.occupancy_gt import ground_truth_volume
    from ..data.render import CameraRenderer
    from ..data.synth import SynthConfig, synthesize
    from ..data.world import World

    config = SynthConfig(scenes=1, seconds=SCENE_SECONDS)
    world = World(config.seed, 0, SCENE_SECONDS)
    lidar = LidarSimulator(config.rig.lidar)
    renderer = CameraRenderer(config.rig.cameras["CAM_FRONT"], config.render_scale)
    grid = VoxelGrid.from_range(config.occupancy_range, config.occupancy_voxel)
    rng = np.random.default_rng(0)
    sweep = lidar.sweep(world, 5.0, rng)
    parts = {
        "LiDAR sweep (ray cast + labels)": time_call(lambda: lidar.sweep(world, 5.0, rng), repeat=5),
        "camera image (render + JPEG)": time_call(lambda: renderer.render_jpeg(world, 5.0, rng), repeat=5),
        "occupancy volume (256x256x20)": time_call(
            lambda: ground_truth_volume(world, 5.0, world.ego_pose(5.0), sweep.T_global_sensor, sweep.points[:, :3],
                                     grid), repeat=3),
    }
    load = os.getloadavg()[0]
    totals = {}
    for workers in sorted({1, config.workers}):
        work = Path(tempfile.mkdtemp(prefix="p3d-bench-synth-"))
        try:
            config.workers = workers
            start = time.perf_counter()
            synthesize(work / "root", config, progress=False)
            totals[workers] = time.perf_counter() - start
            size_mb = _dir_size_mb(work / "root")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    rows = [[name, f"{t['median_s'] * 1e3:.1f} ms", f"{t['p95_s'] * 1e3:.1f} ms"] for name, t in parts.items()]
    for workers, total in totals.items():
        rows.append([f"whole {SCENE_SECONDS:g} s scene (400 sweeps, 1440 images, 40 volumes, files), "
                     f"{workers} render worker(s)", f"{total:.1f} s",
                     f"target < {TARGET_S:.0f} s: {'met' if total < TARGET_S else 'NOT met'}"])
    table = format_table(["item", "median", "p95 / note"], rows)
    notes = (f"`perception3d synth --scenes 1 --seconds {SCENE_SECONDS:g}` (seed 0, cameras ray cast at "
             f"{config.render_scale:g} x 1600x900 then upsampled); with 1 worker everything runs in one process, "
             "with more the images are rendered by worker processes while the main process casts the LiDAR, builds "
             f"the occupancy and writes files. Per-item rows are single process. Dataroot size {size_mb:.0f} MB. "
             f"Load average before the runs: {load:.1f} on 2 cores shared with other jobs, so the times are upper "
             "bounds.")
    return write_results(out_dir, "synth", "Synthetic dataroot generation", table,
                         {"parts": parts, "scene_seconds": SCENE_SECONDS,
                          "total_s_by_workers": {str(k): v for k, v in totals.items()}, "size_mb": size_mb,
                          "target_s": TARGET_S}, notes)
