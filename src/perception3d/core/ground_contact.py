"""Where a 2D box says its object stands: the depth at which the ray through the middle of the box's bottom edge
meets the ground surface, and how far to trust it against the depth the box height gives (issue 16).

An object stands on the ground, and its 2D box's bottom edge is its nearest bottom corner: the ray through the middle
of that edge meets the ground at that corner's camera depth (over level ground every point of an image row lies at
one depth). The boxes are taken as amodal (the whole object, also where a nearer one hides its foot: boxes projected
from 3D annotations, as nuScenes' and the shipped detector2d's); a detector that boxes only what it sees ends an
occluded object's box above its foot, whose ray meets the ground beyond the object.

The box height gives a depth too, from the class's mean height (core.frustum.expected_depths): it is off by the
object's height against that mean, a relative error of the class's height std / mean height (0.11 for pedestrians,
0.27 for bicycles: a 0.8 m parked bicycle's box puts it 1.6 x too far). The contact depth's relative error is
`GroundParams.error_per_m` x depth / the camera's height above the ground (a height error dh of the surface where
the ray meets it moves the depth by dh x depth / camera height). The two are combined in log depth, each weighted by
its inverse squared relative error (`contact_weight`, `blend`): core.frustum chooses a box's object cluster by the
combined estimate (core.view_frustums; not for a box whose bottom edge lies near the image's bottom border, where the
object may be cut), and core.lift3d places boxes without LiDAR support with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import MIN_DEPTH_M
from .ground import GroundParams, GroundSurface, SweepGround

MIN_CAMERA_HEIGHT_M = 0.5  # a camera nearer the surface than this is taken at it (the relative error's denominator)


@dataclass(frozen=True)
class GroundContact:
    """A sweep's ground surface as the ground contacts of its boxes need it.

    Attributes:
        surface: the ground surface (base frame, z up).
        T_base_lidar: 4x4 LiDAR -> base transform.
        error_per_m: the surface's height error per metre of range [m/m] (GroundParams.error_per_m).
    """

    surface: GroundSurface
    T_base_lidar: np.ndarray
    error_per_m: float

    @classmethod
    def of(cls, split: SweepGround, T_base_lidar: np.ndarray, params: GroundParams) -> GroundContact | None:
        """The ground contact of a sweep's ground split (core.ground.sweep_ground with params): None where it found
        no surface."""
        if split.surface is None:
            return None
        return cls(split.surface, np.asarray(T_base_lidar, dtype=np.float64), params.error_per_m)

    def depths(self, boxes_norm: np.ndarray, T_base_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(depth (B,) [m], relative error (B,)) of the ground contacts of boxes (B, 4) in normalised image
        coordinates ((u - cx) / fx, (v - cy) / fy) seen by cameras T_base_cam ((B, 4, 4), camera -> base): the
        camera depth at which the ray through the middle of each box's bottom edge meets the surface; NaN (both)
        where it does not within reach or nearer than MIN_DEPTH_M."""
        rays = np.stack([0.5 * (boxes_norm[:, 0] + boxes_norm[:, 2]), boxes_norm[:, 3], np.ones(len(boxes_norm))],
                        axis=1)  # z = 1: the ray's parameter is the camera depth
        depth = self.surface.ray_hits(T_base_cam[:, :3, 3], np.einsum("nij,nj->ni", T_base_cam[:, :3, :3], rays))
        meets = np.isfinite(depth) & (depth > MIN_DEPTH_M)
        depth[~meets] = np.nan
        camera_height = T_base_cam[:, 2, 3] - self.surface.height_at(T_base_cam[:, :2, 3])
        return depth, self.error_per_m * depth / np.maximum(camera_height, MIN_CAMERA_HEIGHT_M)


def contact_weight(size_error: np.ndarray, contact_error: np.ndarray) -> np.ndarray:
    """The ground contact's weight (B,) in the log-depth combination with the box height's depth, from both
    relative errors (B,): its inverse squared error over the sum of both."""
    return size_error**2 / (size_error**2 + contact_error**2)


def blend(depth: np.ndarray, contact: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The factor (B,) that takes depths (B,) to their log-depth combination with the contact depths (B,) at
    weights (B,): exp(weight x log(contact / depth))."""
    return np.exp(weight * np.log(contact / depth))
