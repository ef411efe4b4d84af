"""Typestore registration from .msg files and the two-backend message factory."""
import array
from pathlib import Path

import numpy as np
import pytest

from perception3d.msgs import typestore as ts_module
from perception3d.msgs.factory import MessageFactory, default_factory, stamp_to_ns
from perception3d.msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2
from perception3d.msgs.typestore import typestore

REPO = Path(__file__).resolve().parents[1]


def test_vision_msgs_4_1_1_layout():
    fields = dict(typestore().fielddefs["vision_msgs/msg/Detection2D"][1])
    assert list(fields) == ["header", "results", "bbox", "id"]  # 4.x: no source_img
    assert [n for n, _ in typestore().fielddefs["vision_msgs/msg/Pose2D"][1]] == ["position", "theta"]
    assert [n for n, _ in typestore().fielddefs["vision_msgs/msg/LabelInfo"][1]] == ["header", "class_map",
                                                                                      "threshold"]
    assert [n for n, _ in typestore().fielddefs["vision_msgs/msg/ObjectHypothesis"][1]] == ["class_id", "score"]


def test_perception3d_msgs_come_from_the_ros2_workspace_only():
    source = REPO / "ros2_ws" / "src" / "perception3d_msgs" / "msg"
    assert ts_module.find_message_directory("perception3d_msgs") == source
    defs = ts_module.load_message_definitions("perception3d_msgs")
    assert defs["perception3d_msgs/msg/OccupancyGrid3D"] == (source / "OccupancyGrid3D.msg").read_text()
    # Never duplicated inside the source tree (the wheel build copies them; the checkout must not).
    copies = [p for p in (REPO / "src").rglob("*.msg") if p.name in ("OccupancyGrid3D.msg", "VoxelGridInfo.msg")]
    assert copies == []
    fields = [n for n, _ in typestore().fielddefs["perception3d_msgs/msg/VoxelGridInfo"][1]]
    assert fields == ["resolution", "size_x", "size_y", "size_z", "origin"]


def test_cdr_round_trip_of_a_vision_msg():
    f = default_factory()
    msg = f("vision_msgs/msg/LabelInfo", header=f.header(3_000_000_007, "x"),
            class_map=[f("vision_msgs/msg/VisionClass", class_id=7, class_name="car")], threshold=0.5)
    data = typestore().serialize_cdr(msg, msg.__msgtype__)
    back = typestore().deserialize_cdr(data, msg.__msgtype__)
    assert back.class_map[0].class_name == "car" and stamp_to_ns(back.header.stamp) == 3_000_000_007


def test_rosbags_factory_fills_defaults_and_rejects_unknown_fields():
    f = default_factory()
    q = f("geometry_msgs/msg/Quaternion")
    assert (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)  # ROS 2 default orientation is identity
    info = f("sensor_msgs/msg/CameraInfo")
    assert info.k.shape == (9,) and info.d.shape == (0,) and info.roi.width == 0
    with pytest.raises(TypeError, match="no field"):
        f("std_msgs/msg/Header", frame="x")
    with pytest.raises(ValueError, match="unknown message backend"):
        MessageFactory("ros1")


class _FakeRclpyMessage:
    """Test double of a generated rclpy message class: attribute assignment like rosidl's setters."""

    def __init__(self, msgtype):
        self.msgtype = msgtype


def test_rclpy_backend_hands_sequences_over_as_array_array(monkeypatch):
    made = []

    def message_class(msgtype):
        made.append(msgtype)
        return lambda: _FakeRclpyMessage(msgtype)

    f = MessageFactory("rclpy", message_class=message_class)
    pts = np.zeros(3, dtype=NUSCENES_LIDAR_DTYPE)
    pts["x"] = [1, 2, 3]
    msg = array_to_pointcloud2(pts, 2_000_000_001, "LIDAR_TOP", factory=f)
    assert msg.msgtype == "sensor_msgs/msg/PointCloud2"
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    assert bytes(msg.data) == pts.tobytes()
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (2, 1)
    assert "sensor_msgs/msg/PointField" in made
    cam = f("sensor_msgs/msg/CameraInfo", k=[1, 0, 0, 0, 1, 0, 0, 0, 1], d=np.array([0.1, 0.2]))
    assert isinstance(cam.k, np.ndarray) and cam.k.dtype == np.float64  # fixed-size arrays are numpy in rclpy
    assert isinstance(cam.d, array.array) and cam.d.typecode == "d" and list(cam.d) == [0.1, 0.2]


def test_many_builds_flat_messages_row_by_row_on_both_backends():
    xyz = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    points = default_factory().many("geometry_msgs/msg/Point", x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2])
    assert [(p.x, p.y, p.z) for p in points] == [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]
    assert points[0].__msgtype__ == "geometry_msgs/msg/Point"

    class FakePoint:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    rclpy_points = MessageFactory("rclpy", message_class=lambda t: FakePoint).many(
        "geometry_msgs/msg/Point", x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2])
    assert [(p.x, p.y, p.z) for p in rclpy_points] == [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]
    with pytest.raises(TypeError, match="every field of geometry_msgs/msg/Point or a template"):
        default_factory().many("geometry_msgs/msg/Point", x=xyz[:, 0], y=xyz[:, 1])
    with pytest.raises(ValueError, match="different lengths"):
        default_factory().many("geometry_msgs/msg/Point", x=xyz[:, 0], y=xyz[:, 1], z=xyz[:1, 2])


def test_many_with_a_template_equals_like_per_row_on_both_backends():
    """Nested and sequence fields in bulk, the fields not given from a template: the messages `like` makes one by
    one (same CDR bytes, the template's objects shared, sequences copied)."""
    f = default_factory()
    marker = "visualization_msgs/msg/Marker"
    template = f(marker, header=f.header(5, "base_link"), ns="n", type=5, scale=f("geometry_msgs/msg/Vector3", x=0.1))
    points = f.many("geometry_msgs/msg/Point", x=np.arange(4.0), y=np.ones(4), z=np.zeros(4))
    colors = f.many("std_msgs/msg/ColorRGBA", r=np.array([1.0, 0.5]), g=np.zeros(2), b=np.zeros(2), a=np.ones(2))
    edges = [points[:2], tuple(points[2:])]
    bulk = f.many(marker, template, id=np.array([3, 4]), color=colors, points=edges, text=["a", ""])
    single = [f.like(marker, template, id=i, color=c, points=p, text=t)
              for i, c, p, t in zip([3, 4], colors, edges, ["a", ""])]
    store = typestore()
    assert [bytes(store.serialize_cdr(m, marker)) for m in bulk] == [bytes(store.serialize_cdr(m, marker))
                                                                       for m in single]
    assert type(bulk[0].id) is int and bulk[1].points == list(points[2:]) and bulk[0].points is not edges[0]
    assert bulk[0].scale is template.scale and template.points == []
    poses = f.many("geometry_msgs/msg/Pose", position=points[:2], orientation=f.many(
        "geometry_msgs/msg/Quaternion", x=np.zeros(2), y=np.zeros(2), z=np.zeros(2), w=np.ones(2)))
    assert poses[1].position is points[1] and poses[0].orientation.w == 1.0
    assert f.many(marker, template, id=[]) == []
    with pytest.raises(TypeError, match="no|template"):
        f.many(marker, template, idx=[1])
    with pytest.raises(TypeError, match="template"):
        f.many(marker, template)
    rclpy = MessageFactory("rclpy", message_class=lambda t: lambda: _FakeRclpyMessage(t))
    base = rclpy("sensor_msgs/msg/CameraInfo", height=4)
    rows = rclpy.many("sensor_msgs/msg/CameraInfo", base, width=np.array([6, 7]), d=[np.array([0.5]), [0.25]])
    assert [(m.height, m.width, list(m.d)) for m in rows] == [(4, 6, [0.5]), (4, 7, [0.25])]
    assert isinstance(rows[0].d, array.array) and not hasattr(base, "width")


def test_like_copies_a_template_with_some_fields_changed_on_both_backends():
    f = default_factory()
    store = typestore()
    header = f.header(5, "base_link")
    template = f("visualization_msgs/msg/Marker", header=header, ns="n", type=5,
                 scale=f("geometry_msgs/msg/Vector3", x=0.1))
    points = f.many("geometry_msgs/msg/Point", x=np.array([1.0, 2.0]), y=np.zeros(2), z=np.zeros(2))
    copied = f.like("visualization_msgs/msg/Marker", template, id=7, points=points, colors=[])
    fresh = f("visualization_msgs/msg/Marker", header=header, ns="n", type=5, id=7, points=points, colors=[],
              scale=f("geometry_msgs/msg/Vector3", x=0.1))
    marker = "visualization_msgs/msg/Marker"
    assert bytes(store.serialize_cdr(copied, marker)) == bytes(store.serialize_cdr(fresh, marker))
    assert template.id == 0 and template.points == [] and copied.scale is template.scale  # template untouched
    with pytest.raises(TypeError, match="no field"):
        f.like("visualization_msgs/msg/Marker", template, idx=1)
    rclpy = MessageFactory("rclpy", message_class=lambda t: lambda: _FakeRclpyMessage(t))
    base = rclpy("sensor_msgs/msg/CameraInfo", height=4)
    other = rclpy.like("sensor_msgs/msg/CameraInfo", base, d=np.array([0.5]))
    assert other.height == 4 and list(other.d) == [0.5] and not hasattr(base, "d")
