"""Quality of the graph per simulated 2D preset on a fixed synthetic validation split, geometric and learned modes.

The split: one 20 s synthetic scene, seed 7 (`perception3d synth --scenes 1 --seconds 20 --seed 7`; a one-scene
dataroot's `synth_val`; no shipped checkpoint was trained on this world seed), converted with each 2D preset and
scored by `perception3d eval` (nuscenes-devkit for detection). LEARNED_ROWS replay the same converted scene with
nodes switched to their learned mode (shipped checkpoints). The README's score tables come from here.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..core.classes import DETECTION_CLASSES, LIDARSEG_CLASSES
from ..core.models.shipped import SHIPPED_SEGMENTATION_BOX_PRIOR
from ..eval.semantic import SEMANTIC_CLASSES
from ..nodes.params import parameter_file
from ..pipeline import LEARNED_2D, run_preset, synthetic_dataroot
from .common import format_table, write_results

PRESETS = ("perfect", "good", "poor", LEARNED_2D)
SCENE_SECONDS = 20.0
SEED = 7
# row -> (2D preset, {node: parameters of its section}): the graph with learned modes, beside the geometric rows
LEARNED_ROWS: dict[str, tuple[str, dict[str, dict[str, str]]]] = {
    "good + learned segmentation": ("good", {"segmentation": {"mode": "learned"}}),
    "good + learned segmentation with box prior": ("good", {"segmentation": {
        "mode": "learned", "model_path": str(SHIPPED_SEGMENTATION_BOX_PRIOR)}}),
    "good + learned occupancy": ("good", {"occupancy": {"mode": "learned"}}),
    "good + learned detection3d": ("good", {"detection3d": {"mode": "learned"}}),
    "poor + learned detection3d": ("poor", {"detection3d": {"mode": "learned"}}),
    "detector2d + learned detection3d": (LEARNED_2D, {"detection3d": {"mode": "learned"}}),
}


def run(out_dir: Path) -> Path:
    rows, seg_rows, ap_rows, data = [], [], [], {}
    with tempfile.TemporaryDirectory(prefix="p3d-bench-scores-") as tmp:
        work = Path(tmp)
        root = synthetic_dataroot(work / "root", 1, SCENE_SECONDS, SEED, progress=False)
        runs = [(preset, preset, None) for preset in PRESETS]
        for i, (row, (preset, nodes)) in enumerate(LEARNED_ROWS.items()):
            config = work / f"row{i}.yaml"
            config.write_text(parameter_file(nodes))
            runs.append((row, preset, config))
        for i, (preset_row, preset, config) in enumerate(runs):
            row_work = work if config is None else work / f"row{i}"
            report = run_preset(root, "v1.0-synth", "synth_val", preset, row_work, config=config,
                                progress=False).report
            det, seg, occ = report.detection, report.segmentation, report.occupancy
            present = det.present_classes
            figures = {
                "car AP@2m": det.class_ap_2m["car"], "car ATE [m]": det.class_tp_errors["car"]["trans_err"],
                "pedestrian AP": det.class_ap["pedestrian"], "mAP (present)": det.map_present,
                "NDS (present)": det.nds_present,
                "mAVE": float(np.nanmean([det.class_tp_errors[c]["vel_err"] for c in present])),
                "mAAE": float(np.nanmean([det.class_tp_errors[c]["attr_err"] for c in present])),
                "seg car IoU": seg.per_class_iou()["car"],
                "seg mIoU": seg.miou(), "occ IoU": occ.iou(), "occ mIoU": occ.miou(),
            }
            rows.append([preset_row] + [f"{v:.3f}" for v in figures.values()])
            data[preset_row] = {"figures": figures, "report": report.to_json()}
            keys = list(figures)
            ap_rows.append([preset_row] + [f"{det.class_ap[c]:.3f}" for c in DETECTION_CLASSES])
            seg_rows.append([preset_row] + [f"{seg.per_class_iou()[LIDARSEG_CLASSES[c]]:.3f}" for c in SEMANTIC_CLASSES]
                            + [f"{seg.miou():.3f}"])
    table = format_table(["2D boxes from", *keys], rows)
    seg_table = format_table(["graph", *(LIDARSEG_CLASSES[c] for c in SEMANTIC_CLASSES), "mIoU"], seg_rows)
    ap_table = format_table(["graph", *DETECTION_CLASSES], ap_rows)
    notes = (f"Split: one {SCENE_SECONDS:.0f} s synthetic scene (seed {SEED}), {report.keyframes} keyframes. "
             "AP is the devkit's mean over the 0.5/1/2/4 m thresholds unless marked @2m; mAP and NDS are over the "
             "detection classes present in the ground truth (the devkit's own all-10-class figures are in the "
             "JSON). Segmentation: lidarseg classes, geometric mode labels objects and road only (stuff classes "
             "score 0). Occupancy: on the voxels the keyframe sweep observed (Occ3D mask_lidar). The 2D boxes are "
             "the simulated detector's presets (README, Data), or, in the `detector2d` row, the graph's own learned "
             "detector (the shipped checkpoint, trained on other synthetic scenes) running in the replay. Rows named "
             "'+ learned ...' run those nodes in learned mode with their shipped checkpoints (trained on other world "
             "seeds), the rest of the graph geometric.\n\n"
             "Detection AP per class (devkit, mean over the 0.5/1/2/4 m thresholds):\n\n" + ap_table
             + "\n\nSegmentation IoU per lidarseg class:\n\n" + seg_table)
    return write_results(out_dir, "scores", "Graph quality per 2D preset and mode (perception3d bench scores)",
                         table, data, notes)
