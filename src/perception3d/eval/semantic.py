"""Segmentation mIoU over the 16 lidarseg classes, and occupancy IoU (occupied vs free) and mIoU."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.classes import IGNORE_LABEL, LIDARSEG_CLASSES, OCCUPANCY_FREE, OCCUPANCY_UNKNOWN
from .confusion import confusion_matrix, iou_per_class, mean_iou

NUM_SEMANTIC = len(LIDARSEG_CLASSES)  # 17: ignore/free + 16 classes
SEMANTIC_CLASSES = list(range(1, NUM_SEMANTIC))


@dataclass
class SegmentationScore:
    """Accumulates point labels over frames; labels are lidarseg evaluation indices 0..16 (0 = ignore)."""

    confusion: np.ndarray = field(default_factory=lambda: np.zeros((NUM_SEMANTIC, NUM_SEMANTIC), np.int64))

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Count one frame; points whose ground truth is 'ignore' are left out (as the devkit does)."""
        gt = np.asarray(gt)
        self.confusion += confusion_matrix(gt, pred, NUM_SEMANTIC, ignore=gt == IGNORE_LABEL)

    def per_class_iou(self) -> dict[str, float]:
        ious = iou_per_class(self.confusion)
        return {LIDARSEG_CLASSES[c]: float(ious[c]) for c in SEMANTIC_CLASSES}

    def miou(self) -> float:
        """Mean IoU over the classes present in the ground truth."""
        return mean_iou(self.confusion, SEMANTIC_CLASSES)


@dataclass
class OccupancyScore:
    """Accumulates occupancy volumes: labels 0 free, 1..16 classes, 255 unobserved.

    Only voxels observed in the ground truth (label != 255, and inside the `observed` mask when one is given, as
    Occ3D scores with its mask_lidar) are scored. A predicted 255 (the prediction could not observe the voxel)
    counts as 'not occupied'.
    """

    geometry: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), np.int64))
    semantic: np.ndarray = field(default_factory=lambda: np.zeros((NUM_SEMANTIC, NUM_SEMANTIC), np.int64))

    def add(self, gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Count one volume; `mask` (bool, same shape) restricts scoring to the voxels the sensor observed."""
        gt = np.asarray(gt).reshape(-1)
        pred = np.asarray(pred).reshape(-1)
        observed = gt != OCCUPANCY_UNKNOWN
        if mask is not None:
            observed &= np.asarray(mask).reshape(-1)
        gt_occ = (gt != OCCUPANCY_FREE) & observed
        pred_occ = (pred != OCCUPANCY_FREE) & (pred != OCCUPANCY_UNKNOWN)
        self.geometry += confusion_matrix(gt_occ.astype(int), pred_occ.astype(int), 2, ignore=~observed)
        pred_sem = np.where(pred == OCCUPANCY_UNKNOWN, OCCUPANCY_FREE, pred)
        self.semantic += confusion_matrix(gt, pred_sem, NUM_SEMANTIC, ignore=~observed)

    def iou(self) -> float:
        """Geometric IoU of the 'occupied' class on observed voxels."""
        return float(iou_per_class(self.geometry)[1])

    def per_class_iou(self) -> dict[str, float]:
        ious = iou_per_class(self.semantic)
        return {LIDARSEG_CLASSES[c]: float(ious[c]) for c in SEMANTIC_CLASSES}

    def miou(self) -> float:
        return mean_iou(self.semantic, SEMANTIC_CLASSES)
