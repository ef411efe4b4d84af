"""Quality of the geometric graph per simulated 2D preset on a fixed synthetic validation split.

The split: one 20 s synthetic scene, seed 7 (`perception3d synth --scenes 1 --seconds 20 --seed 7`; a one-scene
dataroot's `synth_val`), converted with each 2D preset and scored by `perception3d eval` (nuscenes-devkit for
detection). The README's score table comes from here.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..pipeline import LEARNED_2D, run_preset, synthetic_dataroot
from .common import format_table, write_results

PRESETS = ("perfect", "good", "poor", LEARNED_2D)
SCENE_SECONDS = 20.0
SEED = 7


def run(out_dir: Path) -> Path:
    rows, data = [], {}
    with tempfile.TemporaryDirectory(prefix="p3d-bench-scores-") as tmp:
        work = Path(tmp)
        root = synthetic_dataroot(work / "root", 1, SCENE_SECONDS, SEED, progress=False)
        for preset in PRESETS:
            report = run_preset(root, "v1.0-synth", "synth_val", preset, work, progress=False).report
            det, seg, occ = report.detection, report.segmentation, report.occupancy
            figures = {
                "car AP@2m": det.class_ap_2m["car"], "car ATE [m]": det.class_tp_errors["car"]["trans_err"],
                "pedestrian AP": det.class_ap["pedestrian"], "mAP (present)": det.map_present,
                "NDS (present)": det.nds_present, "seg car IoU": seg.per_class_iou()["car"],
                "seg mIoU": seg.miou(), "occ IoU": occ.iou(), "occ mIoU": occ.miou(),
            }
            rows.append([preset] + [f"{v:.3f}" for v in figures.values()])
            data[preset] = {"figures": figures, "report": report.to_json()}
            keys = list(figures)
    table = format_table(["2D boxes from", *keys], rows)
    notes = (f"Split: one {SCENE_SECONDS:.0f} s synthetic scene (seed {SEED}), {report.keyframes} keyframes. "
             "AP is the devkit's mean over the 0.5/1/2/4 m thresholds unless marked @2m; mAP and NDS are over the "
             "detection classes present in the ground truth (the devkit's own all-10-class figures are in the "
             "JSON). Segmentation: lidarseg classes, geometric mode labels objects and road only (stuff classes "
             "score 0). Occupancy: on the voxels the keyframe sweep observed (Occ3D mask_lidar). The 2D boxes are "
             "the simulated detector's presets (README, Data), or, in the `detector2d` row, the graph's own learned "
             "detector (the shipped checkpoint, trained on other synthetic scenes) running in the replay.")
    return write_results(out_dir, "scores", "Geometric graph quality per 2D preset (perception3d bench scores)",
                         table, data, notes)
