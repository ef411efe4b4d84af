"""The ego of the static fusion and motion track tests: 20 Hz sweeps, driving along world x at 6 m/s, its base frame
turned 0.3 rad and lifted 0.2 m against the world frame, so that a mix-up of the two frames shows."""
import numpy as np

from perception3d.core.geometry import invert_transform

SWEEP_NS = 50_000_000  # 20 Hz
EGO_SPEED = 6.0  # m/s along the world x axis
EGO_YAW = 0.3  # rad


def ego_pose(k: int) -> np.ndarray:
    """T_world_base at sweep k."""
    c, s = np.cos(EGO_YAW), np.sin(EGO_YAW)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = [EGO_SPEED * k * SWEEP_NS * 1e-9, 1.0, 0.2]
    return T


def in_base(k: int, world_points: np.ndarray) -> np.ndarray:
    """Points (N, 3) [m] of the world frame in the base frame at sweep k."""
    T_base_world = invert_transform(ego_pose(k))
    return np.asarray(world_points, dtype=np.float64).reshape(-1, 3) @ T_base_world[:3, :3].T + T_base_world[:3, 3]
