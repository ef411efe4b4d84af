"""The geometric graph on world v1 and on world v2 (issue 16, acceptance 1), in one run: per-class detection AP,
car ATE and segmentation / occupancy figures with the `perfect` and `good` simulated 2D presets.

World v1 is bench scores' split (one 20 s scene, seed 7); world v2 (`perception3d synth --world-version 2`) is a
seed no world was built from before, 8: touching barrier rows, cone lines, cars bumper to bumper, pedestrian
groups, roadside clutter, a non-planar road with kerbs, composite shapes, visibility from the rendered depth.
Both are synthesized, converted with each preset and scored by `perception3d eval` (nuscenes-devkit) here, back to
back; the tables go to benchmarks/results/world_v2_scores.md (and .json).

    nice .venv/bin/python benchmarks/world_v2_scores.py [--out benchmarks/results] [--seconds 20]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from perception3d.bench.common import format_table, write_results
from perception3d.core.classes import DETECTION_CLASSES
from perception3d.data.synth import SynthConfig, synthesize
from perception3d.pipeline import run_preset

WORLDS = {"world v1, seed 7": (1, 7), "world v2, seed 8": (2, 8)}
PRESETS = ("perfect", "good")
SPLIT = "synth_val"  # the one scene of each world


def world_root(folder: Path, version: int, seed: int, seconds: float, rendered_visibility: bool | None = None) -> Path:
    """The dataroot of one world (one scene of `seconds`), synthesized into folder (rendered_visibility: as
    SynthConfig's)."""
    return synthesize(folder / f"root_v{version}", SynthConfig(scenes=1, seconds=seconds, seed=seed,
                                                               world_version=version,
                                                               rendered_visibility=rendered_visibility),
                      progress=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    load_start, started = os.getloadavg()[0], time.strftime("%H:%M UTC", time.gmtime())
    rows, ap_rows, data = [], [], {}
    with tempfile.TemporaryDirectory(prefix="p3d-world-v2-") as tmp:
        for world, (version, seed) in WORLDS.items():
            root = world_root(Path(tmp), version, seed, args.seconds)
            for preset in PRESETS:
                report = run_preset(root, "v1.0-synth", SPLIT, preset, Path(tmp) / f"work_v{version}",
                                    progress=False).report
                det = report.detection
                name = f"{world}, {preset} 2D"
                figures = {"car AP": det.class_ap["car"], "car ATE [m]": det.class_tp_errors["car"]["trans_err"],
                           "pedestrian AP": det.class_ap["pedestrian"], "barrier AP": det.class_ap["barrier"],
                           "mAP (present)": det.map_present, "NDS (present)": det.nds_present,
                           "seg mIoU": report.segmentation.miou(), "occ IoU": report.occupancy.iou(),
                           "occ mIoU": report.occupancy.miou()}
                rows.append([name] + [f"{v:.3f}" for v in figures.values()])
                ap_rows.append([name] + [f"{det.class_ap[c]:.3f}" for c in DETECTION_CLASSES])
                data[name] = {"figures": figures, "class_ap": dict(det.class_ap)}
                print(name, {k: round(v, 3) for k, v in figures.items()}, flush=True)
    table = format_table(["graph", *figures], rows) + "\n\nDetection AP per class (devkit, mean over the " \
        "0.5/1/2/4 m thresholds):\n\n" + format_table(["graph", *DETECTION_CLASSES], ap_rows)
    notes = (f"Run {started} to {time.strftime('%H:%M UTC', time.gmtime())}; 1-minute load average {load_start:.1f} "
             f"at the start and {os.getloadavg()[0]:.1f} at the end (scores do not depend on it). One "
             f"{args.seconds:.0f} s scene per world, the geometric graph (detection3d, segmentation, occupancy) with "
             "default parameters.")
    path = write_results(args.out, "world_v2_scores", "Geometric graph on world v1 and world v2 (issue 16)", table,
                         data, notes)
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
