"""CenterNet losses: penalty-reduced pixel-wise focal loss on the heatmap, masked L1 on size and offset."""
from __future__ import annotations

import torch
from torch.nn import functional

from .distributed import mean_over_ranks

# Focal loss exponents (CenterNet: alpha = 2, beta = 4) and the weights of the regression terms.
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss, summed and divided by the number of positive cells (target == 1), at least 1.

    The count is over the global batch when several processes train together (train.distributed).

    loss = -1/N * sum( (1-p)^a log p  where y = 1;  (1-y)^b p^a log(1-p)  elsewhere ), p = sigmoid(logits).
    """
    p = torch.sigmoid(logits)
    positive = target.eq(1.0).float()
    pos = functional.logsigmoid(logits) * (1 - p).pow(FOCAL_ALPHA) * positive
    neg = functional.logsigmoid(-logits) * p.pow(FOCAL_ALPHA) * (1 - target).pow(FOCAL_BETA) * (1 - positive)
    return -(pos.sum() + neg.sum()) / mean_over_ranks(positive.sum()).clamp(min=1.0)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the (N, 2, h, w) values where mask (N, h, w) is 1 (in the global batch when several
    processes train together); 0 when the mask is empty."""
    m = mask.unsqueeze(1)
    return (torch.abs(pred - target) * m).sum() / mean_over_ranks(2 * m.sum()).clamp(min=1.0)


def centernet_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                                dict[str, float]]:
    """Total loss and its parts {'heatmap', 'size', 'offset'} for CenterNet outputs and batched targets."""
    parts = {
        "heatmap": focal_loss(outputs["heatmap"], targets["heatmap"]),
        "size": masked_l1(outputs["size"], targets["size"], targets["mask"]),
        "offset": masked_l1(outputs["offset"], targets["offset"], targets["mask"]),
    }
    total = parts["heatmap"] + SIZE_WEIGHT * parts["size"] + OFFSET_WEIGHT * parts["offset"]
    return total, {k: float(v.detach()) for k, v in parts.items()}
