"""Small hand-built scenes for the geometric core tests: a level front camera, a nuScenes-like LiDAR mount,
box surfaces sampled on their sensor-facing faces, ground grids and walls. Everything is built with
core.boxes / core.camera directly, independently of the code under test."""
from __future__ import annotations

import numpy as np

from perception3d.core.boxes import box_corners
from perception3d.core.camera import CameraModel, project_points
from perception3d.core.detections import Detections2D
from perception3d.core.frustum import CameraView
from perception3d.core.geometry import invert_transform, make_transform, transform_points

K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
# nuScenes LIDAR_TOP axes: x right, y forward (a -90 degree yaw from base_link), 1.84 m up.
T_BASE_LIDAR = make_transform(np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [0.94, 0.0, 1.84])
T_LIDAR_BASE = invert_transform(T_BASE_LIDAR)
_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical axes in a forward body


def camera_mount(yaw: float, translation=(1.7, 0.0, 1.5)) -> np.ndarray:
    """T_base_cam of a level camera looking `yaw` rad left of base +x."""
    c, s = np.cos(yaw), np.sin(yaw)
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return make_transform(Rz @ _OPTICAL, translation)


def camera(name: str = "CAM_FRONT") -> CameraModel:
    return CameraModel(K, 1600, 900, frame_id=name)


def projected_box(cam: CameraModel, T_base_cam, center, size_lwh, yaw) -> np.ndarray:
    """(4,) clipped 2D box of a base_link box, from its 8 corners (all must be in front of the camera)."""
    corners = transform_points(invert_transform(T_base_cam), box_corners(center, size_lwh, [yaw])[0])
    assert np.all(corners[:, 2] > 0.5)
    uv = project_points(cam, corners).uv
    box = np.r_[uv.min(axis=0), uv.max(axis=0)]
    return np.clip(box, 0, [cam.width, cam.height, cam.width, cam.height])


def view(cam: CameraModel, T_base_cam, boxes, classes, scores=None) -> CameraView:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.ones(len(boxes)) if scores is None else scores
    return CameraView(Detections2D(boxes, classes, scores, cam.frame_id), cam,
                      invert_transform(T_base_cam) @ T_BASE_LIDAR)


def box_surface_points(center, size_lwh, yaw, sensor_xyz, spacing=0.1) -> np.ndarray:
    """Points (base_link) on the faces of a box that face the sensor (what a LiDAR can hit), z > 0 faces only."""
    center, size = np.asarray(center, dtype=np.float64), np.asarray(size_lwh, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    sensor_local = R.T @ (np.asarray(sensor_xyz) - center)
    half = size / 2
    out = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            if axis == 2 and sign < 0:
                continue  # the bottom face is never seen
            if sign * sensor_local[axis] <= half[axis]:
                continue  # the face looks away from the sensor
            others = [a for a in range(3) if a != axis]
            g0 = np.arange(-half[others[0]], half[others[0]] + 1e-9, spacing)
            g1 = np.arange(-half[others[1]], half[others[1]] + 1e-9, spacing)
            a0, a1 = np.meshgrid(g0, g1, indexing="ij")
            local = np.zeros((a0.size, 3))
            local[:, axis] = sign * half[axis]
            local[:, others[0]] = a0.ravel()
            local[:, others[1]] = a1.ravel()
            out.append(local)
    return np.vstack(out) @ R.T + center


def ground_grid(extent=30.0, spacing=0.5, z=0.0) -> np.ndarray:
    g = np.arange(-extent, extent + 1e-9, spacing)
    x, y = np.meshgrid(g, g, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], axis=1)


def to_lidar(points_base: np.ndarray) -> np.ndarray:
    return transform_points(T_LIDAR_BASE, points_base)


def random_box_fit_problem(rng: np.random.Generator, box_of: np.ndarray, groups: int = 40, k: int = 16):
    """Point groups (groups, k, 3) [m] with a random number of valid points each (valid (groups, k)), and per
    candidate m of group box_of[m] (M,) a box near its group: centres (M, 3) [m], sizes (M, 3) [m], yaws (M,) [rad]."""
    points = rng.normal(0.0, 2.0, (groups, k, 3))
    valid = np.arange(k)[None, :] < rng.integers(0, k + 1, groups)[:, None]
    centers = points[box_of, 0] + rng.normal(0.0, 0.5, (len(box_of), 3))
    sizes, yaws = rng.uniform(0.3, 4.0, (len(box_of), 3)), rng.uniform(-np.pi, np.pi, len(box_of))
    return points, valid, centers, sizes, yaws


def box_frame_excess_one_by_one(points: np.ndarray, centers, sizes_lwh, yaws):
    """The straightforward |coordinate in box m's frame| - half size [m] of the gathered points (M, K, 3) of boxes
    (centres (M, 3), sizes (M, 3), yaws (M,)), (M, K) each along l, w and h: the reference for the point-major code."""
    p = points - centers[:, None, :]
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    return (np.abs(p[..., 0] * c + p[..., 1] * s) - 0.5 * sizes_lwh[:, 0:1],
            np.abs(p[..., 1] * c - p[..., 0] * s) - 0.5 * sizes_lwh[:, 1:2],
            np.abs(p[..., 2]) - 0.5 * sizes_lwh[:, 2:3])
