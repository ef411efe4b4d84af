"""Pinhole camera model and projection into images.

Camera frames are optical (REP-103): x right, y down, z forward. Pixel coordinates (u, v) have u to the right and
v down; integer coordinates are pixel centres (the ROS CameraInfo / OpenCV convention that nuScenes K follows).
A point is in the image when 0 <= u < width and 0 <= v < height.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Points closer than this to the image plane are treated as behind the camera [m].
MIN_DEPTH_M = 0.1


@dataclass(frozen=True)
class CameraModel:
    """A calibrated pinhole camera: rectified (undistorted) images are assumed for projection.

    Attributes:
        K: 3x3 intrinsic matrix [px].
        width, height: image size [px].
        D: distortion coefficients (empty for rectified images such as nuScenes).
        distortion_model: 'plumb_bob', 'rational_polynomial', 'equidistant' or '' when D is empty.
        P: 3x4 projection matrix of the rectified image; [K|0] when not given.
        frame_id: the optical frame of the camera.
    """

    K: np.ndarray
    width: int
    height: int
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = ""
    P: np.ndarray | None = None
    frame_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", np.asarray(self.K, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "D", np.asarray(self.D, dtype=np.float64).reshape(-1))
        if self.P is None:
            object.__setattr__(self, "P", np.hstack([self.K, np.zeros((3, 1))]))
        else:
            object.__setattr__(self, "P", np.asarray(self.P, dtype=np.float64).reshape(3, 4))

    @property
    def K_inv(self) -> np.ndarray:  # noqa: N802 (K is the standard name)
        """Inverse of K."""
        return np.linalg.inv(self.K)


class Pinhole(Protocol):
    """What projection needs of a camera: intrinsics K (3, 3) [px] and the image size [px] (CameraModel, and
    core.box_points.CameraBoxes)."""

    K: np.ndarray
    width: int
    height: int


@dataclass(frozen=True)
class Projection:
    """Result of projecting N camera-frame points.

    Attributes:
        uv: (N, 2) pixel coordinates (meaningless where `in_front` is False).
        depth: (N,) z in the camera frame [m].
        in_front: (N,) depth > the minimum depth (MIN_DEPTH_M unless the caller gives another).
        in_image: (N,) in front and inside [0, width) x [0, height).
    """

    uv: np.ndarray
    depth: np.ndarray
    in_front: np.ndarray
    in_image: np.ndarray


def project_points(camera: Pinhole, points_cam: np.ndarray, min_depth: float = MIN_DEPTH_M) -> Projection:
    """Project (N, 3) points given in the camera's optical frame into its image; points not more than min_depth [m]
    in front of it are behind it."""
    p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    depth = p[:, 2]
    in_front = depth > min_depth
    safe = np.where(in_front, depth, 1.0)
    uvw = np.asarray(camera.K, dtype=np.float64) @ p.T  # (3, N): divided along rows of N (geometry.transform_points)
    uv = (uvw[:2] / safe).T
    in_image = (
        in_front
        & (uv[:, 0] >= 0.0) & (uv[:, 0] < camera.width)
        & (uv[:, 1] >= 0.0) & (uv[:, 1] < camera.height)
    )
    return Projection(uv=uv, depth=depth, in_front=in_front, in_image=in_image)


def backproject_pixels(camera: CameraModel, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) at the given depths [m] (z) along the rays of pixels (N, 2)."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    rays = np.hstack([uv, np.ones((uv.shape[0], 1))]) @ camera.K_inv.T
    return rays * np.asarray(depth, dtype=np.float64).reshape(-1, 1)
