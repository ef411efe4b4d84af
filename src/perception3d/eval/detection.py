"""Detection scoring with nuscenes-devkit's own DetectionEval (detection_cvpr_2019 config).

The devkit averages over all 10 classes, so a dataset without, say, trailers scores AP 0 there; we therefore also
report mAP and NDS over the classes present in the ground truth, beside the devkit's own figures.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.boxes import lwh_to_wlh
from ..core.classes import DETECTION_CLASSES
from ..core.detections import Detections3D
from ..core.geometry import quat_xyzw_to_wxyz, yaw_to_quat_xyzw
from .keyframes import split_keyframes

TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
MAX_BOXES_PER_SAMPLE = 500  # devkit limit


def devkit_results(predictions: dict[str, Detections3D], sample_tokens: list[str]) -> dict:
    """The devkit results JSON for boxes in the global (map) frame, one entry per sample of the split.

    Classes outside the 10 detection classes are dropped; unknown velocities are written as (0, 0) (the devkit
    has no 'unknown'; AVE then measures the error of a zero-velocity guess) and unknown attributes as '' (scored
    as wrong by AAE); each sample keeps its 500 best boxes.
    """
    results = {}
    for token in sample_tokens:
        dets = predictions.get(token, Detections3D.empty("map"))
        if dets.frame_id not in ("map", ""):
            raise ValueError(f"sample {token}: boxes are in {dets.frame_id!r}; transform them to 'map' first")
        keep = np.array([c in DETECTION_CLASSES for c in dets.class_ids], dtype=bool)
        order = np.argsort(-dets.scores[keep], kind="stable")[:MAX_BOXES_PER_SAMPLE]
        chosen = dets.select(np.nonzero(keep)[0][order])
        sizes_wlh = lwh_to_wlh(chosen.sizes_lwh)
        quats = quat_xyzw_to_wxyz(yaw_to_quat_xyzw(chosen.yaws))
        vel = np.nan_to_num(chosen.velocities, nan=0.0)
        results[token] = [
            {"sample_token": token, "translation": chosen.centers[i].tolist(),
             "size": np.maximum(sizes_wlh[i], 1e-3).tolist(), "rotation": quats[i].tolist(),
             "velocity": vel[i].tolist(), "detection_name": str(chosen.class_ids[i]),
             "detection_score": float(np.clip(chosen.scores[i], 0.0, 1.0)),
             "attribute_name": str(chosen.attributes[i])}
            for i in range(len(chosen))]
    return {"meta": {"use_camera": True, "use_lidar": True, "use_radar": False, "use_map": False,
                     "use_external": False}, "results": results}


@dataclass
class DetectionReport:
    """Per-class AP (mean over the 0.5/1/2/4 m thresholds) and TP errors, and summary figures."""

    class_ap: dict[str, float]
    class_ap_2m: dict[str, float]
    class_tp_errors: dict[str, dict[str, float]]
    present_classes: list[str]
    map_present: float
    nds_present: float
    map_devkit: float
    nds_devkit: float

    def table(self) -> str:
        """Markdown table of the classes present in the ground truth."""
        lines = ["| class | AP | AP@2m | ATE [m] | ASE | AOE [rad] | AVE [m/s] | AAE |",
                 "|---|---|---|---|---|---|---|---|"]
        for name in self.present_classes:
            tp = self.class_tp_errors[name]
            cells = [f"{tp[m]:.3f}" if not math.isnan(tp[m]) else "n/a" for m in TP_METRICS]
            lines.append(f"| {name} | {self.class_ap[name]:.3f} | {self.class_ap_2m[name]:.3f} | " + " | ".join(cells)
                         + " |")
        lines.append(f"\nmAP {self.map_present:.3f}, NDS {self.nds_present:.3f} over the classes present "
                     f"({len(self.present_classes)}); devkit over all 10 classes: mAP {self.map_devkit:.3f}, "
                     f"NDS {self.nds_devkit:.3f}.")
        return "\n".join(lines)


def evaluate_detection(nusc, predictions: dict[str, Detections3D], eval_set: str, output_dir: Path,
                       verbose: bool = False, min_distance_m: float = 0.0) -> DetectionReport:
    """Score global-frame predictions per sample token on a split with nuscenes-devkit's DetectionEval.

    min_distance_m: score only the ground truth and predictions at least this far from the ego vehicle (the devkit's
    ego_dist, in the x-y plane [m]) after its own class-range filter: AP of far objects (0: the devkit's score)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokens = [keyframe.sample_token for keyframe in split_keyframes(nusc, eval_set)]
    results_path = output_dir / "results_nusc.json"
    results_path.write_text(json.dumps(devkit_results(predictions, tokens)))
    evaluator = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(results_path), eval_set=eval_set,
                              output_dir=str(output_dir), verbose=verbose)
    if min_distance_m > 0:
        for boxes in (evaluator.gt_boxes, evaluator.pred_boxes):
            for token in boxes.sample_tokens:
                boxes.boxes[token] = [b for b in boxes.boxes[token] if b.ego_dist >= min_distance_m]
    metrics, _ = evaluator.evaluate()
    present = sorted({b.detection_name for b in evaluator.gt_boxes.all}, key=DETECTION_CLASSES.index)
    class_ap = {c: float(v) for c, v in metrics.mean_dist_aps.items()}
    class_ap_2m = {c: float(metrics.get_label_ap(c, 2.0)) for c in DETECTION_CLASSES}
    tp_errors = {c: {m: float(metrics.get_label_tp(c, m)) for m in TP_METRICS} for c in DETECTION_CLASSES}
    map_present = float(np.mean([class_ap[c] for c in present])) if present else float("nan")
    tp_means = [np.nanmean([tp_errors[c][m] for c in present]) if present else np.nan for m in TP_METRICS]
    tp_score = sum(max(0.0, 1.0 - float(v)) for v in tp_means if not math.isnan(v))
    nds_present = (5 * map_present + tp_score) / 10
    return DetectionReport(class_ap, class_ap_2m, tp_errors, present, map_present, nds_present,
                           float(metrics.mean_ap), float(metrics.nd_score))

