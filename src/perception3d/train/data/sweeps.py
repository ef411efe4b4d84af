"""Multi-sweep point clouds: a LiDAR sweep plus its N previous sweeps, moved into the current sweep's LiDAR frame
through the ego poses (T_current_past = inv(T_global_lidar[current]) @ T_global_lidar[past]), with the time lag
[s] = current stamp - past stamp as the last channel (0 for the current sweep's points, which come first).
"""
from __future__ import annotations

import numpy as np

from ...core.geometry import invert_transform

POINT_CHANNELS = ("x", "y", "z", "intensity", "time_lag")


def stack_sweeps(points: list[np.ndarray], T_global_lidar: list[np.ndarray], stamps_us: list[int]) -> np.ndarray:
    """Points (P, 5) float32 (x, y, z [m] in the first sweep's LiDAR frame, intensity, time lag [s]) of sweeps
    given newest first: points[k] (N_k, >= 4) in its own LiDAR frame, its T_global_lidar (4x4) and stamp [us]."""
    T_current_global = invert_transform(T_global_lidar[0])
    out = []
    for cloud, T, stamp in zip(points, T_global_lidar, stamps_us):
        T_current_past = T_current_global @ T
        moved = np.empty((len(cloud), 5), np.float32)
        moved[:, :3] = cloud[:, :3].astype(np.float64) @ T_current_past[:3, :3].T + T_current_past[:3, 3]
        moved[:, 3] = cloud[:, 3]
        moved[:, 4] = (stamps_us[0] - stamp) * 1e-6
        out.append(moved)
    return np.concatenate(out) if out else np.zeros((0, 5), np.float32)
