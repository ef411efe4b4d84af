"""`perception3d eval`: score a replay's outputs against a nuScenes dataroot's ground truth.

Detection goes through nuscenes-devkit's DetectionEval (boxes moved to the global frame with each keyframe's ego
pose; velocities and attributes from the detection3d node's motion topic, matched by detection id, where it has
them); segmentation is mIoU over the 16 lidarseg classes on the keyframe sweeps; occupancy is the geometric IoU
and semantic mIoU on the voxels the ground truth observed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.classes import FINE_TO_COARSE
from ..core.detections import Detections3D
from ..errors import DatasetError
from ..msgs.detections import msg_to_detections3d
from ..msgs.markers import with_motion
from ..msgs.occupancy import occupancy_msg_to_volume
from ..msgs.pointcloud import pointcloud2_to_array
from ..msgs.topics import OBJECT_MOTION_TOPIC, OBJECTS_TOPIC, OCCUPANCY_GRID_TOPIC, SEGMENTATION_TOPIC
from .detection import DetectionReport, evaluate_detection
from .keyframes import Keyframe, outputs_at_stamps, split_keyframes
from .semantic import OccupancyScore, SegmentationScore

TASK_TOPICS = {"det": OBJECTS_TOPIC, "seg": SEGMENTATION_TOPIC, "occ": OCCUPANCY_GRID_TOPIC}


@dataclass
class EvalReport:
    """Scores per task and how many keyframes had an output."""

    split: str
    keyframes: int
    coverage: dict[str, int] = field(default_factory=dict)
    detection: DetectionReport | None = None
    segmentation: SegmentationScore | None = None
    occupancy: OccupancyScore | None = None

    def markdown(self) -> str:
        lines = [f"Split `{self.split}`: {self.keyframes} keyframes."]
        for task, n in self.coverage.items():
            lines.append(f"- {task}: outputs for {n} of {self.keyframes} keyframes")
        if self.detection is not None:
            lines += ["", "### Detection (nuscenes-devkit DetectionEval, detection_cvpr_2019)", "",
                      self.detection.table()]
        if self.segmentation is not None:
            lines += ["", "### Segmentation (IoU per lidarseg class, classes present in the ground truth)", "",
                      _iou_table(self.segmentation.per_class_iou(), self.segmentation.confusion),
                      f"\nmIoU {self.segmentation.miou():.3f}"]
        if self.occupancy is not None:
            lines += ["", "### Occupancy (voxels the keyframe sweep observed, as Occ3D's mask_lidar)", "",
                      f"IoU (occupied vs free) {self.occupancy.iou():.3f}, semantic mIoU {self.occupancy.miou():.3f}",
                      "", _iou_table(self.occupancy.per_class_iou(), self.occupancy.semantic)]
        return "\n".join(lines)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"split": self.split, "keyframes": self.keyframes, "coverage": self.coverage}
        if self.detection is not None:
            out["detection"] = {"class_ap": self.detection.class_ap, "class_ap_2m": self.detection.class_ap_2m,
                                "tp_errors": self.detection.class_tp_errors,
                                "present_classes": self.detection.present_classes,
                                "map_present": self.detection.map_present, "nds_present": self.detection.nds_present,
                                "map_devkit": self.detection.map_devkit, "nds_devkit": self.detection.nds_devkit}
        if self.segmentation is not None:
            out["segmentation"] = {"miou": self.segmentation.miou(), "iou": self.segmentation.per_class_iou()}
        if self.occupancy is not None:
            out["occupancy"] = {"iou": self.occupancy.iou(), "miou": self.occupancy.miou(),
                                "class_iou": self.occupancy.per_class_iou()}
        return json.loads(json.dumps(out, default=float).replace("NaN", "null"))


def _iou_table(ious: dict[str, float], confusion: np.ndarray) -> str:
    rows = ["| class | IoU | ground-truth count |", "|---|---|---|"]
    for index, (name, iou) in enumerate(ious.items(), start=1):
        count = int(confusion[index].sum())
        if count:
            rows.append(f"| {name} | {'n/a' if math.isnan(iou) else f'{iou:.3f}'} | {count:,} |")
    return "\n".join(rows)


def evaluate(nusc: Any, bags: list[str | Path], split: str, tasks: list[str], output_dir: Path) -> EvalReport:
    """Score the outputs of `bags` (replays of the split's scenes) on `tasks` ('det', 'seg', 'occ').

    Raises:
        DatasetError: the split has no keyframes, or none of the split's keyframes has an output of a task.
    """
    from ..data.nuscenes_io import read_lidarseg
    from ..data.occupancy_gt import load_occupancy, occupancy_relpath

    keyframes = split_keyframes(nusc, split)
    if not keyframes:
        raise DatasetError(f"split {split!r} has no keyframes in {nusc.dataroot}")
    by_stamp = {k.stamp_ns: k for k in keyframes}
    topics = [TASK_TOPICS[t] for t in tasks] + ([OBJECT_MOTION_TOPIC] if "det" in tasks else [])
    outputs = outputs_at_stamps(bags, topics, set(by_stamp))
    report = EvalReport(split, len(keyframes))
    for task in tasks:
        report.coverage[task] = len(outputs[TASK_TOPICS[task]])
        if report.coverage[task] == 0:
            raise DatasetError(f"no {TASK_TOPICS[task]} message in {[str(b) for b in bags]} is stamped with a "
                               f"keyframe of split {split!r}; were the right bags replayed with the {task} node?")
    if "det" in tasks:
        report.detection = evaluate_detection(
            nusc, _global_detections(nusc, outputs[OBJECTS_TOPIC], by_stamp, outputs.get(OBJECT_MOTION_TOPIC, {})),
            split, output_dir / "detection")
    if "seg" in tasks:
        report.segmentation = SegmentationScore()
        for stamp, msg in outputs[SEGMENTATION_TOPIC].items():
            pred = pointcloud2_to_array(msg, SEGMENTATION_TOPIC)["label"]
            fine = read_lidarseg(nusc, by_stamp[stamp].lidar_token, len(pred))
            report.segmentation.add(FINE_TO_COARSE[fine], pred)
    if "occ" in tasks:
        report.occupancy = OccupancyScore()
        for stamp, msg in outputs[OCCUPANCY_GRID_TOPIC].items():
            pred, grid, _, frame = occupancy_msg_to_volume(msg, OCCUPANCY_GRID_TOPIC)
            gt, gt_grid, meta = load_occupancy(Path(nusc.dataroot) / occupancy_relpath(nusc.version,
                                                                                       by_stamp[stamp].lidar_token))
            if not grid.matches(gt_grid) or frame != meta["frame"]:
                raise DatasetError(f"{OCCUPANCY_GRID_TOPIC}: grid {grid} in {frame!r} differs from the ground truth's "
                                   f"{gt_grid} in {meta['frame']!r}; set the occupancy node's grid.* to match")
            report.occupancy.add(gt, pred, meta["observed"])
    return report


def _global_detections(nusc: Any, messages: dict[int, Any], by_stamp: dict[int, Keyframe],
                       motion: dict[int, Any]) -> dict[str, Detections3D]:
    """Per sample token, the keyframe's detections moved from base_link to the global (map) frame, with the
    velocities and attributes of the same stamp's motion message (by detection id) where there is one."""
    from ..data.nuscenes_io import ego_pose

    out = {}
    for stamp, msg in messages.items():
        dets = msg_to_detections3d(msg, OBJECTS_TOPIC)
        if dets.frame_id != "base_link":
            raise DatasetError(f"{OBJECTS_TOPIC}: boxes in {dets.frame_id!r}; scoring expects base_link")
        if stamp in motion:
            dets = with_motion(dets, motion[stamp])
        key = by_stamp[stamp]
        T_global_ego = ego_pose(nusc, nusc.get("sample_data", key.lidar_token))
        out[key.sample_token] = dets.transformed(T_global_ego, "map")
    return out
