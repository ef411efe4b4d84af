"""The Lovász-softmax loss (Berman et al., CVPR'18), a differentiable surrogate of the mean IoU, shared by the
segmentation and occupancy losses."""
from __future__ import annotations

import torch


def lovasz_softmax(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax loss (Berman et al., CVPR'18) of probabilities (P, C) against targets (P,) in 0..C-1,
    averaged over the classes present in the targets; 0 for no points."""
    losses = []
    for c in torch.unique(target):
        foreground = (target == c).to(probabilities.dtype)
        errors, order = torch.sort((foreground - probabilities[:, c]).abs(), descending=True)
        sorted_foreground = foreground[order]
        total = sorted_foreground.sum()
        intersection = total - sorted_foreground.cumsum(0)
        union = total + (1.0 - sorted_foreground).cumsum(0)
        jaccard = 1.0 - intersection / union
        gradient = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, gradient))
    return torch.stack(losses).mean() if losses else probabilities.sum() * 0.0
