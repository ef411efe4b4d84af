"""COCO-style 2D average precision at one IoU threshold (default 0.5), per class.

Matching (as COCO): per image and class, detections in descending score order each take the unmatched ground-truth
box of highest IoU if that IoU >= the threshold (true positive); otherwise, including a second detection of an
already matched box, they are false positives. AP per class: detections of all images ranked by score, precision
made monotone (p(r) = max precision at recall >= r), averaged over the 101 recall points 0, 0.01, ..., 1 (COCO
interpolation); a recall point beyond the highest recall reached counts as precision 0. A class without ground truth
has AP NaN and is left out of the mean. No crowd or ignore regions.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.boxes import iou_2d
from ..core.detections import Detections2D

IOU_THRESHOLD = 0.5
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def match_detections(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
                     iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """True-positive flags (in the given detection order) of one image and class, by greedy COCO matching."""
    tp = np.zeros(len(det_boxes), bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = iou_2d(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for i in np.argsort(-np.asarray(det_scores), kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            taken[j] = True
            tp[i] = True
    return tp


def average_precision(scores: np.ndarray, true_positive: np.ndarray, num_gt: int) -> float:
    """101-point interpolated AP of ranked detections (scores, TP flags) against num_gt ground-truth boxes."""
    if num_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp_cum = np.cumsum(np.asarray(true_positive, bool)[order])
    recall = tp_cum / num_gt
    precision = tp_cum / np.arange(1, len(tp_cum) + 1)
    envelope = np.append(np.maximum.accumulate(precision[::-1])[::-1], 0.0)
    # first rank whose recall reaches each recall point (past the end: precision 0)
    return float(np.mean(envelope[np.searchsorted(recall, RECALL_POINTS, side="left")]))


class AveragePrecision2D:
    """Accumulates images of detections and ground truth; `per_class()` gives AP per class name."""

    def __init__(self, class_names: Sequence[str], iou_threshold: float = IOU_THRESHOLD) -> None:
        self.class_names = tuple(class_names)
        self.iou_threshold = iou_threshold
        self._scores: dict[str, list[np.ndarray]] = {c: [] for c in self.class_names}
        self._tp: dict[str, list[np.ndarray]] = {c: [] for c in self.class_names}
        self._num_gt = dict.fromkeys(self.class_names, 0)

    def add(self, detections: Detections2D, ground_truth: Detections2D) -> None:
        """One image: its detections (scored) and its ground-truth boxes (scores ignored)."""
        for name in self.class_names:
            det = detections.select(detections.class_ids == name)
            gt_boxes = ground_truth.boxes_xyxy[ground_truth.class_ids == name]
            self._num_gt[name] += len(gt_boxes)
            self._scores[name].append(det.scores)
            self._tp[name].append(match_detections(det.boxes_xyxy, det.scores, gt_boxes, self.iou_threshold))

    def per_class(self) -> dict[str, float]:
        """AP per class (NaN where the class has no ground truth)."""
        return {c: average_precision(np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0),
                                     np.concatenate(self._tp[c]) if self._tp[c] else np.zeros(0, bool),
                                     self._num_gt[c]) for c in self.class_names}

    def mean(self, classes: Sequence[str] | None = None) -> float:
        """Mean AP over the given classes (default all) that have ground truth; NaN when none has."""
        ap = self.per_class()
        values = [ap[c] for c in (classes or self.class_names) if not np.isnan(ap[c])]
        return float(np.mean(values)) if values else float("nan")

    @property
    def num_ground_truth(self) -> dict[str, int]:
        return dict(self._num_gt)
