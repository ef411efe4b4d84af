"""Decoding CenterNet head outputs into per-camera Detections2D (numpy; shared by the torch and ONNX backends).

Inputs are the heads of the ONNX contract (core.models.onnx_backend): heatmap probabilities (N, C, h, w), box
size (N, 2, h, w) as (width, height) in network-input pixels, centre offset (N, 2, h, w) as (x, y) in grid cells.
The grid stride is input_height / h. A peak is a cell that equals the maximum of its 3x3 neighbourhood; the top-k
peaks over all classes at or above the score threshold become boxes centred at (cell + offset) * stride, mapped back
to full-resolution pixels by dividing by the letterbox scale, clipped to the image, then per-class NMS.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..boxes import iou_2d
from ..detections import Detections2D


@dataclass(frozen=True)
class DecodeParams:
    """Detection post-processing.

    Attributes:
        score_threshold: minimum heatmap probability of a detection.
        top_k: peaks kept per image before NMS.
        nms_iou: IoU above which a lower-scored box of the same class is suppressed.
    """

    score_threshold: float = 0.3
    top_k: int = 100
    nms_iou: float = 0.6


DEFAULT_DECODE = DecodeParams()


def heatmap_peaks(heatmap: np.ndarray) -> np.ndarray:
    """Boolean mask of cells equal to the maximum of their 3x3 neighbourhood, per channel; heatmap (..., h, w)."""
    padded = np.pad(heatmap, [(0, 0)] * (heatmap.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    h, w = heatmap.shape[-2:]
    pooled = heatmap.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(pooled, padded[..., dy:dy + h, dx:dx + w], out=pooled)
    return heatmap >= pooled


def top_peaks(heatmap: np.ndarray, threshold: float, top_k: int) -> np.ndarray:
    """Flat indices into one image's heatmap (C, h, w) of its top_k peaks (`heatmap_peaks`) scoring at least
    threshold, highest score first (equal scores: lower index first).

    Only the cells at or above the threshold are tested, against their 3x3 neighbours (indices clipped at the
    border: a clipped neighbour is the cell itself or another cell of its neighbourhood). With the default
    threshold a few hundred of the shipped model's ~180,000 cells per image qualify: a fifth of the time of
    filtering the whole heatmap. Where more than a ninth of the cells qualify, the whole heatmap is filtered."""
    c, h, w = heatmap.shape
    flat = heatmap.reshape(-1)
    cells = np.flatnonzero(flat >= threshold)
    if 9 * len(cells) > flat.size:
        cells = cells[heatmap_peaks(heatmap).reshape(-1)[cells]]
    else:
        cell_class, cell = np.divmod(cells, h * w)
        ys, xs = np.divmod(cell, w)
        values = flat[cells]
        is_peak = np.ones(len(cells), dtype=bool)
        for dy in (-1, 0, 1):
            row = cell_class * (h * w) + np.clip(ys + dy, 0, h - 1) * w
            for dx in (-1, 0, 1):
                if dy or dx:
                    is_peak &= values >= flat[row + np.clip(xs + dx, 0, w - 1)]
        cells = cells[is_peak]
    order = np.lexsort((cells, -flat[cells]))[:top_k]
    return cells[order]


def nms_per_class(boxes_xyxy: np.ndarray, scores: np.ndarray, class_idx: np.ndarray,
                  iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression within each class; returns kept indices sorted by descending score.

    A box is suppressed when a kept box of the same class with a higher score overlaps it with IoU > iou_threshold.
    """
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order
    boxes, cls = boxes_xyxy[order], class_idx[order]
    suppresses = (iou_2d(boxes, boxes) > iou_threshold) & (cls[:, None] == cls[None, :])
    keep = np.ones(len(order), bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= ~suppresses[i, i + 1:]
    return order[keep]


def decode_detections(heatmap: np.ndarray, size: np.ndarray, offset: np.ndarray, scales: np.ndarray,
                      image_sizes: Sequence[tuple[int, int]], class_names: Sequence[str], input_height: int,
                      params: DecodeParams = DEFAULT_DECODE, frame_ids: Sequence[str] | None = None,
                      stamps_ns: Sequence[int] | None = None) -> list[Detections2D]:
    """Detections2D per image from the heads of a batch.

    Args:
        heatmap, size, offset: head outputs as in the module docstring.
        scales: (N,) letterbox scales (x_input = scale * x_full).
        image_sizes: (width, height) of each full-resolution image [px]; boxes are clipped to it.
        class_names: name of each heatmap channel.
        input_height: network input height [px] (gives the stride with the heatmap height).
        params: score threshold, top-k, NMS IoU.
        frame_ids, stamps_ns: copied into each Detections2D.
    """
    n, c, h, w = heatmap.shape
    stride = input_height / h
    names = np.asarray(class_names, dtype=object)
    results = []
    for i in range(n):
        top = top_peaks(heatmap[i], params.score_threshold, params.top_k)
        scores = heatmap[i].reshape(-1)
        cls, cell = np.divmod(top, h * w)
        ys, xs = np.divmod(cell, w)
        cx = (xs + offset[i, 0, ys, xs]) * stride
        cy = (ys + offset[i, 1, ys, xs]) * stride
        half_w = 0.5 * np.maximum(size[i, 0, ys, xs], 0.0)
        half_h = 0.5 * np.maximum(size[i, 1, ys, xs], 0.0)
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1).astype(np.float64) / scales[i]
        width, height = image_sizes[i]
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, cls, box_scores = boxes[valid], cls[valid], scores[top][valid].astype(np.float64)
        keep = nms_per_class(boxes, box_scores, cls, params.nms_iou)
        results.append(Detections2D(boxes[keep], names[cls[keep]], box_scores[keep],
                                    frame_ids[i] if frame_ids is not None else "",
                                    int(stamps_ns[i]) if stamps_ns is not None else 0))
    return results
