"""The segmentation network's loss (methods.md §3, 2DPASS + 2DDATA):

    L = Lseg(3D) + Lseg(LOB) + 0.05 * KL(softmax(LOB).detach() || softmax(3D)) on the points inside 2D boxes,

with Lseg = class-weighted cross-entropy + Lovász-softmax over the points whose label is not 'ignore' (0). Class
weights are (max frequency / frequency) ** (1/3) of the training set's labels, capped at MAX_CLASS_WEIGHT (a class
that never occurs gets the cap). Without the LOB (or without boxes in the batch) L = Lseg(3D).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from .lovasz import lovasz_softmax

DISTILL_WEIGHT = 0.05
MAX_CLASS_WEIGHT = 10.0


def class_weights(counts: np.ndarray) -> np.ndarray:
    """(C,) float32 cross-entropy weights from per-class label counts (C,) (module docstring)."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.full(len(counts), MAX_CLASS_WEIGHT)
    present = counts > 0
    weights[present] = np.minimum((counts.max() / counts[present]) ** (1.0 / 3.0), MAX_CLASS_WEIGHT)
    return weights.astype(np.float32)


def segmentation_loss_terms(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy + Lovász-softmax of logits (P, C) against targets (P,) in 0..C-1."""
    if len(target) == 0:
        return logits.sum() * 0.0
    return functional.cross_entropy(logits, target, weight=weights) + \
        lovasz_softmax(torch.softmax(logits, dim=-1), target)


def segmentation_loss(logits: torch.Tensor, lob_logits: torch.Tensor | None, labels: torch.Tensor,
                      box_class: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of a batch and its parts.

    Args:
        logits, lob_logits: (B, N, C) 3D and LOB logits (lob_logits None: no LOB).
        labels: (B, N) lidarseg labels 0..C (0 = ignore; class index = label - 1).
        box_class: (B, N) detection class of the point's 2D box, -1 none (train.lob).
        weights: (C,) cross-entropy class weights.
    """
    valid = labels > 0
    target = labels[valid] - 1
    loss_3d = segmentation_loss_terms(logits[valid], target, weights)
    parts = {"seg_3d": float(loss_3d.detach())}
    if lob_logits is None:
        return loss_3d, parts
    in_box = valid & (box_class >= 0)
    if not bool(in_box.any()):
        return loss_3d, {**parts, "seg_lob": 0.0, "distill": 0.0}
    loss_lob = segmentation_loss_terms(lob_logits[in_box], labels[in_box] - 1, weights)
    teacher = torch.softmax(lob_logits[in_box].detach(), dim=-1)
    distill = functional.kl_div(torch.log_softmax(logits[in_box], dim=-1), teacher, reduction="batchmean")
    parts.update(seg_lob=float(loss_lob.detach()), distill=float(distill.detach()))
    return loss_3d + loss_lob + DISTILL_WEIGHT * distill, parts
