"""Array-based detection sets, the ROS-free form of vision_msgs Detection2DArray / Detection3DArray."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import arctan2


def _strings(values, n: int) -> np.ndarray:
    out = np.asarray(list(values) if values is not None else [""] * n, dtype=object)
    return out.reshape(n)


@dataclass
class Detections2D:
    """N axis-aligned image boxes of one camera.

    Attributes:
        boxes_xyxy: (N, 4) float64 pixel boxes (x0, y0, x1, y1) in full-resolution image pixels.
        class_ids: (N,) object array of lower-case class names.
        scores: (N,) float64 in [0, 1].
        frame_id: the camera's optical frame.
        stamp_ns: image stamp [ns].
        ids: (N,) object array of tracking ids ('' when none).
    """

    boxes_xyxy: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    frame_id: str = ""
    stamp_ns: int = 0
    ids: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(self.boxes_xyxy)
        self.class_ids = _strings(self.class_ids, n)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(n)
        self.ids = _strings(self.ids, n)

    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    @classmethod
    def empty(cls, frame_id: str = "", stamp_ns: int = 0) -> Detections2D:
        return cls(np.zeros((0, 4)), [], np.zeros(0), frame_id, stamp_ns)

    def with_class_map(self, mapping: dict[str, str]) -> Detections2D:
        """Class ids translated by {from: to} (ids without an entry unchanged); ids mapped to '' are dropped."""
        if not mapping:
            return self
        classes = np.array([mapping.get(c, c) for c in self.class_ids], dtype=object)
        keep = classes != ""
        out = self.select(keep)
        out.class_ids = classes[keep]
        return out

    def select(self, mask: np.ndarray) -> Detections2D:
        """The detections where `mask` (boolean or index array) selects."""
        return Detections2D(self.boxes_xyxy[mask], self.class_ids[mask], self.scores[mask], self.frame_id,
                            self.stamp_ns, self.ids[mask])


@dataclass
class Detections3D:
    """N yaw-rotated 3D boxes in one frame.

    Attributes:
        centers: (N, 3) box centres [m].
        sizes_lwh: (N, 3) full extents along the box axes (x=l, y=w, z=h) [m].
        yaws: (N,) rotation about +z [rad].
        class_ids: (N,) object array of lower-case class names.
        scores: (N,) in [0, 1].
        frame_id: frame of the boxes.
        stamp_ns: source stamp [ns].
        velocities: (N, 2) xy velocity in frame_id [m/s] (NaN when unknown).
        ids: (N,) object array of tracking / instance ids ('' when none).
        attributes: (N,) object array of nuScenes attribute names, e.g. 'vehicle.parked' ('' when none).
    """

    centers: np.ndarray
    sizes_lwh: np.ndarray
    yaws: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    frame_id: str = ""
    stamp_ns: int = 0
    velocities: np.ndarray | None = field(default=None)
    ids: np.ndarray | None = field(default=None)
    attributes: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.centers = np.asarray(self.centers, dtype=np.float64).reshape(-1, 3)
        n = len(self.centers)
        self.sizes_lwh = np.asarray(self.sizes_lwh, dtype=np.float64).reshape(n, 3)
        self.yaws = np.asarray(self.yaws, dtype=np.float64).reshape(n)
        self.class_ids = _strings(self.class_ids, n)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(n)
        if self.velocities is None:
            self.velocities = np.full((n, 2), np.nan)
        self.velocities = np.asarray(self.velocities, dtype=np.float64).reshape(n, 2)
        self.ids = _strings(self.ids, n)
        self.attributes = _strings(self.attributes, n)

    def __len__(self) -> int:
        return len(self.centers)

    @classmethod
    def empty(cls, frame_id: str = "", stamp_ns: int = 0) -> Detections3D:
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), [], np.zeros(0), frame_id, stamp_ns)

    def select(self, mask: np.ndarray) -> Detections3D:
        """The detections where `mask` (boolean or index array) selects."""
        return Detections3D(self.centers[mask], self.sizes_lwh[mask], self.yaws[mask], self.class_ids[mask],
                            self.scores[mask], self.frame_id, self.stamp_ns, self.velocities[mask],
                            self.ids[mask], self.attributes[mask])

    def then(self, other: Detections3D) -> Detections3D:
        """These boxes, then other's (same frame; this one's frame_id and stamp)."""
        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(self, name), getattr(other, name)])

        return Detections3D(joined("centers"), joined("sizes_lwh"), joined("yaws"), joined("class_ids"),
                            joined("scores"), self.frame_id, self.stamp_ns, joined("velocities"), joined("ids"),
                            joined("attributes"))

    def long_axes(self) -> np.ndarray:
        """(N, 2) unit vectors along each box's longer footprint side (its length, or its width where that is
        longer: a barrier's long side runs across its yaw), in frame_id."""
        yaws = self.yaws + np.where(self.sizes_lwh[:, 0] >= self.sizes_lwh[:, 1], 0.0, np.pi / 2)
        return np.column_stack([np.cos(yaws), np.sin(yaws)])

    def transformed(self, T_target_source: np.ndarray, target_frame: str) -> Detections3D:
        """The same boxes expressed in another frame (T_target_source 4x4).

        The new yaw is the heading of the rotated box x-axis; boxes stay gravity-aligned, so a transform with
        roll or pitch (a few hundredths of a radian for LiDAR mounts) tilts nothing but the heading.
        """
        T = np.asarray(T_target_source, dtype=np.float64)
        centers = self.centers @ T[:3, :3].T + T[:3, 3]
        heading = np.stack([np.cos(self.yaws), np.sin(self.yaws), np.zeros(len(self))], axis=1) @ T[:3, :3].T
        yaws = arctan2(heading[:, 1], heading[:, 0])
        vel3 = np.hstack([self.velocities, np.zeros((len(self), 1))]) @ T[:3, :3].T
        return Detections3D(centers, self.sizes_lwh.copy(), yaws, self.class_ids.copy(), self.scores.copy(),
                            target_frame, self.stamp_ns, vel3[:, :2], self.ids.copy(),
                            self.attributes.copy())
