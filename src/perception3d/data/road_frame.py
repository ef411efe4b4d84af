"""The road frame of the synthetic world: where the road's centreline lies in the global frame.

Road coordinates: x = arc length along the centreline [m], y = lateral offset to its left [m]. The centreline
starts at `origin_xy` (x = 0) heading `yaw` [rad] and bends with a constant `curvature` [1/m] (0: a straight road,
> 0: bending left), so a point (x, y) lies at the centreline point of arc length x plus y along its left normal.
`along_start` is the coordinate of a point along the start heading (a fixed global direction).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoadFrame:
    origin_xy: tuple[float, float]
    yaw: float
    curvature: float = 0.0

    def heading(self, x: np.ndarray) -> np.ndarray:
        """Global yaw [rad] of the centreline at arc length x (unwrapped)."""
        return self.yaw + self.curvature * np.asarray(x)

    def _start_frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road (x, y) in the straight frame of the start (origin, yaw)."""
        k = self.curvature
        if k == 0.0:
            return x, y
        theta = k * x
        return np.sin(theta) * (1 / k - y), (1 - np.cos(theta)) / k + y * np.cos(theta)

    def along_start(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Coordinate [m] of road points along the start heading from the origin."""
        return self._start_frame(x, y)[0]

    def along_start_global(self, xy_global: np.ndarray) -> np.ndarray:
        """Coordinate [m] of global xy points (..., 2) along the start heading from the origin."""
        return (xy_global[..., 0] - self.origin_xy[0]) * np.cos(self.yaw) + \
            (xy_global[..., 1] - self.origin_xy[1]) * np.sin(self.yaw)

    def to_global(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global (x, y) of road points."""
        sx, sy = self._start_frame(np.asarray(x), np.asarray(y))
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return self.origin_xy[0] + sx * c - sy * s, self.origin_xy[1] + sx * s + sy * c

    def to_road(self, xy_global: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road (x, y) of global xy points (..., 2)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        dx = xy_global[..., 0] - self.origin_xy[0]
        dy = xy_global[..., 1] - self.origin_xy[1]
        sx, sy = dx * c + dy * s, -dx * s + dy * c
        k = self.curvature
        if k == 0.0:
            return sx, sy
        sign = np.sign(k)  # relative to the centre of curvature at (0, 1/k): r (sin theta, -cos theta), r = 1/k - y
        py = sy - 1 / k
        theta = np.arctan2(sign * sx, -sign * py)
        return theta / k, 1 / k - sign * np.hypot(sx, py)
