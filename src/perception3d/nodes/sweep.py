"""What the LiDAR nodes share: the sweep's points with the vehicle's own returns removed, its transform into the
base frame, and each matched camera's detections and calibration as a `core.frustum.CameraView`."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.frustum import CameraView
from ..core.geometry import transform_points
from ..msgs.pointcloud import xyz
from .base import Frame, TransformLookup, lookup_across_time
from .params import Param

EGO_BOX_PARAM = Param(
    "ego_box_m", "float_array", [-1.0, -1.0, -0.6, 3.4, 1.0, 2.0],
    "points inside this box of base_frame [xmin, ymin, zmin, xmax, ymax, zmax] are the vehicle itself and are "
    "ignored [m] (nuScenes lidarseg class vehicle.ego)", -20.0, 20.0)

GEOMETRIC_MODE_PARAM = Param(
    "mode", "string", "geometric", "geometric: no trained weights (the learned mode is not built yet)",
    choices=("geometric",))

WORLD_FRAME_PARAM = Param(
    "world_frame", "string", "map",
    "fixed frame for ego-motion compensation between camera and LiDAR stamps; '' looks camera transforms up at the "
    "LiDAR stamp without compensation")


@dataclass
class Sweep:
    """One LiDAR sweep ready for the geometric algorithms.

    Attributes:
        points: (N, 3) float64 points in the LiDAR frame (all of the message's points, in message order).
        usable: (N,) finite points outside the ego box.
        T_base_lidar: 4x4 LiDAR -> base_frame at the sweep stamp.
        points_base: (N, 3) the points in base_frame.
    """

    points: np.ndarray
    usable: np.ndarray
    T_base_lidar: np.ndarray
    points_base: np.ndarray


def lidar_sweep(frame: Frame, tf: TransformLookup, base_frame: str, ego_box_m: Sequence[float]) -> Sweep:
    """The frame's sweep with its transform; `ego_box_m` as EGO_BOX_PARAM describes."""
    points = xyz(frame.lidar.points, dtype="f8")
    T_base_lidar = tf.lookup(base_frame, frame.lidar.frame_id, frame.stamp_ns)
    points_base = transform_points(T_base_lidar, points)
    lo, hi = np.asarray(ego_box_m[:3]), np.asarray(ego_box_m[3:])
    on_ego = np.all((points_base >= lo) & (points_base <= hi), axis=1)
    usable = np.isfinite(points).all(axis=1) & ~on_ego
    return Sweep(points, usable, T_base_lidar, points_base)


def camera_views(frame: Frame, tf: TransformLookup, world_frame: str) -> list[CameraView]:
    """A CameraView per matched camera with calibration and detections.

    With a world frame, T_cam_lidar maps the sweep (at its stamp) into the camera at the image stamp through it, so
    the ego motion between the two (up to ~45 ms on nuScenes) is compensated.
    """
    views = []
    for cam in frame.cameras.values():
        if cam.camera is None or cam.detections is None:
            continue
        if world_frame:
            T_cam_lidar = lookup_across_time(tf, cam.frame_id, cam.stamp_ns, frame.lidar.frame_id, frame.stamp_ns,
                                             world_frame)
        else:
            T_cam_lidar = tf.lookup(cam.frame_id, frame.lidar.frame_id, frame.stamp_ns)
        views.append(CameraView(cam.detections, cam.camera, T_cam_lidar))
    return views
