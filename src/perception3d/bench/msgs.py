"""PointCloud2 decode: our zero-copy structured view against a per-point Python loop doing the same decode."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2, pointcloud2_to_array, xyz
from .common import format_table, time_call, write_results

POINT_COUNTS = (34_688, 300_000)


def decode_per_point_loop(msg) -> np.ndarray:
    """The naive decode many Python ROS nodes do: struct.unpack_from per point into a list, then an array."""
    data = bytes(msg.data)
    step = msg.point_step
    offsets = [(f.name, f.offset) for f in msg.fields]
    rows = []
    for i in range(msg.width * msg.height):
        base = i * step
        rows.append([struct.unpack_from("<f", data, base + off)[0] for _, off in offsets])
    return np.array(rows, dtype=np.float32)


def make_cloud(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pts = np.zeros(n, dtype=NUSCENES_LIDAR_DTYPE)
    for name in NUSCENES_LIDAR_DTYPE.names:
        pts[name] = rng.normal(size=n).astype(np.float32)
    return array_to_pointcloud2(pts, 0, "LIDAR_TOP")


def run(out_dir: Path) -> Path:
    rows, data = [], {}
    for n in POINT_COUNTS:
        msg = make_cloud(n)
        view = time_call(lambda msg=msg: pointcloud2_to_array(msg))
        view_xyz = time_call(lambda msg=msg: xyz(pointcloud2_to_array(msg)))
        loop = time_call(lambda msg=msg: decode_per_point_loop(msg), repeat=3, min_time_s=0.0)
        rows.append([f"{n:,}", f"{view['median_s'] * 1e6:.1f} us", f"{view_xyz['median_s'] * 1e3:.3f} ms",
                     f"{loop['median_s'] * 1e3:.0f} ms", f"{loop['median_s'] / view['median_s']:,.0f}x",
                     f"{loop['median_s'] / view_xyz['median_s']:,.0f}x"])
        data[str(n)] = {"view": view, "view_plus_xyz": view_xyz, "python_loop": loop}
    table = format_table(
        ["points", "structured view (zero-copy)", "view + xyz copy", "per-point Python loop",
         "speed-up (view)", "speed-up (view + xyz)"], rows)
    notes = ("Cloud layout: x, y, z, intensity, ring float32 (point_step 20), as nuScenes LIDAR_TOP. "
             "The loop decodes every field with struct.unpack_from; the view decodes nothing until a field is "
             "read, so 'view + xyz copy' (an (N, 3) float32 array) is the fair end-to-end comparison.")
    return write_results(out_dir, "msgs", "PointCloud2 decode (perception3d bench msgs)", table, data, notes)
