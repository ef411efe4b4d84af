"""Agreement of two detectors' outputs on the same images (e.g. the torch model and its ONNX export).

Two detection sets agree when every box of each has a box of the same class in the other at IoU >= min_iou
(matched one-to-one, greedily by IoU) and both have the same number of boxes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.boxes import iou_2d
from ..core.detections import Detections2D


@dataclass(frozen=True)
class Agreement:
    """Counts over all images.

    Attributes:
        matched: one-to-one same-class pairs at IoU >= min_iou.
        count_a, count_b: boxes of each side.
        images_agreeing: images where all boxes of both sides are matched.
        images: images compared.
        max_score_difference: largest |score_a - score_b| over matched pairs.
    """

    matched: int
    count_a: int
    count_b: int
    images_agreeing: int
    images: int
    max_score_difference: float

    @property
    def all_agree(self) -> bool:
        return self.images_agreeing == self.images


def _matches(a: Detections2D, b: Detections2D, min_iou: float) -> list[tuple[int, int]]:
    iou = np.where(a.class_ids[:, None] == b.class_ids[None, :], iou_2d(a.boxes_xyxy, b.boxes_xyxy), 0.0)
    pairs = []
    while iou.size and iou.max() >= min_iou:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        pairs.append((int(i), int(j)))
        iou[i, :] = -1.0
        iou[:, j] = -1.0
    return pairs


def compare_detections(a: Sequence[Detections2D], b: Sequence[Detections2D], min_iou: float = 0.99) -> Agreement:
    """Agreement of per-image detection lists a and b (same images, same order)."""
    matched = agreeing = 0
    score_difference = 0.0
    for da, db in zip(a, b, strict=True):
        pairs = _matches(da, db, min_iou)
        matched += len(pairs)
        agreeing += int(len(pairs) == len(da) == len(db))
        for i, j in pairs:
            score_difference = max(score_difference, abs(da.scores[i] - db.scores[j]))
    return Agreement(matched, sum(len(d) for d in a), sum(len(d) for d in b), agreeing, len(a), score_difference)
