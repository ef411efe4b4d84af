"""Which 2D detection box each LiDAR point falls in (2DDATA's point-in-box assignment, methods.md §3).

A point belongs to a box when its projection into the box's camera lies inside the box (in front of the camera,
inside the image). A point inside several boxes (overlapping boxes, or boxes of two cameras) takes the box whose
points are nearest to the camera (median depth of the box's points), as the occluding object is the one seen.
Points in no box get class -1 and score 0. Pure geometry, no weights: the Local Object Branch's point selection in
training, the per-point box prior of a segmentation model that takes one. `detection_maps` rasterises a camera's
boxes as per-class score maps: the camera feature of the learned occupancy (core.models.occfusion_inputs) and of the
learned detection3d (core.models.detr3d_inputs).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .camera import project_points
from .classes import DETECTION_CLASSES
from .frustum import points_in_boxes_2d
from .geometry import transform_points

MIN_DEPTH_M = 0.5
DETECTION_MAP_SIZE = (64, 36)  # (columns, rows) of a camera's detection score maps, whatever its resolution


@dataclass(frozen=True)
class CameraBoxes:
    """One camera's calibration and 2D boxes.

    Attributes:
        K: (3, 3) intrinsics in the boxes' pixels; width, height: image size [px].
        T_camera_points: (4, 4) from the points' frame (lidar or base) into the camera's optical frame.
        boxes_xyxy: (M, 4) [px]; classes: (M,) DETECTION_CLASSES index, -1 other (such boxes are not used);
        scores: (M,) detection scores in [0, 1].
    """

    K: np.ndarray
    T_camera_points: np.ndarray
    width: int
    height: int
    boxes_xyxy: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def project(points: np.ndarray, camera: CameraBoxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixel coordinates (N, 2), depth (N,) [m], seen (N,)) of points (N, >=3) in the camera: seen = at least
    MIN_DEPTH_M in front of it and inside the image."""
    cam = transform_points(camera.T_camera_points, np.asarray(points, dtype=np.float64)[:, :3])
    projection = project_points(camera, cam, MIN_DEPTH_M)
    return projection.uv, projection.depth, projection.in_image


def project_all(points: np.ndarray, cameras: Sequence[CameraBoxes]) -> tuple[np.ndarray, np.ndarray]:
    """(pixel coordinates (cameras, 2, N), seen (cameras, N)) of points (N, >=3) in every camera by `project`'s rule
    and arithmetic, all cameras in one stacked product."""
    p = np.asarray(points, dtype=np.float64)[:, :3].T
    if not cameras:
        return np.zeros((0, 2, p.shape[1])), np.zeros((0, p.shape[1]), dtype=bool)
    T = np.stack([np.asarray(c.T_camera_points, dtype=np.float64) for c in cameras])
    K = np.stack([np.asarray(c.K, dtype=np.float64) for c in cameras])
    cam = T[:, :3, :3] @ p + T[:, :3, 3:4]  # (cameras, 3, N)
    depth = cam[:, 2]
    in_front = depth > MIN_DEPTH_M
    uv = (K @ cam)[:, :2] / np.where(in_front, depth, 1.0)[:, None]
    size = np.array([[c.width, c.height] for c in cameras], dtype=np.float64)[:, :, None]
    return uv, in_front & ((uv >= 0.0) & (uv < size)).all(axis=1)


def may_see(centres: np.ndarray, radii: np.ndarray, cameras: Sequence[CameraBoxes]) -> np.ndarray:
    """(N, cameras) bool: False where a camera can see no point of a sphere (centres (N, 3) [m] in the points' frame,
    radii (N,) [m]) by `project`'s rule. A conservative cull: a seen point lies on the inner side of five planes of
    the camera (depth > MIN_DEPTH_M, 0 <= u < width, 0 <= v < height, each linear in the point once its depth is
    positive); a sphere wholly beyond one of them holds no seen point. All cameras' planes in one product."""
    depth_axis = np.array([0.0, 0.0, 1.0])
    normals, offsets = [], []
    for camera in cameras:  # each camera's planes n . p_cam >= offset, moved into the points' frame
        T = np.asarray(camera.T_camera_points, dtype=np.float64)
        K = np.asarray(camera.K, dtype=np.float64)
        n_cam = np.stack([K[0], camera.width * depth_axis - K[0], K[1], camera.height * depth_axis - K[1],
                          depth_axis])
        normals.append(n_cam @ T[:3, :3])
        offsets.append(np.array([0.0, 0.0, 0.0, 0.0, MIN_DEPTH_M]) - n_cam @ T[:3, 3])
    if not normals:
        return np.zeros((len(centres), 0), dtype=bool)
    normals, offsets = np.concatenate(normals), np.concatenate(offsets)
    # a margin of a micrometre (scaled like the plane distances) absorbs rounding against project's own arithmetic
    reach = (np.asarray(radii, dtype=np.float64).reshape(-1, 1) + 1e-6) * np.linalg.norm(normals, axis=1)
    inside = np.asarray(centres, dtype=np.float64).reshape(-1, 3) @ normals.T - offsets >= -reach
    return inside.reshape(len(inside), len(cameras), 5).all(axis=2)


def point_boxes(points: np.ndarray, cameras: Sequence[CameraBoxes]) -> tuple[np.ndarray, np.ndarray]:
    """(class (N,) int64, -1 for no box; score (N,) float32) of each point's box (module docstring).

    points: (N, >=3) [m] in the frame the cameras' T_camera_points map from.
    """
    box_class = np.full(len(points), -1, dtype=np.int64)
    box_score = np.zeros(len(points), dtype=np.float32)
    best_depth = np.full(len(points), np.inf)
    for camera in cameras:
        mine = np.flatnonzero(np.asarray(camera.classes) >= 0)
        if len(mine) == 0:
            continue
        uv, depth, seen = project(points, camera)
        front = np.flatnonzero(seen)
        point, box = points_in_boxes_2d(uv[front], np.asarray(camera.boxes_xyxy)[mine])
        if len(point) == 0:
            continue
        depth = depth[front[point]]
        median = np.array([np.median(depth[box == b]) if np.any(box == b) else np.inf for b in range(len(mine))])
        order = np.argsort(median[box], kind="stable")  # nearest box first, so np.unique keeps it
        point, box = point[order], box[order]
        first_point, first = np.unique(point, return_index=True)
        index, near = front[first_point], median[box[first]]
        closer = near < best_depth[index]
        best_depth[index[closer]] = near[closer]
        chosen = mine[box[first[closer]]]
        box_class[index[closer]] = np.asarray(camera.classes)[chosen]
        box_score[index[closer]] = np.asarray(camera.scores, dtype=np.float32)[chosen]
    return box_class, box_score


def detection_maps(cameras: Sequence[CameraBoxes]) -> np.ndarray:
    """(cameras, len(DETECTION_CLASSES), rows, cols) float32: per camera and class, the highest score of the camera's
    boxes of that class covering each cell (DETECTION_MAP_SIZE cells over the whole image). Every covered cell of
    every box of every camera is listed at once (a box's cells are its row-major cell numbers, offset by its first
    cell) and painted by one maximum.at."""
    cols, rows = DETECTION_MAP_SIZE
    maps = np.zeros((len(cameras), len(DETECTION_CLASSES), rows, cols), dtype=np.float32)
    if not cameras:
        return maps
    scale = np.concatenate([np.tile([cols / c.width, rows / c.height], (len(c.scores), 2)) for c in cameras])
    boxes = np.concatenate([np.asarray(c.boxes_xyxy, dtype=np.float64).reshape(-1, 4) for c in cameras]) * scale
    classes = np.concatenate([np.asarray(c.classes, dtype=np.int64).reshape(-1) for c in cameras])
    scores = np.concatenate([np.asarray(c.scores, dtype=np.float32).reshape(-1) for c in cameras])
    camera = np.repeat(np.arange(len(cameras)), [len(c.scores) for c in cameras])
    first = np.maximum(np.floor(boxes[:, :2]), 0).astype(np.int64)  # (column, row) of the first covered cell
    width, height = np.maximum(np.minimum(np.ceil(boxes[:, 2:]), [cols, rows]).astype(np.int64) - first, 0).T
    cells = np.where(classes >= 0, width * height, 0)  # boxes of no detection class cover nothing
    box = np.repeat(np.arange(len(cells)), cells)
    cell = np.arange(len(box)) - np.repeat(np.cumsum(cells) - cells, cells)  # row-major within the box
    row, col = first[box, 1] + cell // width[box], first[box, 0] + cell % width[box]
    flat = ((camera[box] * len(DETECTION_CLASSES) + classes[box]) * rows + row) * cols + col
    np.maximum.at(maps.reshape(-1), flat, scores[box])
    return maps
