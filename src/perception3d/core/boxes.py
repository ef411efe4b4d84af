"""3D and 2D boxes: corners, size conventions and overlaps (2D IoU, rotated BEV IoU, 3D IoU).

A 3D box is (center xyz [m], size_lwh [m], yaw [rad]) in some frame: size is the full extent along the box's own
x (length), y (width) and z (height) axes, i.e. vision_msgs `BoundingBox3D.size` order, and the box is rotated by
yaw about +z. nuScenes stores sizes as (w, l, h): convert with `wlh_to_lwh` / `lwh_to_wlh`, nowhere else.
2D boxes are (x0, y0, x1, y1) in pixels with x0 <= x1, y0 <= y1.
"""
from __future__ import annotations

import numpy as np

# Unit corners in the box frame, (8, 3), scaled by half the size. Order: bottom face (z-) counter-clockwise seen
# from above starting at front-left (+x, +y), then the top face (z+) in the same order.
_UNIT_CORNERS = np.array(
    [[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1],
     [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]],
    dtype=np.float64,
)


def wlh_to_lwh(size_wlh: np.ndarray) -> np.ndarray:
    """nuScenes (w, l, h) sizes (..., 3) -> box-frame extents (x=l, y=w, z=h) as in vision_msgs."""
    s = np.asarray(size_wlh, dtype=np.float64)
    return s[..., [1, 0, 2]]


def lwh_to_wlh(size_lwh: np.ndarray) -> np.ndarray:
    """Box-frame extents (x=l, y=w, z=h) (..., 3) -> nuScenes (w, l, h)."""
    s = np.asarray(size_lwh, dtype=np.float64)
    return s[..., [1, 0, 2]]


def box_corners(center: np.ndarray, size_lwh: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners (N, 8, 3) of N boxes (centers (N, 3), sizes (N, 3) as l,w,h, yaws (N,)); order as _UNIT_CORNERS."""
    center = np.asarray(center, dtype=np.float64).reshape(-1, 3)
    size = np.asarray(size_lwh, dtype=np.float64).reshape(-1, 3)
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    local = _UNIT_CORNERS[None, :, :] * (0.5 * size[:, None, :])
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], axis=-1) + center[:, None, :]


def bev_corners(center: np.ndarray, size_lwh: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Footprint polygons (N, 4, 2) in the xy-plane, counter-clockwise."""
    return box_corners(center, size_lwh, yaw)[:, :4, :2]


def points_in_box(points: np.ndarray, center: np.ndarray, size_lwh: np.ndarray, yaw: float,
                  margin: float = 0.0) -> np.ndarray:
    """Boolean mask (N,) of points (N, 3) inside one box grown by `margin` metres on every side."""
    p = np.asarray(points, dtype=np.float64)[:, :3] - np.asarray(center, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    local_x = p[:, 0] * c + p[:, 1] * s
    local_y = -p[:, 0] * s + p[:, 1] * c
    half = 0.5 * np.asarray(size_lwh, dtype=np.float64) + margin
    return (np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1]) & (np.abs(p[:, 2]) <= half[2])


def intersection_2d(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas (N, M) of axis-aligned boxes (N, 4) and (M, 4) as (x0, y0, x1, y1)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    return paired_intersection_2d(a[:, None, :], b[None, :, :])


def paired_intersection_2d(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection areas of axis-aligned boxes boxes_a[..., :] and boxes_b[..., :] paired element by element
    (shapes (..., 4) that broadcast, x0, y0, x1, y1): (N,) for two (N, 4) lists of pairs."""
    ix = np.clip(np.minimum(boxes_a[..., 2], boxes_b[..., 2]) - np.maximum(boxes_a[..., 0], boxes_b[..., 0]), 0, None)
    iy = np.clip(np.minimum(boxes_a[..., 3], boxes_b[..., 3]) - np.maximum(boxes_a[..., 1], boxes_b[..., 1]), 0, None)
    return ix * iy


def iou_2d(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) of axis-aligned boxes (N, 4) and (M, 4) as (x0, y0, x1, y1)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    inter = intersection_2d(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon (K, 2) by the shoelace formula (positive for counter-clockwise)."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    # the next vertex's coordinates by concatenate: np.roll's values (contiguous copies) at a third of its cost
    return 0.5 * float(np.dot(x, np.concatenate((y[1:], y[:1]))) - np.dot(y, np.concatenate((x[1:], x[:1]))))


def convex_polygon_intersection(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection (K, 2) of two convex counter-clockwise polygons (Sutherland-Hodgman clipping).

    The few vertices are clipped as Python floats (numpy's per-scalar overhead would dominate); the arithmetic is
    the same operation by operation as on arrays.
    """
    output = np.asarray(subject, dtype=np.float64).reshape(-1, 2).tolist()
    clip = np.asarray(clip, dtype=np.float64).reshape(-1, 2).tolist()
    for i in range(len(clip)):
        if not output:
            break
        (ax, ay), (bx, by) = clip[i], clip[(i + 1) % len(clip)]
        ex, ey = bx - ax, by - ay
        # Signed distance of each vertex to the clip edge; >= 0 is inside (left of a counter-clockwise edge).
        side = [ex * (y - ay) - ey * (x - ax) for x, y in output]
        kept = []
        for j, (cx, cy) in enumerate(output):
            nx, ny = output[(j + 1) % len(output)]
            s_cur, s_nxt = side[j], side[(j + 1) % len(output)]
            if s_cur >= 0:
                kept.append((cx, cy))
            if (s_cur >= 0) != (s_nxt >= 0):
                t = s_cur / (s_cur - s_nxt)
                kept.append((cx + t * (nx - cx), cy + t * (ny - cy)))
        output = kept
    return np.array(output, dtype=np.float64).reshape(-1, 2)


def bev_intersection_area(corners_a: np.ndarray, corners_b: np.ndarray) -> np.ndarray:
    """Pairwise footprint intersection areas (N, M) [m^2] of counter-clockwise (N, 4, 2) and (M, 4, 2) polygons."""
    a = np.asarray(corners_a, dtype=np.float64).reshape(-1, 4, 2)
    b = np.asarray(corners_b, dtype=np.float64).reshape(-1, 4, 2)
    area = np.zeros((len(a), len(b)))
    lo_a, hi_a = a.min(axis=1), a.max(axis=1)
    lo_b, hi_b = b.min(axis=1), b.max(axis=1)
    overlap = np.all(
        (lo_a[:, None, :] <= hi_b[None, :, :]) & (lo_b[None, :, :] <= hi_a[:, None, :]), axis=-1)
    for i, j in zip(*np.nonzero(overlap)):
        area[i, j] = max(polygon_area(convex_polygon_intersection(a[i], b[j])), 0.0)
    return area


def bev_iou(center_a, size_a_lwh, yaw_a, center_b, size_b_lwh, yaw_b) -> np.ndarray:
    """Pairwise rotated bird's-eye-view IoU (N, M) of two box sets."""
    size_a = np.asarray(size_a_lwh, dtype=np.float64).reshape(-1, 3)
    size_b = np.asarray(size_b_lwh, dtype=np.float64).reshape(-1, 3)
    return footprint_iou(bev_corners(center_a, size_a, yaw_a), size_a[:, 0] * size_a[:, 1],
                         bev_corners(center_b, size_b, yaw_b), size_b[:, 0] * size_b[:, 1])


def footprint_pair_iou(corners_a: np.ndarray, area_a: float, corners_b: np.ndarray, area_b: float) -> float:
    """footprint_iou of one pair of footprints (bev_corners (4, 2) each, areas [m^2]), the same value without the
    arrays' set-up (greedy NMS compares one box with a few kept ones at a time)."""
    (ax, ay), (bx, by) = zip(*corners_a.tolist()), zip(*corners_b.tolist())
    overlap = min(ax) <= max(bx) and min(bx) <= max(ax) and min(ay) <= max(by) and min(by) <= max(ay)
    inter = max(polygon_area(convex_polygon_intersection(corners_a, corners_b)), 0.0) if overlap else 0.0
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def footprint_iou(corners_a: np.ndarray, area_a: np.ndarray, corners_b: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) of footprints given as bev_corners (N, 4, 2), (M, 4, 2) and their areas (N,), (M,)
    [m^2] (callers comparing one set many times compute these once)."""
    inter = bev_intersection_area(corners_a, corners_b)
    union = np.asarray(area_a)[:, None] + np.asarray(area_b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_3d(center_a, size_a_lwh, yaw_a, center_b, size_b_lwh, yaw_b) -> np.ndarray:
    """Pairwise 3D IoU (N, M) of yaw-rotated boxes (gravity-aligned: rotation about z only)."""
    ca = np.asarray(center_a, dtype=np.float64).reshape(-1, 3)
    cb = np.asarray(center_b, dtype=np.float64).reshape(-1, 3)
    sa = np.asarray(size_a_lwh, dtype=np.float64).reshape(-1, 3)
    sb = np.asarray(size_b_lwh, dtype=np.float64).reshape(-1, 3)
    inter_bev = bev_intersection_area(bev_corners(ca, sa, yaw_a), bev_corners(cb, sb, yaw_b))
    z_lo = np.maximum((ca[:, 2] - sa[:, 2] / 2)[:, None], (cb[:, 2] - sb[:, 2] / 2)[None, :])
    z_hi = np.minimum((ca[:, 2] + sa[:, 2] / 2)[:, None], (cb[:, 2] + sb[:, 2] / 2)[None, :])
    inter = inter_bev * np.clip(z_hi - z_lo, 0.0, None)
    union = np.prod(sa, axis=1)[:, None] + np.prod(sb, axis=1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
