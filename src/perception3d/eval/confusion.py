"""Confusion matrices and the IoU / mIoU read from them (lidarseg and occupancy scoring)."""
from __future__ import annotations

import numpy as np


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore: np.ndarray | None = None) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    Entries where `ignore` is True, or whose labels fall outside [0, num_classes), are left out.
    """
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth has {gt.size} labels, prediction {pred.size}")
    keep = (gt >= 0) & (gt < num_classes) & (pred >= 0) & (pred < num_classes)
    if ignore is not None:
        keep &= ~np.asarray(ignore).reshape(-1)
    return np.bincount(gt[keep] * num_classes + pred[keep], minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both ground truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    denom = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def mean_iou(confusion: np.ndarray, classes: list[int]) -> float:
    """Mean IoU over the given classes that occur in the ground truth (rows with any count)."""
    ious = iou_per_class(confusion)
    present = [c for c in classes if confusion[c].sum() > 0]
    return float(np.mean(ious[present])) if present else float("nan")
