"""Dense voxel grid geometry: the axis-aligned grid every occupancy volume lives on.

Volumes are numpy arrays indexed [x, y, z]; the flat message index is x + size_x * (y + size_y * z), which is
Fortran (column-major) order of the [x, y, z] array.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelGrid:
    """An axis-aligned grid in some frame.

    Attributes:
        origin: (3,) position of the corner of voxel (0, 0, 0) (its minimum x, y, z) [m].
        resolution: edge length of a voxel [m].
        shape: (size_x, size_y, size_z) voxel counts.
    """

    origin: tuple[float, float, float]
    resolution: float
    shape: tuple[int, int, int]

    @classmethod
    def from_range(cls, point_cloud_range: tuple[float, float, float, float, float, float],
                   resolution: float) -> VoxelGrid:
        """The grid covering [xmin, ymin, zmin, xmax, ymax, zmax] at `resolution` metres per voxel."""
        lo = np.asarray(point_cloud_range[:3], dtype=np.float64)
        hi = np.asarray(point_cloud_range[3:], dtype=np.float64)
        shape = np.round((hi - lo) / resolution).astype(int)
        if np.any(shape <= 0):
            raise ValueError(f"empty voxel grid for range {point_cloud_range} at {resolution} m")
        return cls(tuple(float(v) for v in lo), float(resolution), tuple(int(v) for v in shape))

    def matches(self, other: VoxelGrid, atol: float = 1e-5) -> bool:
        """Same shape, and origin and resolution equal within `atol` metres (messages carry float32 sizes)."""
        return (tuple(self.shape) == tuple(other.shape) and abs(self.resolution - other.resolution) <= atol
                and bool(np.allclose(self.origin, other.origin, atol=atol)))

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape))

    def voxel_indices(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer (N, 3) voxel indices of points (N, 3) and a mask (N,) of those inside the grid."""
        idx = np.floor((np.asarray(points, dtype=np.float64)[:, :3] - np.asarray(self.origin)) /
                       self.resolution).astype(np.int64)
        # one unsigned comparison per axis (negative indices wrap to huge values), and no reduction along the
        # short axis (np.all(axis=1) on (N, 3) costs more than the floor)
        below = idx.view(np.uint64) < np.asarray(self.shape, dtype=np.uint64)
        return idx, below[:, 0] & below[:, 1] & below[:, 2]

    def centers(self, indices: np.ndarray) -> np.ndarray:
        """Centres (N, 3) [m] of voxels with integer indices (N, 3)."""
        return np.asarray(self.origin) + (np.asarray(indices, dtype=np.float64) + 0.5) * self.resolution

    def flat_index(self, indices: np.ndarray) -> np.ndarray:
        """Message data index x + size_x * (y + size_y * z) of integer voxel indices (N, 3)."""
        sx, sy, _ = self.shape
        indices = np.asarray(indices, dtype=np.int64)
        return indices[:, 0] + sx * (indices[:, 1] + sy * indices[:, 2])

    def indices_of(self, flat: np.ndarray) -> np.ndarray:
        """Integer voxel indices (N, 3) of message data indices (N,) (the inverse of flat_index)."""
        sx, sy, sz = self.shape
        z, y, x = np.unravel_index(np.asarray(flat, dtype=np.int64), (sz, sy, sx))
        return np.stack([x, y, z], axis=1)
