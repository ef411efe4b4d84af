"""Sensor firing times of the nuScenes rig, for scripted streams (tests, benchmarks, synthetic bags).

nuScenes LIDAR_TOP spins at 20 Hz; the six cameras run at 12 Hz and fire when the LiDAR sweeps past their field of
view, so a camera's stamp is the LiDAR stamp plus a per-camera offset. The offsets below are the camera minus
LIDAR_TOP stamps of one keyframe of log n015-2018-07-24-11-22-45+0800 (shared/reference/nuscenes-rig.json).
"""
from __future__ import annotations

import numpy as np

LIDAR_RATE_HZ = 20.0
CAMERA_RATE_HZ = 12.0
NUSCENES_CAMERA_OFFSETS_S: dict[str, float] = {
    "CAM_FRONT": -0.0355,
    "CAM_FRONT_RIGHT": -0.0276,
    "CAM_FRONT_LEFT": -0.0431,
    "CAM_BACK": -0.0104,
    "CAM_BACK_LEFT": -0.0005,
    "CAM_BACK_RIGHT": -0.0201,
}
CAMERA_NAMES: tuple[str, ...] = tuple(NUSCENES_CAMERA_OFFSETS_S)


def firing_stamps_ns(rate_hz: float, start_ns: int, end_ns: int, offset_ns: int = 0, jitter_ns: int = 0,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Sorted int64 stamps [ns] of a sensor firing at rate_hz from start_ns + offset_ns up to end_ns.

    jitter_ns adds uniform noise in [-jitter_ns, jitter_ns] to each stamp (rng required then); stamps stay unique.
    """
    period = 1e9 / rate_hz
    count = int(np.floor((end_ns - start_ns - offset_ns) / period)) + 1
    stamps = start_ns + offset_ns + np.round(np.arange(max(count, 0)) * period).astype(np.int64)
    if jitter_ns:
        if rng is None:
            raise ValueError("firing_stamps_ns: jitter_ns needs an rng")
        stamps = stamps + rng.integers(-jitter_ns, jitter_ns + 1, size=stamps.shape)
    return np.unique(stamps)
