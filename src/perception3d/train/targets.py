"""CenterNet training targets from boxes in network-input pixels.

For each box (pixel-edge xyxy in the letterboxed input), its centre c / stride falls in grid cell
floor(c / stride). That cell gets:
- heatmap[class] = 1, surrounded by a Gaussian exp(-(dx^2 + dy^2) / (2 sigma^2)) with sigma = (2r + 1) / 6,
  where r is the CenterNet radius for the box size at min_overlap 0.7 (overlapping Gaussians take the maximum);
- size = (width, height) / stride [grid cells]; offset = c / stride - cell [grid cells, in [0, 1)];
- mask = 1.
When two boxes share a centre cell, the smaller one (drawn last) keeps the regression targets.
"""
from __future__ import annotations

import numpy as np

# IoU the CenterNet radius is chosen for (CornerNet/CenterNet default).
MIN_OVERLAP = 0.7


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """The CenterNet heatmap radius for a box of height x width [grid cells].

    The minimum of the three quadratic-root cases of CornerNet's corner-shift analysis, as written in the
    CenterNet code (roots taken as (b + sqrt(b^2 - 4ac)) / 2, which is what the published models were trained with).
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Max-merge a Gaussian of the given integer radius (sigma = (2r + 1) / 6) centred on cell (cx, cy), in place."""
    sigma = (2 * radius + 1) / 6.0
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2 * sigma * sigma))
    h, w = heatmap.shape
    x0, x1 = max(0, cx - radius), min(w, cx + radius + 1)
    y0, y1 = max(0, cy - radius), min(h, cy + radius + 1)
    patch = kernel[y0 - cy + radius:y1 - cy + radius, x0 - cx + radius:x1 - cx + radius]
    np.maximum(heatmap[y0:y1, x0:x1], patch, out=heatmap[y0:y1, x0:x1])


def centernet_targets(boxes_xyxy: np.ndarray, class_idx: np.ndarray, num_classes: int, grid_height: int,
                      grid_width: int, stride: int) -> dict[str, np.ndarray]:
    """Targets for one image.

    Args:
        boxes_xyxy: (N, 4) boxes in network-input pixels (pixel-edge coordinates).
        class_idx: (N,) heatmap channel of each box.
        num_classes: heatmap channels.
        grid_height, grid_width: head grid size (input size / stride).
        stride: network-input pixels per grid cell.

    Returns float32 arrays: heatmap (C, h, w), size (2, h, w), offset (2, h, w), mask (h, w).
    """
    heatmap = np.zeros((num_classes, grid_height, grid_width), np.float32)
    size = np.zeros((2, grid_height, grid_width), np.float32)
    offset = np.zeros((2, grid_height, grid_width), np.float32)
    mask = np.zeros((grid_height, grid_width), np.float32)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4) / stride
    wh = boxes[:, 2:] - boxes[:, :2]
    for i in np.argsort(-wh[:, 0] * wh[:, 1], kind="stable"):
        if wh[i, 0] <= 0 or wh[i, 1] <= 0:
            continue
        centre = 0.5 * (boxes[i, :2] + boxes[i, 2:])
        cx, cy = np.minimum(np.floor(centre).astype(int), [grid_width - 1, grid_height - 1])
        if cx < 0 or cy < 0:
            continue
        radius = max(0, int(gaussian_radius(wh[i, 1], wh[i, 0])))
        draw_gaussian(heatmap[int(class_idx[i])], cx, cy, radius)
        heatmap[int(class_idx[i]), cy, cx] = 1.0
        size[:, cy, cx] = wh[i]
        offset[:, cy, cx] = centre - (cx, cy)
        mask[cy, cx] = 1.0
    return {"heatmap": heatmap, "size": size, "offset": offset, "mask": mask}
