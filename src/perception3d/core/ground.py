"""Ground plane by RANSAC: the robust plane fit behind `driveable_surface` labels and ground removal.

Hypotheses (plane through 3 random low points) are scored all at once as a (hypotheses x sample) matrix, the
best one is refined by least squares on its inliers, and points within `distance_threshold` of the refined
plane are ground. Planes tilted more than `max_tilt_deg` from the given up direction are rejected.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroundParams:
    """Ground fit parameters: inlier distance [m], largest slope [deg], RANSAC seed."""

    threshold_m: float = 0.2
    max_tilt_deg: float = 10.0
    seed: int = 0


@dataclass(frozen=True)
class Plane:
    """Plane n.p + offset = 0 with unit normal n pointing up; `distance` is signed (positive above)."""

    normal: np.ndarray
    offset: float

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distances (N,) [m] of points (N, 3) from the plane."""
        return np.asarray(points, dtype=np.float64)[:, :3] @ self.normal + self.offset


def fit_ground_plane(points: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0), distance_threshold: float = 0.2,
                     max_tilt_deg: float = 10.0, iterations: int = 64, sample_size: int = 2048,
                     low_fraction: float = 0.4, seed: int = 0,
                     refine_points: int = 4096) -> tuple[Plane | None, np.ndarray]:
    """Fit the ground plane of a cloud and return it with the ground mask.

    Args:
        points: (N, 3) points in any frame [m].
        up: the gravity-up direction in that frame (e.g. row 2 of R_base_lidar for LiDAR points).
        distance_threshold: |distance| below which a point is ground [m].
        max_tilt_deg: hypotheses whose normal is further than this from `up` are rejected.
        iterations: number of 3-point hypotheses.
        sample_size: points used to score hypotheses (random subset of the candidates).
        low_fraction: hypotheses and scoring use the lowest fraction of points along `up` (ground is low).
        seed: random seed (the fit is deterministic for a given seed).
        refine_points: about this many inliers (an even subsample) refine the best hypothesis by least squares.
    Returns:
        (plane, mask (N,) bool); (None, all False) when fewer than 3 points or no hypothesis qualifies.
    """
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    n = len(pts)
    none = (None, np.zeros(n, dtype=bool))
    if n < 3:
        return none
    rng = np.random.default_rng(seed)
    height = pts @ up
    low = np.flatnonzero(height <= np.quantile(height, low_fraction))
    if len(low) < 3:
        return none
    scoring = pts[low[rng.integers(0, len(low), size=min(sample_size, len(low)))]]  # with replacement
    tri = pts[low[rng.integers(0, len(low), size=(iterations, 3))]]  # (H, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    normals = normals / np.where(norms > 1e-9, norms, 1.0)[:, None]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]
    ok = (norms > 1e-9) & (normals @ up >= np.cos(np.radians(max_tilt_deg)))
    if not np.any(ok):
        return none
    normals, tri = normals[ok], tri[ok]
    offsets = -np.einsum("hj,hj->h", normals, tri[:, 0])
    counts = (np.abs(scoring @ normals.T + offsets) < distance_threshold).sum(axis=0)
    best = int(np.argmax(counts))
    plane = Plane(normals[best], float(offsets[best]))
    # Least-squares refinement on the hypothesis' inliers among the low points (an even subsample of them).
    inliers = pts[low[np.abs(plane.distance(pts[low])) < distance_threshold]][::max(1, len(low) // refine_points)]
    if len(inliers) >= 3:
        centroid = inliers.mean(axis=0)
        normal = np.linalg.svd(inliers - centroid, full_matrices=False)[2][-1]
        normal = normal if normal @ up >= 0 else -normal
        if normal @ up >= np.cos(np.radians(max_tilt_deg)):
            plane = Plane(normal, float(-normal @ centroid))
    return plane, np.abs(plane.distance(pts)) < distance_threshold
