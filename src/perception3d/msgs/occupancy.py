"""perception3d_msgs/OccupancyGrid3D <-> uint8 volumes indexed [x, y, z]."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.geometry import matrix_to_quat_xyzw, quat_xyzw_to_matrix
from ..core.voxels import VoxelGrid
from ..errors import OccupancyGridError
from .factory import MessageFactory, default_factory, stamp_to_ns


def volume_to_occupancy_msg(volume: np.ndarray, grid: VoxelGrid, stamp_ns: int, frame_id: str,
                            factory: MessageFactory | None = None,
                            rotation: np.ndarray | None = None) -> Any:
    """An OccupancyGrid3D of a uint8 volume (size_x, size_y, size_z); `rotation` (3x3) orients the grid axes."""
    factory = factory or default_factory()
    volume = np.asarray(volume)
    if volume.shape != tuple(grid.shape) or volume.dtype != np.uint8:
        raise OccupancyGridError("<volume>", "data", f"is {volume.dtype} {volume.shape}",
                                 f"uint8 of shape {tuple(grid.shape)}")
    q = matrix_to_quat_xyzw(np.eye(3) if rotation is None else rotation)
    origin = factory(
        "geometry_msgs/msg/Pose",
        position=factory("geometry_msgs/msg/Point", x=grid.origin[0], y=grid.origin[1], z=grid.origin[2]),
        orientation=factory("geometry_msgs/msg/Quaternion", x=q[0], y=q[1], z=q[2], w=q[3]))
    info = factory("perception3d_msgs/msg/VoxelGridInfo", resolution=grid.resolution, size_x=grid.shape[0],
                   size_y=grid.shape[1], size_z=grid.shape[2], origin=origin)
    return factory("perception3d_msgs/msg/OccupancyGrid3D", header=factory.header(stamp_ns, frame_id),
                   info=info, data=volume.ravel(order="F"))


def occupancy_msg_to_volume(msg: Any, topic: str = "<unknown topic>") -> tuple[np.ndarray, VoxelGrid, int, str]:
    """(volume [x, y, z] uint8 view, grid, stamp_ns, frame_id) of an OccupancyGrid3D with axis-aligned origin.

    Raises:
        OccupancyGridError: non-positive resolution or sizes, data of the wrong length, or a rotated origin.
    """
    info = msg.info
    shape = (int(info.size_x), int(info.size_y), int(info.size_z))
    if not (info.resolution > 0 and np.isfinite(info.resolution)):
        raise OccupancyGridError(topic, "info.resolution", f"is {info.resolution}", "a positive voxel size [m]")
    if min(shape) <= 0:
        raise OccupancyGridError(topic, "info.size_x/y/z", f"is {shape}", "positive voxel counts")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != np.prod(shape):
        raise OccupancyGridError(topic, "data", f"holds {data.size} voxels",
                                 f"size_x * size_y * size_z = {int(np.prod(shape))}")
    o = info.origin.orientation
    q = np.array([o.x, o.y, o.z, o.w], dtype=np.float64)
    if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-9 or not np.allclose(
            quat_xyzw_to_matrix(q), np.eye(3), atol=1e-6):
        raise OccupancyGridError(topic, "info.origin.orientation", "is rotated", "identity (axis-aligned grid)")
    p = info.origin.position
    grid = VoxelGrid((float(p.x), float(p.y), float(p.z)), float(info.resolution), shape)
    return data.reshape(shape, order="F"), grid, stamp_to_ns(msg.header.stamp), str(msg.header.frame_id)
