"""nuScenes -> rosbag2 conversion speed on one synthetic 20 s scene (400 sweeps, 1440 images). Target: < 30 s."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from .common import format_table, write_results

SCENE_SECONDS = 20.0
TARGET_S = 30.0


def run(out_dir: Path) -> Path:
    from ..data.convert import convert
    from ..data.simulated_2d import PRESETS
    from ..data.synth import SynthConfig, synthesize

    work = Path(tempfile.mkdtemp(prefix="p3d-bench-convert-"))
    try:
        root = synthesize(work / "root", SynthConfig(scenes=1, seconds=SCENE_SECONDS), progress=False)
        rows, data = [], {}
        load = os.getloadavg()[0]
        for label, model in (("plain", None), ("with --simulate-2d good", PRESETS["good"])):
            out = work / f"bags-{label.split()[0]}"
            start = time.perf_counter()
            (bag,) = convert(root, "v1.0-synth", out, simulate_2d=model, progress=False)
            elapsed = time.perf_counter() - start
            size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
            rows.append([label, f"{elapsed:.1f} s", f"{size_mb:.0f} MB", f"{size_mb / elapsed:.0f} MB/s",
                         "met" if elapsed < TARGET_S else "NOT met"])
            data[label] = {"seconds": elapsed, "bag_mb": size_mb}
            shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = format_table(["conversion", "wall time", "bag size", "throughput", f"target < {TARGET_S:.0f} s"], rows)
    notes = (f"One synthetic {SCENE_SECONDS:g} s scene (seed 0): 400 LIDAR_TOP sweeps, 6 x 240 JPEGs, 40 keyframes; "
             "`perception3d convert` single process, MCAP without compression, output on the local disk (page "
             f"cache). Load average before the runs: {load:.1f} on 2 cores shared with other jobs.")
    return write_results(out_dir, "convert", "nuScenes -> rosbag2 conversion", table,
                         {"target_s": TARGET_S, "scene_seconds": SCENE_SECONDS, **data}, notes)
