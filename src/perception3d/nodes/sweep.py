"""What the LiDAR nodes share: the sweep's points with the vehicle's own returns removed, its transform into the
base frame, and each matched camera's detections and calibration as a `core.frustum.CameraView`.

Several LiDARs: the first of `lidar_names` triggers; for nodes that merge LiDARs the host adds the newest sweep of
each other LiDAR stamped at or before the trigger sweep (Frame.extra_lidars), and `lidar_sweep` moves its points
into the trigger LiDAR's frame at the trigger stamp through the world frame, T = inv(T_world_trigger(t_trigger)) @
T_world_other(t_other), so the ego motion between the two sweeps is compensated (not the motion of other objects).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.lib.recfunctions as rfn

from ..core.box_points import CameraBoxes
from ..core.classes import DETECTION_CLASSES
from ..core.frustum import CameraView, finite_rows
from ..core.geometry import transform_points
from ..msgs.pointcloud import xyz
from .base import Frame, LidarInput, TransformLookup, lookup_across_time
from .params import Param

EGO_BOX_PARAM = Param(
    "ego_box_m", "float_array", [-1.0, -1.0, -0.6, 3.4, 1.0, 2.0],
    "points inside this box of base_frame [xmin, ymin, zmin, xmax, ymax, zmax] are the vehicle itself and are "
    "ignored [m] (nuScenes lidarseg class vehicle.ego)", -20.0, 20.0)

LEARNED_MODE_PARAM = Param(
    "mode", "string", "geometric",
    "geometric: no trained weights; learned: the network of model_path (empty = the checkpoint shipped with the "
    "package, trained on the synthetic world only) run as backend/device/precision/threads say",
    choices=("geometric", "learned"))

WORLD_FRAME_PARAM = Param(
    "world_frame", "string", "map",
    "fixed frame for ego-motion compensation between camera and LiDAR stamps; '' looks camera transforms up at the "
    "LiDAR stamp without compensation")


@dataclass
class Sweep:
    """One LiDAR sweep ready for the geometric algorithms.

    Attributes:
        points: (N, 3) float64 points in the (trigger) LiDAR frame: all of the message's points in message order,
            then those of each merged LiDAR (Frame.extra_lidars order).
        usable: (N,) finite points outside the ego box.
        T_base_lidar: 4x4 LiDAR -> base_frame at the sweep stamp.
        points_base: (N, 3) the points in base_frame.
        intensity: (N,) float32 `intensity` field of the cloud (zeros when it has none).
        merged_cloud: with merged LiDARs, the (N,) structured points with x, y, z in the trigger LiDAR frame (the
            trigger's fields when every cloud has them, else x, y, z only); None for a single LiDAR.
    """

    points: np.ndarray
    usable: np.ndarray
    T_base_lidar: np.ndarray
    points_base: np.ndarray
    intensity: np.ndarray
    merged_cloud: np.ndarray | None = None

    def usable_rows(self, values: np.ndarray) -> np.ndarray:
        """The rows of a per-point array (N, ...) of the usable points (np.compress: ~3x faster than a mask index
        on (N, 3) arrays)."""
        return np.compress(self.usable, values, axis=0)



def _merge(trigger: LidarInput, stamp_ns: int, others: Sequence[LidarInput], tf: TransformLookup,
           world_frame: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 points of the trigger and the other LiDARs in the trigger frame at stamp_ns, and the merged
    structured cloud (module docstring)."""
    points = [xyz(trigger.points, dtype="f8")]
    for other in others:
        if world_frame:
            T = lookup_across_time(tf, trigger.frame_id, stamp_ns, other.frame_id, other.stamp_ns, world_frame)
        else:
            T = tf.lookup(trigger.frame_id, other.frame_id, stamp_ns)
        points.append(transform_points(T, xyz(other.points, dtype="f8")))
    clouds = [trigger.points, *(o.points for o in others)]
    dtype = trigger.points.dtype
    if not all(c.dtype == dtype for c in clouds):
        dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    merged = np.concatenate([rfn.repack_fields(np.asarray(c)[list(dtype.names)]).astype(dtype) for c in clouds])
    all_points = np.concatenate(points)
    for i, name in enumerate("xyz"):
        merged[name] = all_points[:, i]
    return all_points, merged


def lidar_sweep(frame: Frame, tf: TransformLookup, base_frame: str, ego_box_m: Sequence[float],
                world_frame: str = "map") -> Sweep:
    """The frame's sweep (with Frame.extra_lidars merged into it) and its transform; `ego_box_m` as EGO_BOX_PARAM
    describes, `world_frame` as WORLD_FRAME_PARAM."""
    merged = None
    if frame.extra_lidars:
        points, merged = _merge(frame.lidar, frame.stamp_ns, list(frame.extra_lidars.values()), tf, world_frame)
    else:
        points = xyz(frame.lidar.points, dtype="f8")
    T_base_lidar = tf.lookup(base_frame, frame.lidar.frame_id, frame.stamp_ns)
    points_base = transform_points(T_base_lidar, points)
    lo, hi = np.asarray(ego_box_m[:3]), np.asarray(ego_box_m[3:])
    on_ego = np.ones(len(points), dtype=bool)
    for axis in range(3):  # column by column: numpy's loops over rows of 3 cost several times more
        on_ego &= (points_base[:, axis] >= lo[axis]) & (points_base[:, axis] <= hi[axis])
    usable = finite_rows(points) & ~on_ego
    cloud = frame.lidar.points if merged is None else merged
    intensity = (np.asarray(cloud["intensity"], dtype=np.float32) if cloud.dtype.names and "intensity" in
                 cloud.dtype.names else np.zeros(len(points), dtype=np.float32))
    return Sweep(points, usable, T_base_lidar, points_base, intensity, merged)


def camera_views(frame: Frame, tf: TransformLookup, world_frame: str) -> list[CameraView]:
    """A CameraView per matched camera with calibration and detections.

    With a world frame, T_cam_lidar maps the sweep (at its stamp) into the camera at the image stamp through it, so
    the ego motion between the two (up to ~45 ms on nuScenes) is compensated.
    """
    views = []
    T_world_lidar = None  # the sweep's pose, looked up once for all cameras
    for cam in frame.cameras.values():
        if cam.camera is None or cam.detections is None:
            continue
        if world_frame:
            if T_world_lidar is None:
                T_world_lidar = tf.lookup(world_frame, frame.lidar.frame_id, frame.stamp_ns)
            T_cam_lidar = lookup_across_time(tf, cam.frame_id, cam.stamp_ns, frame.lidar.frame_id, frame.stamp_ns,
                                             world_frame, T_world_lidar)
        else:
            T_cam_lidar = tf.lookup(cam.frame_id, frame.lidar.frame_id, frame.stamp_ns)
        views.append(CameraView(cam.detections, cam.camera, T_cam_lidar))
    return views


def camera_boxes(frame: Frame, tf: TransformLookup, world_frame: str,
                 T_lidar_points: np.ndarray | None = None) -> list[CameraBoxes]:
    """The matched cameras' 2D boxes and calibration (camera_views) as core.box_points.CameraBoxes for points in the
    LiDAR frame, or in another frame given T_lidar_points (that frame -> LiDAR); box classes outside the detection
    classes get -1 (not used)."""
    boxes = []
    for view in camera_views(frame, tf, world_frame):
        dets = view.detections
        classes = np.array([DETECTION_CLASSES.index(c) if c in DETECTION_CLASSES else -1 for c in dets.class_ids],
                           dtype=np.int64)
        T = view.T_cam_lidar if T_lidar_points is None else view.T_cam_lidar @ T_lidar_points
        boxes.append(CameraBoxes(view.camera.K, T, view.camera.width, view.camera.height, dets.boxes_xyxy, classes,
                                 dets.scores))
    return boxes
