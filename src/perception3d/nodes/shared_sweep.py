"""A sweep's context, computed once per process for every node that needs it (issue 18): its ground surface
(core.ground.sweep_ground) and its object points as each camera sees them (core.view_frustums).

detection3d and segmentation both split their sweep into ground and the rest and both find the 2D boxes' frustum
clusters among the rest: the most expensive steps they share. The first node of a process that asks for a sweep
computes them; the others get the same results. A result is reused only for exactly the same input: the ground for
the same LiDAR frame and stamp, points (compared element by element with a copy kept of the first node's: 30x
cheaper than hashing their bytes), transform into the base frame and ground parameters; the frustums of that ground
for equal camera views (models, extrinsics and boxes) and cluster choice (core.frustum.ClusterParams.cluster_choice).
A node running alone, or with other parameters, computes its own. The few most recent sweeps are kept (nodes of a
graph ask within one sweep period of each other); locks make it safe for nodes on several threads.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ..core.camera import CameraModel
from ..core.frustum import CameraView, ClusterParams
from ..core.ground import GroundParams, SweepGround, sweep_ground
from ..core.ground_contact import GroundContact
from ..core.view_frustums import ViewFrustums, view_frustums

RECENT_SWEEPS = 4


class SweepContext:
    """One sweep's shared results: the ground split of its points (N, 3) [m, LiDAR frame], and its view frustums
    per camera views and cluster choice (with the ground contact of the split's surface: contact, None without
    one)."""

    def __init__(self, points: np.ndarray, split: SweepGround, contact: GroundContact | None) -> None:
        self.points, self.split, self.contact = points, split, contact
        self._frustums: list[tuple[tuple, list[CameraView], list[ViewFrustums | None]]] = []
        self._lock = threading.Lock()
        self.frustums_computed = 0  # view_frustums calls made (the others were shared)

    def frustums(self, views: Sequence[CameraView], params: ClusterParams) -> list[ViewFrustums | None]:
        """core.view_frustums of the sweep's non-ground points in views with params."""
        choice = params.cluster_choice
        with self._lock:
            for known_choice, known_views, result in self._frustums:
                if known_choice == choice and _same_views(known_views, views):
                    return result
        objects = np.compress(~self.split.is_ground, self.points, axis=0)
        result = view_frustums(objects, views, params, self.contact)  # outside the lock, as the ground
        with self._lock:
            self.frustums_computed += 1
            self._frustums.append((choice, list(views), result))
        return result


class SharedSweep:
    """The contexts of the most recent sweeps, by input (module docstring)."""

    def __init__(self, size: int = RECENT_SWEEPS) -> None:
        self._size = size
        self._recent: OrderedDict[tuple, SweepContext] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # sweep_ground calls made (the others were shared)

    def get(self, points_lidar: np.ndarray, T_base_lidar: np.ndarray, params: GroundParams, frame_id: str,
            stamp_ns: int) -> SweepContext:
        """The context of the sweep of frame_id at stamp_ns: its ground is sweep_ground(points_lidar, T_base_lidar,
        params)."""
        points = np.ascontiguousarray(points_lidar, dtype=np.float64)
        T = np.ascontiguousarray(T_base_lidar, dtype=np.float64)
        key = (frame_id, stamp_ns, points.shape, T.tobytes(), params)
        with self._lock:
            if key in self._recent and np.array_equal(self._recent[key].points, points):
                self._recent.move_to_end(key)
                return self._recent[key]
        split = sweep_ground(points, T, params)  # outside the lock: another sweep's node need not wait
        with self._lock:
            self.computed += 1
            self._recent[key] = context = SweepContext(points.copy(), split, GroundContact.of(split, T, params))
            while len(self._recent) > self._size:
                self._recent.popitem(last=False)
        return context


def _same_views(a: Sequence[CameraView], b: Sequence[CameraView]) -> bool:
    """Whether two camera view lists hold equal cameras, extrinsics and boxes (classes and scores included)."""
    return len(a) == len(b) and all(
        _same_camera(x.camera, y.camera) and np.array_equal(x.T_cam_lidar, y.T_cam_lidar)
        and np.array_equal(x.detections.boxes_xyxy, y.detections.boxes_xyxy)
        and np.array_equal(x.detections.class_ids, y.detections.class_ids)
        and np.array_equal(x.detections.scores, y.detections.scores) for x, y in zip(a, b))


def _same_camera(a: CameraModel, b: CameraModel) -> bool:
    return a is b or (a.width == b.width and a.height == b.height and a.frame_id == b.frame_id
                      and a.distortion_model == b.distortion_model and np.array_equal(a.K, b.K)
                      and np.array_equal(a.D, b.D) and np.array_equal(a.P, b.P))


SHARED_SWEEP = SharedSweep()  # one per process: the nodes of a graph in one process share it
