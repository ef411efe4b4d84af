"""A SIMULATED 2D detector: image boxes made from 3D ground truth through an explicit noise model.

This is not a learned detector. For each image, every ground-truth box (global frame) is projected into the
camera; its 2D box is the bounding rectangle of the projected corners that lie in front of the camera, clipped
to the image. Occlusion is 1 - the visible fraction: given by the caller where the scene was rendered (the share of
the object's projected pixels where it is the nearest surface, `render.CameraRenderer.visible_fractions`), else
the fraction of the rectangle not covered by nearer objects' rectangles (painter's raster at 1/8 resolution).
Then, per object:
- miss probability p = miss_base + miss_per_10m * distance / 10 m + miss_occlusion * occluded fraction
  (clipped to [0, 1]); fully occluded or sub-`min_box_px` boxes are always missed;
- each box edge moves by N(0, jitter_px + jitter_rel * box side) pixels;
- with probability class_confusion the class becomes another detection class;
- score ~ N(score_tp_mean - 0.3 p, score_std) clipped to [0.05, 1].
False positives: Poisson(false_positives_per_image) boxes with log-uniform side 16..320 px, aspect 0.5..2,
uniform position and class, score ~ N(score_fp_mean, score_std) clipped to [0.05, 1]. The `perfect` preset keeps
every visible box exactly, with score 1. Ids: the instance token for boxes from ground truth, '' for false ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..core.boxes import box_corners
from ..core.camera import CameraModel, project_points
from ..core.classes import DETECTION_CLASSES
from ..core.detections import Detections2D, Detections3D
from ..core.geometry import transform_points

_RASTER = 8  # occlusion raster: image pixels per cell


@dataclass(frozen=True)
class NoiseModel2D:
    """Parameters of the simulated detector (pixels are full-resolution image pixels)."""

    name: str
    jitter_px: float
    jitter_rel: float
    miss_base: float
    miss_per_10m: float
    miss_occlusion: float
    false_positives_per_image: float
    class_confusion: float
    score_tp_mean: float
    score_fp_mean: float
    score_std: float
    min_box_px: float = 4.0

    def describe(self) -> dict:
        """The parameters as a dict marked as simulated (recorded in bags)."""
        return {"simulated": True, "detector": "perception3d.data.simulated_2d", **asdict(self)}


PRESETS: dict[str, NoiseModel2D] = {
    "perfect": NoiseModel2D("perfect", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    "good": NoiseModel2D("good", 2.0, 0.03, 0.02, 0.03, 0.4, 0.3, 0.02, 0.85, 0.35, 0.08),
    "poor": NoiseModel2D("poor", 6.0, 0.10, 0.10, 0.08, 0.8, 2.0, 0.10, 0.65, 0.45, 0.15),
}


def project_boxes(gt: Detections3D, T_cam_global: np.ndarray, camera: CameraModel) -> tuple[np.ndarray,
                                                                                              np.ndarray]:
    """Clipped image rectangles (N, 4) xyxy and centre depths (N,) [m] of global boxes; NaN rows for boxes with
    no corner in front of the camera or no overlap with the image."""
    rects = np.full((len(gt), 4), np.nan)
    depth = np.full(len(gt), np.nan)
    if len(gt) == 0:
        return rects, depth
    corners = box_corners(gt.centers, gt.sizes_lwh, gt.yaws)
    cam = transform_points(T_cam_global, corners.reshape(-1, 3))
    proj = project_points(camera, cam)
    uv = proj.uv.reshape(-1, 8, 2)
    front = proj.in_front.reshape(-1, 8)
    centers_cam = transform_points(T_cam_global, gt.centers)
    for i in np.flatnonzero(front.any(1)):
        lo, hi = uv[i, front[i]].min(0), uv[i, front[i]].max(0)
        x0, y0 = max(lo[0], 0.0), max(lo[1], 0.0)
        x1, y1 = min(hi[0], camera.width - 1.0), min(hi[1], camera.height - 1.0)
        if x1 > x0 and y1 > y0:
            rects[i] = (x0, y0, x1, y1)
            depth[i] = np.linalg.norm(centers_cam[i])
    return rects, depth


def visible_fractions(rects: np.ndarray, depth: np.ndarray, camera: CameraModel) -> np.ndarray:
    """Fraction (N,) of each rectangle not covered by nearer rectangles (0 for NaN rows)."""
    w, h = -(-camera.width // _RASTER), -(-camera.height // _RASTER)
    owner = np.full((h, w), -1)
    valid = np.flatnonzero(np.isfinite(depth))
    cells = {}
    for i in valid[np.argsort(-depth[valid])]:  # far to near: nearer boxes overwrite
        c0, r0 = (rects[i, :2] // _RASTER).astype(int)
        c1, r1 = (rects[i, 2:] // _RASTER).astype(int) + 1
        owner[r0:r1, c0:c1] = i
        cells[i] = (r1 - r0) * (c1 - c0)
    counts = np.bincount(owner[owner >= 0], minlength=len(depth))
    return np.array([counts[i] / cells[i] if i in cells else 0.0 for i in range(len(depth))])


def simulate_detections(gt: Detections3D, T_cam_global: np.ndarray, camera: CameraModel, model: NoiseModel2D,
                        rng: np.random.Generator, stamp_ns: int, visible: np.ndarray | None = None) -> Detections2D:
    """Simulated Detections2D of one image (frame = camera.frame_id) from global ground-truth boxes; `visible`
    (len(gt),): rendered visible fractions (default: from the rectangles)."""
    rects, depth = project_boxes(gt, T_cam_global, camera)
    if visible is None:
        visible = visible_fractions(rects, depth, camera)
    sides = np.nan_to_num(np.column_stack([rects[:, 2] - rects[:, 0], rects[:, 3] - rects[:, 1]]))
    keep = (visible > 0) & (sides.min(1) >= model.min_box_px)
    p_miss = np.clip(model.miss_base + model.miss_per_10m * np.nan_to_num(depth) / 10.0
                     + model.miss_occlusion * (1 - visible), 0, 1)
    keep &= rng.random(len(gt)) >= p_miss
    idx = np.flatnonzero(keep)
    boxes = rects[idx].copy()
    if model.jitter_px > 0 or model.jitter_rel > 0:
        scale = model.jitter_px + model.jitter_rel * np.repeat(sides[idx], 2, axis=1)[:, [0, 2, 1, 3]]
        boxes += rng.normal(0, 1, boxes.shape) * scale
        boxes[:, [0, 2]] = np.sort(boxes[:, [0, 2]], axis=1).clip(0, camera.width - 1)
        boxes[:, [1, 3]] = np.sort(boxes[:, [1, 3]], axis=1).clip(0, camera.height - 1)
    classes = gt.class_ids[idx].copy()
    confused = rng.random(len(idx)) < model.class_confusion
    for j in np.flatnonzero(confused):
        classes[j] = rng.choice([c for c in DETECTION_CLASSES if c != classes[j]])
    if model.score_std > 0:
        scores = np.clip(rng.normal(model.score_tp_mean - 0.3 * p_miss[idx], model.score_std), 0.05, 1.0)
    else:
        scores = np.full(len(idx), model.score_tp_mean)
    n_fp = rng.poisson(model.false_positives_per_image) if model.false_positives_per_image > 0 else 0
    fp_side = np.exp(rng.uniform(np.log(16), np.log(320), n_fp))
    fp_aspect = rng.uniform(0.5, 2.0, n_fp)
    fp_w, fp_h = fp_side * np.sqrt(fp_aspect), fp_side / np.sqrt(fp_aspect)
    fp_x0 = rng.uniform(0, camera.width - 1, n_fp)
    fp_y0 = rng.uniform(0, camera.height - 1, n_fp)
    fp_boxes = np.column_stack([fp_x0, fp_y0, np.minimum(fp_x0 + fp_w, camera.width - 1),
                                np.minimum(fp_y0 + fp_h, camera.height - 1)])
    fp_classes = rng.choice(DETECTION_CLASSES, n_fp) if n_fp else np.zeros(0, object)
    fp_scores = np.clip(rng.normal(model.score_fp_mean, model.score_std, n_fp), 0.05, 1.0)
    return Detections2D(np.vstack([boxes.reshape(-1, 4), fp_boxes.reshape(-1, 4)]),
                        list(classes) + list(fp_classes), np.concatenate([scores, fp_scores]), camera.frame_id,
                        stamp_ns, list(gt.ids[idx]) + [""] * n_fp)
