"""Simulated Velodyne HDL-32E (LIDAR_TOP): one sweep by ray casting against the world.

32 beams at elevations linspace(-30.67, +10.67) deg (ring 0 = lowest beam), `AZIMUTH_STEPS` firings per
rotation, all cast at the sweep timestamp (i.e. perfectly motion-compensated to the sweep time, as nuScenes
points are). Returns within [MIN_RANGE_M, MAX_RANGE_M] carry Gaussian range noise. Points are in the LIDAR_TOP
frame (whatever T_ego_sensor of the rig says); rows are (x, y, z, intensity 0..255, ring) float32 as `.pcd.bin`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.boxes import box_corners
from ..core.classes import LIDARSEG_FINE_CATEGORIES
from ..core.geometry import wrap_angle
from .raycast import KIND_BOX, cast, hit_labels, ray_boxes_t, take
from .rig import LidarSpec
from .world import World

ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
AZIMUTH_STEPS = 1085  # 32 x 1085 = 34,720 firings per sweep (HDL-32E at 20 Hz)
MAX_RANGE_M = 70.0
MIN_RANGE_M = 1.0
RANGE_NOISE_M = 0.02
_AZIMUTH_MARGIN = 0.05  # rad; covers the sensor's tilt against the ego frame
# Diffuse reflectivity (0..255 intensity at normal incidence) per fine category; unlisted ones get 40.
_REFLECTIVITY = {"flat.driveable_surface": 12, "flat.sidewalk": 30, "flat.terrain": 20, "flat.other": 25,
                 "static.manmade": 45, "static.vegetation": 35, "movable_object.trafficcone": 120,
                 "movable_object.barrier": 90, "vehicle.car": 60, "human.pedestrian.adult": 25}
REFLECTIVITY = np.array([_REFLECTIVITY.get(name, 40) for name in LIDARSEG_FINE_CATEGORIES], np.float32)


def beam_directions(azimuth_steps: int = AZIMUTH_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (32 * steps, 3) in the sensor frame and their ring index (0 = lowest beam)."""
    el = np.deg2rad(ELEVATIONS_DEG)[None, :]
    az = np.linspace(0.0, 2 * np.pi, azimuth_steps, endpoint=False)[:, None]
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                     np.broadcast_to(np.sin(el), (azimuth_steps, 32))], -1)
    ring = np.broadcast_to(np.arange(32), (azimuth_steps, 32))
    return dirs.reshape(-1, 3).astype(np.float32), ring.reshape(-1).astype(np.float32)


@dataclass
class LidarSweep:
    """One simulated sweep: points (N, 5) float32 (x, y, z, intensity, ring) in LIDAR_TOP, fine labels (N,) uint8,
    instance index (N,) int32 into world.tracks (-1 for scenery), T_global_sensor (4x4) at the sweep time, and
    optionally the visible fraction (len(world.tracks),) of every track."""

    points: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    T_global_sensor: np.ndarray
    visibility: np.ndarray | None = None


class LidarSimulator:
    def __init__(self, spec: LidarSpec, azimuth_steps: int = AZIMUTH_STEPS) -> None:
        self.spec = spec
        self.dirs_sensor, self.ring = beam_directions(azimuth_steps)

    def sweep(self, world: World, t: float, rng: np.random.Generator, with_visibility: bool = False) -> LidarSweep:
        """Cast all firings at scene time t [s]; `with_visibility` also fills `LidarSweep.visibility`."""
        T = world.ego_pose(t) @ self.spec.T_ego_sensor
        origin = T[:3, 3]
        dirs = self.dirs_sensor @ T[:3, :3].T.astype(np.float32)
        prims = world.primitives(t).near(origin[:2], MAX_RANGE_M + 5.0)
        candidates = self._azimuth_candidates(T)
        hits = cast(origin, dirs, prims, MAX_RANGE_M, candidates, world.ground)
        keep = np.flatnonzero(np.isfinite(hits.t) & (hits.t >= MIN_RANGE_M))
        rng_noise = rng.normal(0.0, RANGE_NOISE_M, keep.size).astype(np.float32)
        dist = hits.t[keep] + rng_noise
        global_pts = origin + dirs[keep] * hits.t[keep, None]
        labels = hit_labels(take(hits, keep), global_pts, prims, world.ground_labels)
        cos_inc = np.abs((dirs[keep] * hits.normal[keep]).sum(1))
        intensity = REFLECTIVITY[labels] * (0.3 + 0.7 * cos_inc) * rng.uniform(0.85, 1.15, keep.size)
        instances = np.where(hits.kind[keep] == KIND_BOX, prims.box_instances[np.maximum(hits.index[keep], 0)], -1)
        points = np.column_stack([self.dirs_sensor[keep] * dist[:, None], np.clip(intensity, 0, 255),
                                  self.ring[keep]]).astype(np.float32)
        sweep = LidarSweep(points, labels, instances.astype(np.int32), T)
        if with_visibility:
            sweep.visibility = _instance_visibility(origin, dirs, prims, sweep.instances, len(world.tracks),
                                                    candidates)
        return sweep

    def _azimuth_candidates(self, T_global_sensor: np.ndarray):
        """Culling for `cast`: the firings whose azimuth lies within a primitive's angular extent (+ margin)."""
        origin = T_global_sensor[:3, 3]
        sensor_yaw = np.arctan2(T_global_sensor[1, 0], T_global_sensor[0, 0])
        steps = len(self.dirs_sensor) // 32
        step = 2 * np.pi / steps
        beams = np.arange(32)

        def candidates(corners: np.ndarray):
            rel = corners[:, :2] - origin[:2]
            mid = np.arctan2(*rel.mean(0)[::-1])
            spread = wrap_angle(np.arctan2(rel[:, 1], rel[:, 0]) - mid)
            if np.ptp(spread) > np.pi * 0.9:
                return slice(None)
            lo = (mid - sensor_yaw + spread.min() - _AZIMUTH_MARGIN) / step
            hi = (mid - sensor_yaw + spread.max() + _AZIMUTH_MARGIN) / step
            az = np.arange(int(np.floor(lo)), int(np.ceil(hi)) + 1) % steps
            return (az[:, None] * 32 + beams).ravel()

        return candidates


def _instance_visibility(origin, dirs, prims, point_instances: np.ndarray, n_tracks: int,
                         candidates) -> np.ndarray:
    """Fraction (n_tracks,) of the firings that pass through each object (any of its boxes, which come in a row)
    that hit it first (occlusion as seen from the LiDAR, for the `visibility` table); 0 for objects no firing
    reaches. `candidates` culls the firings tested against an object, as in `cast`."""
    through = np.zeros(n_tracks)
    is_obj = np.flatnonzero(prims.box_instances >= 0)
    if is_obj.size:
        first = is_obj[np.r_[True, np.diff(prims.box_instances[is_obj]) != 0]]  # each object's first box
        corners = box_corners(prims.box_centers, prims.box_lwh, prims.box_yaws)
        for a, b in zip(first, np.r_[first[1:], is_obj[-1] + 1]):
            rays = candidates(corners[a:b].reshape(-1, 3))
            if rays is None:
                continue
            t = ray_boxes_t(origin, dirs[rays], prims.box_centers[a:b], prims.box_lwh[a:b], prims.box_yaws[a:b])
            through[prims.box_instances[a]] = np.any(t <= MAX_RANGE_M, axis=1).sum()
    seen = np.bincount(point_instances[point_instances >= 0], minlength=n_tracks)[:n_tracks]
    return np.where(through > 0, np.minimum(seen / np.maximum(through, 1), 1.0), 0.0)
