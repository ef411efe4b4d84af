"""PointCloud2 <-> structured numpy: layouts, zero-copy, padding, endianness, every datatype, malformed input."""
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception3d.errors import PointCloudError
from perception3d.msgs.factory import default_factory
from perception3d.msgs.pointcloud import (
    DATATYPE_TO_DTYPE,
    FLOAT32,
    NUSCENES_LIDAR_DTYPE,
    UINT8,
    array_to_pointcloud2,
    labelled_pointcloud2,
    pointcloud2_to_array,
    xyz,
)

F = default_factory()
TOPIC = "/LIDAR_TOP/points"


def cloud(fields, point_step, width, data, height=1, row_step=None, bigendian=False):
    """A PointCloud2 built by hand (independent of array_to_pointcloud2)."""
    return F("sensor_msgs/msg/PointCloud2", header=F.header(5, "LIDAR_TOP"), height=height, width=width,
             fields=[F("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
             is_bigendian=bigendian, point_step=point_step,
             row_step=width * point_step if row_step is None else row_step,
             data=np.frombuffer(bytes(data), dtype=np.uint8), is_dense=True)


def test_nuscenes_layout_decodes_struct_packed_bytes_zero_copy():
    values = [(1.0, 2.0, 3.0, 40.0, 7.0), (-1.5, 0.25, -2.0, 255.0, 31.0)]
    data = b"".join(struct.pack("<5f", *v) for v in values)
    msg = cloud([(n, 4 * i, FLOAT32, 1) for i, n in enumerate(["x", "y", "z", "intensity", "ring"])], 20, 2, data)
    pts = pointcloud2_to_array(msg, TOPIC)
    np.testing.assert_array_equal(pts["intensity"], [40.0, 255.0])
    np.testing.assert_array_equal(xyz(pts), [[1, 2, 3], [-1.5, 0.25, -2]])
    assert np.shares_memory(pts, msg.data)


def test_padding_inside_points_is_respected():
    # x at 0, 4 padding bytes, intensity (uint8) at 8, point_step 16 (as many drivers pad to 16 bytes).
    data = b"".join(struct.pack("<f4xB7x", float(i), i * 10) for i in range(3))
    msg = cloud([("x", 0, FLOAT32, 1), ("intensity", 8, UINT8, 1)], 16, 3, data)
    pts = pointcloud2_to_array(msg, TOPIC)
    np.testing.assert_array_equal(pts["x"], [0, 1, 2])
    np.testing.assert_array_equal(pts["intensity"], [0, 10, 20])


def test_row_padding_is_gathered_per_row():
    # Organised 2x2 cloud, each row padded with 6 bytes after its 2 points.
    rows = [struct.pack("<ff", 1, 2) + b"\xee" * 6, struct.pack("<ff", 3, 4) + b"\xee" * 6]
    msg = cloud([("x", 0, FLOAT32, 1)], 4, 2, b"".join(rows), height=2, row_step=14)
    np.testing.assert_array_equal(pointcloud2_to_array(msg, TOPIC)["x"], [1, 2, 3, 4])


def test_big_endian_fields():
    data = struct.pack(">fH2x", 1.5, 513)
    msg = cloud([("x", 0, FLOAT32, 1), ("ring", 4, 4, 1)], 8, 1, data, bigendian=True)
    pts = pointcloud2_to_array(msg, TOPIC)
    assert pts["x"][0] == 1.5 and pts["ring"][0] == 513


@pytest.mark.parametrize("datatype", sorted(DATATYPE_TO_DTYPE))
def test_every_datatype_round_trips_through_bytes(datatype):
    dt = DATATYPE_TO_DTYPE[datatype].newbyteorder("<")
    values = np.array([0, 1, 100, -3 if dt.kind in "if" else 7], dtype=dt)
    msg = cloud([("v", 0, datatype, 1)], dt.itemsize, 4, values.tobytes())
    np.testing.assert_array_equal(pointcloud2_to_array(msg, TOPIC)["v"], values)


def test_count_greater_than_one_becomes_a_subarray():
    data = np.arange(6, dtype="<f4").tobytes()
    msg = cloud([("rgb", 0, FLOAT32, 3)], 12, 2, data)
    np.testing.assert_array_equal(pointcloud2_to_array(msg, TOPIC)["rgb"], [[0, 1, 2], [3, 4, 5]])


def test_array_to_pointcloud2_round_trip_and_header():
    pts = np.zeros(10, dtype=NUSCENES_LIDAR_DTYPE)
    pts["x"] = np.arange(10)
    pts["ring"] = 3
    msg = array_to_pointcloud2(pts, 1_500_000_123, "LIDAR_TOP")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1, 500_000_123, "LIDAR_TOP")
    assert (msg.point_step, msg.row_step, msg.width, msg.height) == (20, 200, 10, 1)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7), ("ring", 16, 7)]
    np.testing.assert_array_equal(pointcloud2_to_array(msg), pts)


def test_labelled_cloud_keeps_input_bytes_and_appends_label_and_score():
    data = b"".join(struct.pack("<f4xB7x", float(i), i) for i in range(4))
    msg = cloud([("x", 0, FLOAT32, 1), ("intensity", 8, UINT8, 1)], 16, 4, data)
    out = labelled_pointcloud2(msg, np.array([4, 11, 0, 7]), np.array([0.9, 0.5, 0.0, 1.0]), topic=TOPIC)
    assert out.header.frame_id == "LIDAR_TOP" and out.header.stamp.nanosec == 5
    pts = pointcloud2_to_array(out)
    np.testing.assert_array_equal(pts["x"], [0, 1, 2, 3])
    np.testing.assert_array_equal(pts["intensity"], [0, 1, 2, 3])
    np.testing.assert_array_equal(pts["label"], [4, 11, 0, 7])
    np.testing.assert_allclose(pts["score"], [0.9, 0.5, 0.0, 1.0], rtol=1e-6)
    with pytest.raises(PointCloudError, match="one per point"):
        labelled_pointcloud2(msg, np.zeros(3), np.zeros(4), topic=TOPIC)


XYZ = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        (dict(fields=XYZ, point_step=12, width=2, data=b"\0" * 20), "data", "holds 20 bytes"),
        (dict(fields=XYZ, point_step=8, width=2, data=b"\0" * 16), "fields[2] ('z').offset", "outside point_step 8"),
        (dict(fields=[("x", 0, 9, 1)], point_step=4, width=1, data=b"\0" * 4), "fields[0] ('x').datatype", "is 9"),
        (dict(fields=[("x", 0, 0, 1)], point_step=4, width=1, data=b"\0" * 4), "fields[0] ('x').datatype", "is 0"),
        (dict(fields=[], point_step=4, width=1, data=b"\0" * 4), "fields", "is empty"),
        (dict(fields=XYZ, point_step=0, width=1, data=b""), "point_step", "is 0"),
        (dict(fields=XYZ, point_step=12, width=2, data=b"\0" * 24, row_step=12), "row_step", "is 12"),
        (dict(fields=[("x", 0, 7, 1), ("x", 4, 7, 1)], point_step=8, width=1, data=b"\0" * 8), "fields[1] ('x')",
         "duplicates"),
        (dict(fields=[("x", 0, 7, 0)], point_step=4, width=1, data=b"\0" * 4), "fields[0] ('x').count", "is 0"),
    ],
)
def test_malformed_clouds_raise_typed_errors_naming_topic_and_field(kwargs, field, message):
    with pytest.raises(PointCloudError) as info:
        pointcloud2_to_array(cloud(**kwargs), TOPIC)
    err = info.value
    assert err.source == TOPIC and err.field == field and message in str(err)
    assert str(err).startswith(f"{TOPIC}: field '{field}'")
    assert err.expected


@st.composite
def random_layouts(draw):
    n_fields = draw(st.integers(1, 5))
    fields, offset = [], 0
    for i in range(n_fields):
        datatype = draw(st.sampled_from(sorted(DATATYPE_TO_DTYPE)))
        count = draw(st.integers(1, 3))
        offset += draw(st.integers(0, 3))  # padding before the field
        fields.append((f"f{i}", offset, datatype, count))
        offset += DATATYPE_TO_DTYPE[datatype].itemsize * count
    point_step = offset + draw(st.integers(0, 4))
    width = draw(st.integers(0, 6))
    height = draw(st.integers(1, 3))
    row_pad = draw(st.integers(0, 5))
    return fields, point_step, width, height, row_pad, draw(st.booleans())


@given(random_layouts(), st.randoms(use_true_random=False))
def test_random_layouts_decode_to_what_struct_reads(layout, rnd):
    fields, point_step, width, height, row_pad, big = layout
    row_step = width * point_step + row_pad
    data = bytes(rnd.getrandbits(8) for _ in range(row_step * height))
    pts = pointcloud2_to_array(cloud(fields, point_step, width, data, height, row_step, big), TOPIC)
    assert pts.shape == (width * height,)
    order = ">" if big else "<"
    for idx in range(width * height):
        r, c = divmod(idx, width) if width else (0, 0)
        base = r * row_step + c * point_step
        for name, offset, datatype, count in fields:
            dt = DATATYPE_TO_DTYPE[datatype]
            expected = struct.unpack_from(f"{order}{count}{dt.char}", data, base + offset)
            got = np.atleast_1d(pts[name][idx])
            np.testing.assert_array_equal(got, np.array(expected, dtype=dt))


@given(random_layouts(), st.integers(-8, 8), st.integers(-3, 3), st.integers(0, 9))
def test_corrupted_layouts_raise_point_cloud_error_or_decode_consistently(layout, d_len, d_step, d_type):
    fields, point_step, width, height, row_pad, big = layout
    row_step = width * point_step + row_pad
    size = max(0, row_step * height + d_len)
    bad_fields = [(n, o, d_type if i == 0 and d_type else dt, c) for i, (n, o, dt, c) in enumerate(fields)]
    msg = cloud(bad_fields, point_step + d_step, width, b"\x01" * size, height, row_step, big)
    try:
        pts = pointcloud2_to_array(msg, TOPIC)
    except PointCloudError as err:
        assert err.source == TOPIC and err.field
        return
    # Accepted: then the layout really was consistent.
    assert size == row_step * height and row_step >= width * (point_step + d_step)
    assert pts.dtype.itemsize == point_step + d_step and pts.size == width * height
