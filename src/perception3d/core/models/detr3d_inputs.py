"""Numpy inputs and output decoding of the learned 3D detector (core.models.detr3d), shared by the node and training.

Frames: everything is in the base frame (x forward, y left, z up [m]); cameras are core.box_points.CameraBoxes whose
T_camera_points maps base-frame points into the camera.
- `detr3d_bev`: the current sweep's BEV image stacked on that of one earlier sweep (already moved into the current
  base frame; None = no earlier sweep, zeros).
- `anchor_rows`: QAF2D anchors of the 2D boxes (core.qaf2d.lift_boxes_multi, the best anchor per box; depths
  restricted where the box height fits the class prior, as the geometric mode's boxes without LiDAR support, so a
  far box's anchor depth is the KM3D-style size-prior depth), the `anchor_queries` best by 2D score, padded.
- `camera_inputs`: per camera the detection score maps (core.box_points.detection_maps) and the
  projection from the base frame to the maps' grid_sample coordinates.
- `decode`: the network's output as Detections3D (velocity = displacement / time between the two sweeps).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..box_points import CameraBoxes, detection_maps
from ..classes import DETECTION_CLASSES
from ..detections import Detections3D
from ..geometry import invert_transform
from ..lift3d import LiftParams, prior_depth_windows
from ..qaf2d import lift_boxes_multi
from .bev import bev_input
from .detr3d import ANCHOR_FEATURES, Detr3DConfig
from .segnet import INTENSITY_SCALE

# the nuScenes attribute group a class's attribute comes from (the devkit scores no attribute for the others)
ATTRIBUTE_GROUP = {**dict.fromkeys(("car", "truck", "bus", "trailer", "construction_vehicle"), "vehicle"),
                   "pedestrian": "pedestrian", "motorcycle": "cycle", "bicycle": "cycle"}
ANCHOR_IOU = 0.5  # projected-box IoU an anchor must exceed (noisy boxes; core.qaf2d)
MIN_LIFT = 8  # boxes lifted in one round of anchor_rows at least
_LIFT = LiftParams()


def detr3d_bev(points_base: np.ndarray, intensity: np.ndarray, past_points_base: np.ndarray | None,
               past_intensity: np.ndarray | None, config: Detr3DConfig) -> np.ndarray:
    """(2 C, S, S) float32: bev_input of the current sweep and of the earlier one (zeros without one); intensities
    in nuScenes units (0-255)."""
    grid = config.grid
    current = bev_input(points_base, np.asarray(intensity, np.float32) / INTENSITY_SCALE, grid)
    if past_points_base is None or len(past_points_base) == 0:
        return np.concatenate([current, np.zeros_like(current)])
    return np.concatenate([current, bev_input(past_points_base, np.asarray(past_intensity, np.float32)
                                              / INTENSITY_SCALE, grid)])


def anchor_rows(cameras: Sequence[CameraBoxes], config: Detr3DConfig) -> np.ndarray:
    """(config.anchor_queries, ANCHOR_FEATURES) float32 anchor rows (module docstring; zeros = padding).

    Boxes are lifted best 2D score first until the rows are full (a box without an anchor above ANCHOR_IOU leaves
    its row to the next box): the same rows as lifting every box, at the cost of the boxes that are used. The first
    round lifts `anchor_queries` boxes, each later one as many as rows are left (at least MIN_LIFT): on the shipped
    model's boxes one or two of 64 have no anchor, and a second round of 64 boxes had doubled the cost."""
    rows = np.zeros((config.anchor_queries, ANCHOR_FEATURES), dtype=np.float32)
    parts = [(c, np.flatnonzero(np.asarray(camera.classes) >= 0)) for c, camera in enumerate(cameras)]
    if config.anchor_queries == 0 or sum(len(keep) for _, keep in parts) == 0:
        return rows
    boxes = np.concatenate([np.asarray(cameras[c].boxes_xyxy, dtype=np.float64).reshape(-1, 4)[keep]
                            for c, keep in parts])
    classes = np.concatenate([np.asarray(cameras[c].classes)[keep] for c, keep in parts]).astype(np.int64)
    scores = np.concatenate([np.asarray(cameras[c].scores, dtype=np.float64)[keep] for c, keep in parts])
    camera_index = np.concatenate([np.full(len(keep), c) for c, keep in parts])
    names = np.array([DETECTION_CLASSES[k] for k in classes], dtype=object)
    T_target_cams = [invert_transform(c.T_camera_points) for c in cameras]
    order = np.argsort(-scores, kind="stable")
    filled = start = 0
    while start < len(order):
        chunk = order[start:start + max(config.anchor_queries - filled, MIN_LIFT)]
        start += len(chunk)
        windows = np.empty((len(chunk), 2))
        for c, camera in enumerate(cameras):
            mine = camera_index[chunk] == c
            if mine.any():
                windows[mine] = prior_depth_windows(boxes[chunk][mine], names[chunk][mine], camera, _LIFT)
        anchors = lift_boxes_multi(boxes[chunk], names[chunk], camera_index[chunk], cameras, T_target_cams,
                                   ANCHOR_IOU, 1, windows)
        if len(anchors) == 0:
            continue
        chosen = np.sort(anchors.box_index)[:config.anchor_queries - filled]  # best-scored boxes of the chunk first
        at = np.searchsorted(anchors.box_index, chosen)  # one anchor per box, grouped by box index
        box = chunk[chosen]
        rows_now = slice(filled, filled + len(chosen))
        rows[rows_now, :3] = anchors.centers[at]
        rows[rows_now, 3:6] = np.log(np.maximum(anchors.sizes_lwh[at], 1e-2))
        rows[rows_now, 6], rows[rows_now, 7] = np.sin(anchors.yaws[at]), np.cos(anchors.yaws[at])
        rows[rows_now, 8], rows[rows_now, 9], rows[rows_now, 10] = classes[box], scores[box], 1.0
        filled += len(chosen)
        if filled == config.anchor_queries:
            break
    return rows


def camera_inputs(cameras: Sequence[CameraBoxes], config: Detr3DConfig) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, classes, rows, cols), projection (N, 3, 4)) float32 of N cameras (one blind camera when there are
    none: zero maps, zero projection, which the network treats as seeing nothing)."""
    if not cameras:
        return (np.zeros((1, len(config.class_names), config.map_rows, config.map_cols), np.float32),
                np.zeros((1, 3, 4), np.float32))
    maps = detection_maps(cameras)
    projections = []
    for c in cameras:
        to_grid = np.array([[2.0 / c.width, 0.0, -1.0], [0.0, 2.0 / c.height, -1.0], [0.0, 0.0, 1.0]])
        projections.append(to_grid @ np.asarray(c.K, dtype=np.float64) @ np.asarray(c.T_camera_points)[:3])
    return maps, np.stack(projections).astype(np.float32)


def decode(boxes: np.ndarray, class_probabilities: np.ndarray, attribute_probabilities: np.ndarray,
           config: Detr3DConfig, score_threshold: float, lag_s: float | None, frame_id: str = "",
           stamp_ns: int = 0) -> Detections3D:
    """Detections3D of one frame's outputs (Q, ...): per query its best class, kept when that class's probability
    reaches score_threshold; velocity = displacement / lag_s [m/s] (NaN without an earlier sweep); attribute = the
    likeliest of the class's group ('' for classes without attributes)."""
    cls = np.argmax(class_probabilities, axis=1)
    score = class_probabilities[np.arange(len(cls)), cls]
    keep = np.flatnonzero(score >= score_threshold)
    keep = keep[np.argsort(-score[keep], kind="stable")]
    b = boxes[keep].astype(np.float64)
    velocity = b[:, 7:9] / lag_s if lag_s else np.full((len(keep), 2), np.nan)
    names = np.array(config.class_names, dtype=object)[cls[keep]]
    class_attributes = np.array([[a.split(".")[0] == ATTRIBUTE_GROUP.get(n) for a in config.attribute_names]
                                 for n in config.class_names], dtype=bool).reshape(len(config.class_names), -1)
    allowed = class_attributes[cls[keep]]  # per kept query: the attributes of its class's group
    best = np.argmax(np.where(allowed, attribute_probabilities[keep], -1.0), axis=1) if len(keep) else keep
    attributes = np.where(allowed.any(axis=1), np.array(config.attribute_names, dtype=object)[best], "")
    return Detections3D(b[:, :3], b[:, 3:6], b[:, 6], names, score[keep], frame_id, stamp_ns, velocity,
                        attributes=attributes)
