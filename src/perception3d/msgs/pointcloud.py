"""sensor_msgs/PointCloud2 <-> structured numpy arrays, without per-point Python loops.

Reading builds a numpy dtype from the PointFields (offsets, counts, byte order, itemsize = point_step) and views
the message's data buffer through it: no copy when rows are contiguous (row_step == width * point_step, as every
LiDAR driver and nuScenes converter writes). Writing lays a structured array's bytes into `data` in one copy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import PointCloudError
from .factory import MessageFactory, default_factory, stamp_to_ns

# sensor_msgs/PointField datatypes.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
DATATYPE_TO_DTYPE: dict[int, np.dtype] = {
    INT8: np.dtype("i1"), UINT8: np.dtype("u1"), INT16: np.dtype("i2"), UINT16: np.dtype("u2"),
    INT32: np.dtype("i4"), UINT32: np.dtype("u4"), FLOAT32: np.dtype("f4"), FLOAT64: np.dtype("f8"),
}
DTYPE_TO_DATATYPE: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in DATATYPE_TO_DTYPE.items()}

# nuScenes LIDAR_TOP layout: x, y, z, intensity, ring as float32 (point_step 20).
NUSCENES_LIDAR_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<f4")])


def pointfields_dtype(msg: Any, topic: str = "<unknown topic>") -> np.dtype:
    """The structured dtype described by a PointCloud2's fields, point_step and is_bigendian.

    Raises:
        PointCloudError: unknown datatype, a field outside point_step, a zero count or a duplicate name.
    """
    point_step = int(msg.point_step)
    if point_step <= 0:
        raise PointCloudError(topic, "point_step", f"is {point_step}", "a positive byte count")
    if len(msg.fields) == 0:
        raise PointCloudError(topic, "fields", "is empty", "at least one PointField such as x, y, z")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for i, f in enumerate(msg.fields):
        where = f"fields[{i}] ({f.name!r})"
        if f.datatype not in DATATYPE_TO_DTYPE:
            raise PointCloudError(topic, f"{where}.datatype", f"is {f.datatype}",
                                  "1..8 (INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64)")
        if f.count < 1:
            raise PointCloudError(topic, f"{where}.count", f"is {f.count}", "at least 1")
        if f.name in names:
            raise PointCloudError(topic, where, "duplicates an earlier field name", "unique field names")
        base = DATATYPE_TO_DTYPE[f.datatype].newbyteorder(order)
        size = base.itemsize * f.count
        if f.offset < 0 or f.offset + size > point_step:
            raise PointCloudError(topic, f"{where}.offset",
                                  f"places bytes {f.offset}..{f.offset + size} outside point_step {point_step}",
                                  f"offset + size <= point_step ({point_step})")
        names.append(f.name)
        formats.append(base if f.count == 1 else np.dtype((base, (f.count,))))
        offsets.append(f.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def pointcloud2_to_array(msg: Any, topic: str = "<unknown topic>") -> np.ndarray:
    """Structured array (height * width,) of a PointCloud2's points.

    The result is a read-only view of `msg.data` (zero-copy) when rows are contiguous; with padded rows
    (row_step > width * point_step) the rows are gathered into a new array.

    Raises:
        PointCloudError: inconsistent fields, point_step, row_step or data length.
    """
    dtype = pointfields_dtype(msg, topic)
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if row_step < width * point_step:
        raise PointCloudError(topic, "row_step", f"is {row_step}",
                              f"at least width * point_step = {width} * {point_step} = {width * point_step}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != row_step * height:
        raise PointCloudError(topic, "data", f"holds {data.size} bytes",
                              f"row_step * height = {row_step} * {height} = {row_step * height}")
    if height * width == 0:
        return np.zeros(0, dtype=dtype)
    if row_step == width * point_step:
        return np.frombuffer(data, dtype=dtype, count=height * width)
    rows = np.lib.stride_tricks.as_strided(
        data, shape=(height, width * point_step), strides=(row_step, 1), writeable=False)
    return np.ascontiguousarray(rows).view(dtype).reshape(-1)


def check_xyz_fields(dtype: np.dtype, topic: str = "<points>") -> None:
    """Raise PointCloudError unless the point dtype has x, y and z as single (count 1) numeric values."""
    for name in ("x", "y", "z"):
        if dtype.names is None or name not in dtype.names:
            raise PointCloudError(topic, "fields", f"lack {name!r}", "fields x, y and z")
        field_dtype = dtype.fields[name][0]
        if field_dtype.shape:
            raise PointCloudError(topic, f"fields ({name!r}).count", f"is {int(np.prod(field_dtype.shape))}",
                                  "1 (one coordinate per point)")


def xyz(points: np.ndarray, dtype: str = "f4") -> np.ndarray:
    """(N, 3) x, y, z coordinates of a structured point array (one small copy)."""
    check_xyz_fields(points.dtype)
    out = np.empty((points.shape[0], 3), dtype=dtype)
    out[:, 0], out[:, 1], out[:, 2] = points["x"], points["y"], points["z"]
    return out


def pointfields_from_dtype(dtype: np.dtype, factory: MessageFactory | None = None) -> list:
    """PointField messages describing a (little-endian) structured dtype."""
    factory = factory or default_factory()
    fields = []
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        base, count = (field_dtype.base, int(np.prod(field_dtype.shape))) if field_dtype.shape else (field_dtype, 1)
        key = (base.kind, base.itemsize)
        if key not in DTYPE_TO_DATATYPE:
            raise PointCloudError("<points>", name, f"has dtype {base}", "an 8..64-bit integer or float")
        fields.append(factory("sensor_msgs/msg/PointField", name=name, offset=int(offset),
                              datatype=DTYPE_TO_DATATYPE[key], count=count))
    return fields


def array_to_pointcloud2(points: np.ndarray, stamp_ns: int, frame_id: str,
                         factory: MessageFactory | None = None, is_dense: bool = True) -> Any:
    """An unorganised (height 1) PointCloud2 holding a structured array's points (one memory copy)."""
    factory = factory or default_factory()
    if points.dtype.names is None:
        raise PointCloudError("<points>", "dtype", f"is {points.dtype}", "a structured dtype with named fields")
    little = points.dtype.newbyteorder("<") if points.dtype.byteorder == ">" else points.dtype
    points = np.ascontiguousarray(points, dtype=little)
    data = points.reshape(-1).view(np.uint8)
    return factory(
        "sensor_msgs/msg/PointCloud2",
        header=factory.header(stamp_ns, frame_id),
        height=1,
        width=int(points.size),
        fields=pointfields_from_dtype(points.dtype, factory),
        is_bigendian=False,
        point_step=int(points.dtype.itemsize),
        row_step=int(points.dtype.itemsize * points.size),
        data=data,
        is_dense=is_dense,
    )


def labelled_pointcloud2(cloud_msg: Any, labels: np.ndarray, scores: np.ndarray,
                         factory: MessageFactory | None = None, topic: str = "<unknown topic>") -> Any:
    """The input cloud's points and fields plus `label` (uint8) and `score` (float32), with the input header.

    The input bytes of each point are kept as they are (its fields at their offsets, padding included); the two
    new fields follow at the end of each point.
    """
    factory = factory or default_factory()
    points = pointcloud2_to_array(cloud_msg, topic)
    n = points.size
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores).reshape(-1)
    if labels.size != n or scores.size != n:
        raise PointCloudError(topic, "label/score", f"have {labels.size}/{scores.size} values",
                              f"one per point ({n})")
    in_dtype = points.dtype
    if cloud_msg.is_bigendian:  # rewrite the input fields little-endian, as the output message declares
        in_dtype = in_dtype.newbyteorder("<")
        points = points.astype(in_dtype)
    step = in_dtype.itemsize
    out_dtype = np.dtype({
        "names": list(in_dtype.names) + ["label", "score"],
        "formats": [in_dtype.fields[k][0] for k in in_dtype.names] + ["u1", "<f4"],
        "offsets": [in_dtype.fields[k][1] for k in in_dtype.names] + [step, step + 4],
        "itemsize": step + 8,
    })
    out = np.zeros(n, dtype=out_dtype)
    out_bytes = out.view(np.uint8).reshape(n, step + 8)
    out_bytes[:, :step] = np.ascontiguousarray(points).view(np.uint8).reshape(n, step)
    out["label"] = labels
    out["score"] = scores
    return array_to_pointcloud2(out, stamp_to_ns(cloud_msg.header.stamp), cloud_msg.header.frame_id, factory,
                                bool(cloud_msg.is_dense))
