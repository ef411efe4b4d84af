"""The ground surface of a sweep, computed once per process for every node that needs it (issue 18).

detection3d and segmentation both split their sweep into ground and the rest (core.ground.sweep_ground, the most
expensive step both share). The first node of a process that asks for a sweep's ground computes it; the others get
the same result. A result is reused only for exactly the same input: the LiDAR frame and stamp, the points (compared
element by element with a copy kept of the first node's: 30x cheaper than hashing their bytes), the transform into
the base frame and the ground parameters; a node running alone, or with other parameters, computes its own. The few
most recent sweeps are kept (nodes of a graph ask within one sweep period of each other); a lock makes it safe for
nodes on several threads.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..core.ground import GroundParams, SweepGround, sweep_ground

RECENT_SWEEPS = 4


class SharedGround:
    """sweep_ground results of the most recent sweeps, by input (module docstring)."""

    def __init__(self, size: int = RECENT_SWEEPS) -> None:
        self._size = size
        self._recent: OrderedDict[tuple, tuple[np.ndarray, SweepGround]] = OrderedDict()  # key -> (points, split)
        self._lock = threading.Lock()
        self.computed = 0  # sweep_ground calls made (the others were shared)

    def get(self, points_lidar: np.ndarray, T_base_lidar: np.ndarray, params: GroundParams, frame_id: str,
            stamp_ns: int) -> SweepGround:
        """sweep_ground(points_lidar, T_base_lidar, params) of the sweep of frame_id at stamp_ns."""
        points = np.ascontiguousarray(points_lidar, dtype=np.float64)
        T = np.ascontiguousarray(T_base_lidar, dtype=np.float64)
        key = (frame_id, stamp_ns, points.shape, T.tobytes(), params)
        with self._lock:
            if key in self._recent and np.array_equal(self._recent[key][0], points):
                self._recent.move_to_end(key)
                return self._recent[key][1]
        split = sweep_ground(points, T, params)  # outside the lock: another sweep's node need not wait
        with self._lock:
            self.computed += 1
            self._recent[key] = (points.copy(), split)
            while len(self._recent) > self._size:
                self._recent.popitem(last=False)
        return split


SHARED_GROUND = SharedGround()  # one per process: the nodes of a graph in one process share it
