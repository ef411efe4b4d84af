"""A non-planar ground (world version 2): height h(x, y) of the road frame, and rays cast against it.

h = grade * x + bumps(x) + crown(y) + kerb step, in the road frame (x along the road, y to the left, metres):
- grade: a constant slope (dz per metre along the road's start heading);
- bumps: two gentle sinusoids along the road;
- crown: the road centre `crown_m` above its edges, parabolic across |y| < KERB_Y;
- kerb: a vertical step of `kerb_m` up at |y| = KERB_Y; sidewalk and everything beyond stay at that level.
x and y are the road frame's (`road_frame.RoadFrame`: arc length and lateral offset), except that the grade runs
along the road's start heading (so that the graded part is a plane also on a curved road); global z = h.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .road_frame import RoadFrame

KERB_Y = 7.5  # |y_road| of the kerb line [m]
KERB_FACE_M = 0.02  # ground points this close to the kerb line (road side) are on the kerb face [m]
_MARCH_STEPS = 8  # samples of the bracketing interval (finds the first crossing, e.g. the kerb face)
_BISECTIONS = 8  # halvings of the crossing interval after the march (then one linear interpolation)


@dataclass(frozen=True)
class GroundSurface:
    """Ground height in the road frame; all lengths [m], angles [rad]."""

    road: RoadFrame
    grade: float
    crown_m: float
    kerb_m: float
    bump_amplitude_m: tuple[float, float]
    bump_wavelength_m: tuple[float, float]
    bump_phase: tuple[float, float]

    @classmethod
    def random(cls, rng: np.random.Generator, road: RoadFrame) -> GroundSurface:
        """Grade 0-4 % either way, crown 0.05-0.1 m, kerb 0.10-0.18 m, bumps of 2-5 cm over 12-40 m."""
        return cls(road, float(rng.uniform(-0.04, 0.04)), float(rng.uniform(0.05, 0.1)),
                   float(rng.uniform(0.10, 0.18)), tuple(float(v) for v in rng.uniform(0.02, 0.05, 2)),
                   tuple(float(v) for v in rng.uniform(12.0, 40.0, 2)),
                   tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 2)))

    # ----- the surface ----------------------------------------------------------------------------------------
    def height_road(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground height [m] at road-frame points."""
        return self.grade * self.road.along_start(x, y) + self._bumps(x) + self._across(y)

    def height(self, xy_global: np.ndarray) -> np.ndarray:
        """Ground height (global z) [m] at global xy points (..., 2)."""
        xy_global = np.asarray(xy_global)
        x, y = self.road.to_road(xy_global)
        return self.grade * self.road.along_start_global(xy_global) + self._bumps(x) + self._across(y)

    def _bumps(self, x: np.ndarray) -> np.ndarray:
        (a1, a2), (l1, l2), (p1, p2) = self.bump_amplitude_m, self.bump_wavelength_m, self.bump_phase
        return a1 * np.sin(2 * np.pi * x / l1 + p1) + a2 * np.sin(2 * np.pi * x / l2 + p2)

    def _across(self, y: np.ndarray) -> np.ndarray:
        """Crown and kerb: the part of h that depends on y."""
        on_road = np.abs(y) < KERB_Y
        return np.where(on_road, self.crown_m * (1 - (y / KERB_Y) ** 2), self.kerb_m)

    def normals(self, points_global: np.ndarray) -> np.ndarray:
        """Unit upward normals (N, 3) in the global frame at ground points (N, 3); points on the kerb face (within
        KERB_FACE_M of the kerb line and below the sidewalk) get the horizontal normal facing the road."""
        x, y = self.road.to_road(points_global[:, :2])
        (a1, a2), (l1, l2), (p1, p2) = self.bump_amplitude_m, self.bump_wavelength_m, self.bump_phase
        dhdx = a1 * 2 * np.pi / l1 * np.cos(2 * np.pi * x / l1 + p1) + \
            a2 * 2 * np.pi / l2 * np.cos(2 * np.pi * x / l2 + p2)
        dhdy = np.where(np.abs(y) < KERB_Y, -2 * self.crown_m * y / KERB_Y ** 2, 0.0)
        heading = self.road.heading(x)
        tangent = np.column_stack([np.cos(heading), np.sin(heading)])
        left = np.column_stack([-np.sin(heading), np.cos(heading)])
        # gradient: grade along the start heading, d x / d p = tangent / (1 - k y), d y / d p = left normal
        grad = self.grade * np.array([np.cos(self.road.yaw), np.sin(self.road.yaw)]) + \
            (dhdx / (1 - self.road.curvature * y))[:, None] * tangent + dhdy[:, None] * left
        normal = np.column_stack([-grad, np.ones(len(x))])
        face = (np.abs(np.abs(y) - KERB_Y) < KERB_FACE_M) & \
            (points_global[:, 2] < self.height_road(x, np.sign(y) * (KERB_Y + 0.01)) - 0.005)
        normal[face] = np.column_stack([-np.sign(y[face])[:, None] * left[face], np.zeros(face.sum())])
        return (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32)

    # ----- rays -----------------------------------------------------------------------------------------------
    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Distance (N,) [m along the unit dirs] to the first ground crossing of rays from `origin` (3,) (global);
        inf where the ray does not descend relative to the graded plane.

        h lies between the graded plane plus the smallest and plus the largest rest (bumps, crown, kerb), which
        brackets the crossing; the bracket is marched in `_MARCH_STEPS` samples to the first sample below the
        ground, then bisected. Vectorised over rays."""
        o_along = self.road.along_start_global(np.asarray(origin)[:2])
        d_along = dirs[:, 0] * np.cos(self.road.yaw) + dirs[:, 1] * np.sin(self.road.yaw)
        bumps = sum(self.bump_amplitude_m)
        rest_lo, rest_hi = -bumps, bumps + max(self.crown_m, self.kerb_m)
        above = origin[2] - self.grade * o_along  # the origin's height over the graded plane through the road origin
        descent = dirs[:, 2] - self.grade * d_along  # < 0: the ray goes down relative to the plane
        with np.errstate(divide="ignore", invalid="ignore"):
            t_lo = np.maximum((rest_hi - above) / descent, 0.0)
            t_hi = (rest_lo - above) / descent
        ok = descent < 0
        t = np.full(len(dirs), np.inf, np.float32)
        if not ok.any():
            return t
        lo, hi = t_lo[ok].astype(np.float32), t_hi[ok].astype(np.float32)
        d = dirs[ok].astype(np.float32)
        o = np.asarray(origin, np.float64)

        def gap(tt):  # ray height above the ground at distance tt
            xy = np.column_stack([o[0] + tt * d[:, 0], o[1] + tt * d[:, 1]])
            return o[2] + tt * d[:, 2] - self.height(xy)

        step = (hi - lo) / _MARCH_STEPS
        below_at = np.full(len(lo), _MARCH_STEPS)
        for k in range(_MARCH_STEPS, 0, -1):  # the first sample below the ground wins
            below_at = np.where(gap(lo + k * step) <= 0, k, below_at)
        right = lo + below_at * step
        left = right - step
        for _ in range(_BISECTIONS):
            mid = 0.5 * (left + right)
            below = gap(mid) <= 0
            right = np.where(below, mid, right)
            left = np.where(below, left, mid)
        g_left, g_right = gap(left), gap(right)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.clip(np.nan_to_num(g_left / (g_left - g_right)), 0.0, 1.0)
        t[ok] = left + frac * (right - left)
        return t
