"""Detection2D/3D arrays, OccupancyGrid3D, LabelInfo, MarkerArray and TF conversions, both ways."""
import numpy as np
import pytest

from perception3d.core.boxes import box_corners
from perception3d.core.detections import Detections2D, Detections3D
from perception3d.core.geometry import transform_from_quat_xyzw, yaw_to_quat_xyzw
from perception3d.core.voxels import VoxelGrid
from perception3d.errors import DetectionError, OccupancyGridError
from perception3d.msgs.detections import (
    detections2d_to_msg,
    detections3d_to_msg,
    msg_to_detections2d,
    msg_to_detections3d,
)
from perception3d.msgs.factory import default_factory
from perception3d.msgs.labels import label_info_msg, label_info_to_dict
from perception3d.msgs.markers import CUBE_LIST, DELETEALL, LINE_LIST, box_markers, voxel_markers
from perception3d.msgs.occupancy import occupancy_msg_to_volume, volume_to_occupancy_msg
from perception3d.msgs.tf import tf_message, tf_message_to_transforms, transform_stamped
from perception3d.msgs.typestore import typestore

F = default_factory()


def test_detection2d_array_uses_center_position_and_round_trips():
    dets = Detections2D([[10, 20, 110, 70], [0, 0, 5, 5]], ["car", "pedestrian"], [0.9, 0.4], "CAM_FRONT", 77,
                        ["a", ""])
    msg = detections2d_to_msg(dets)
    d0 = msg.detections[0]
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y, d0.bbox.size_x, d0.bbox.size_y) == (60, 45, 100, 50)
    assert d0.results[0].hypothesis.class_id == "car" and d0.header.frame_id == "CAM_FRONT"
    back = msg_to_detections2d(msg, "/CAM_FRONT/detections")
    np.testing.assert_allclose(back.boxes_xyxy, dets.boxes_xyxy)
    assert list(back.class_ids) == ["car", "pedestrian"] and list(back.ids) == ["a", ""]
    assert back.stamp_ns == 77 and back.frame_id == "CAM_FRONT"


def test_detection2d_array_serializes_each_box_with_its_own_values():
    dets = Detections2D([[10, 20, 110, 70], [0.5, 0, 5, 5.25], [7, 8, 9, 10]], ["car", "pedestrian", "cone"],
                        [0.9, 0.4, 0.125], "CAM_BACK", 5, ["1", "2", "3"])
    store = typestore()
    raw = store.serialize_cdr(detections2d_to_msg(dets), "vision_msgs/msg/Detection2DArray")
    back = msg_to_detections2d(store.deserialize_cdr(raw, "vision_msgs/msg/Detection2DArray"), "/CAM_BACK/detections")
    np.testing.assert_array_equal(back.boxes_xyxy, dets.boxes_xyxy)
    assert list(back.class_ids) == ["car", "pedestrian", "cone"] and list(back.scores) == [0.9, 0.4, 0.125]
    assert list(back.ids) == ["1", "2", "3"] and (back.frame_id, back.stamp_ns) == ("CAM_BACK", 5)


def test_top_hypothesis_is_read_when_several():
    msg = detections2d_to_msg(Detections2D([[0, 0, 1, 1]], ["car"], [0.3]))
    hyp = F("vision_msgs/msg/ObjectHypothesisWithPose",
            hypothesis=F("vision_msgs/msg/ObjectHypothesis", class_id="truck", score=0.8))
    msg.detections[0].results.append(hyp)
    back = msg_to_detections2d(msg)
    assert back.class_ids[0] == "truck" and back.scores[0] == 0.8


def test_detection3d_array_round_trip_sizes_and_yaw():
    dets = Detections3D([[5, 1, 0.5]], [[4.6, 1.9, 1.7]], [2.5], ["car"], [0.7], "base_link", 9, ids=["tok"])
    msg = detections3d_to_msg(dets)
    box = msg.detections[0].bbox
    assert (box.size.x, box.size.y, box.size.z) == (4.6, 1.9, 1.7)
    q = box.center.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], yaw_to_quat_xyzw(2.5))
    back = msg_to_detections3d(msg, "/detections")
    np.testing.assert_allclose(back.yaws, [2.5])
    np.testing.assert_allclose(back.sizes_lwh, dets.sizes_lwh)
    assert back.ids[0] == "tok" and back.frame_id == "base_link"


def test_detections3d_transformed_moves_corners_rigidly():
    dets = Detections3D([[5, 1, 0.5]], [[4, 2, 1.5]], [0.3], ["car"], [1.0], "LIDAR_TOP")
    T = transform_from_quat_xyzw([1, 2, 0.1], yaw_to_quat_xyzw(-np.pi / 2))
    moved = dets.transformed(T, "base_link")
    corners_before = box_corners(dets.centers, dets.sizes_lwh, dets.yaws)[0]
    expected = corners_before @ T[:3, :3].T + T[:3, 3]
    got = box_corners(moved.centers, moved.sizes_lwh, moved.yaws)[0]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert moved.frame_id == "base_link"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.detections[0].results.clear(), "detections[0].results"),
        (lambda m: setattr(m.detections[0].bbox, "size_x", -1.0), "detections[0].bbox"),
        (lambda m: setattr(m.detections[0].bbox.center.position, "x", float("nan")), "detections[0].bbox"),
    ],
)
def test_malformed_detection2d_raises(mutate, field):
    msg = detections2d_to_msg(Detections2D([[0, 0, 1, 1]], ["car"], [0.3]))
    mutate(msg)
    with pytest.raises(DetectionError) as info:
        msg_to_detections2d(msg, "/CAM_FRONT/detections")
    assert info.value.field == field and info.value.source == "/CAM_FRONT/detections"


def test_malformed_detection3d_raises():
    msg = detections3d_to_msg(Detections3D([[0, 0, 0]], [[1, 1, 1]], [0], ["car"], [1]))
    o = msg.detections[0].bbox.center.orientation
    o.x = o.y = o.z = o.w = 0.0
    with pytest.raises(DetectionError, match="orientation"):
        msg_to_detections3d(msg, "/x")


def test_occupancy_grid_index_convention_and_round_trip():
    grid = VoxelGrid((-2.0, -1.0, -0.5), 0.5, (4, 3, 2))
    volume = np.zeros(grid.shape, dtype=np.uint8)
    volume[3, 1, 1] = 4
    volume[0, 2, 0] = 255
    msg = volume_to_occupancy_msg(volume, grid, 5, "base_link")
    sx, sy = 4, 3
    assert msg.data[3 + sx * (1 + sy * 1)] == 4 and msg.data[0 + sx * (2 + sy * 0)] == 255
    assert np.count_nonzero(msg.data) == 2
    assert (msg.info.size_x, msg.info.size_y, msg.info.size_z, msg.info.resolution) == (4, 3, 2, 0.5)
    assert msg.info.origin.orientation.w == 1.0
    back, grid_back, stamp, frame = occupancy_msg_to_volume(msg, "/occupancy")
    np.testing.assert_array_equal(back, volume)
    assert grid_back == grid and stamp == 5 and frame == "base_link"


def test_occupancy_grid_flat_index_helper_matches_message_layout():
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (5, 4, 3))
    idx = np.array([[4, 3, 2], [1, 0, 0], [0, 2, 1]])
    np.testing.assert_array_equal(grid.flat_index(idx), [4 + 5 * (3 + 4 * 2), 1, 0 + 5 * (2 + 4 * 1)])


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: setattr(m, "data", np.zeros(5, np.uint8)), "data"),
        (lambda m: setattr(m.info, "resolution", 0.0), "info.resolution"),
        (lambda m: setattr(m.info, "size_z", 0), "info.size_x/y/z"),
        (lambda m: setattr(m.info.origin.orientation, "z", 1.0), "info.origin.orientation"),
    ],
)
def test_malformed_occupancy_raises(mutate, field):
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (2, 2, 2))
    msg = volume_to_occupancy_msg(np.zeros((2, 2, 2), np.uint8), grid, 0, "map")
    mutate(msg)
    with pytest.raises(OccupancyGridError) as info:
        occupancy_msg_to_volume(msg, "/occ")
    assert info.value.field == field


def test_label_info_from_list_and_dict():
    msg = label_info_msg(["free", "barrier"], 3, "base_link", 0.25)
    assert label_info_to_dict(msg) == {0: "free", 1: "barrier"}
    assert msg.threshold == 0.25
    assert label_info_to_dict(label_info_msg({255: "unknown", 4: "car"}, 0)) == {4: "car", 255: "unknown"}


def test_box_markers_start_with_delete_all_and_trace_the_12_edges():
    dets = Detections3D([[0, 0, 0], [5, 5, 1]], [[4, 2, 1]] * 2, [0, 1], ["car", "mystery"], [1, 1], "base_link", 1)
    markers = box_markers(dets).markers
    assert markers[0].action == DELETEALL
    assert [m.type for m in markers[1:]] == [LINE_LIST, LINE_LIST]
    pts = np.array([[p.x, p.y, p.z] for p in markers[1].points])
    assert pts.shape == (24, 3)
    corners = box_corners(dets.centers[:1], dets.sizes_lwh[:1], dets.yaws[:1])[0]
    # Every segment joins two corners that differ along exactly one box axis (an edge, not a diagonal).
    for a, b in pts.reshape(12, 2, 3):
        ia = np.argmin(np.linalg.norm(corners - a, axis=1))
        ib = np.argmin(np.linalg.norm(corners - b, axis=1))
        assert np.isclose(np.linalg.norm(corners[ia] - a), 0) and ia != ib
        assert np.isclose(np.linalg.norm(a - b), [4, 2, 1]).any()
    assert markers[2].color.r == pytest.approx(160 / 255)  # unknown class drawn grey


def test_voxel_markers_one_cube_list_with_per_cube_colours():
    centers = np.array([[0.2, 0.2, 0.2], [1.0, 0.2, 0.2]])
    palette = np.array([[255, 0, 0], [0, 0, 255]])
    markers = voxel_markers(centers, [0, 1], palette, 0.4, 10, "base_link").markers
    assert markers[0].action == DELETEALL and markers[1].type == CUBE_LIST
    assert len(markers[1].points) == 2 and markers[1].colors[1].b == 1.0 and markers[1].scale.x == 0.4


def test_markers_that_share_point_and_colour_messages_serialize_every_edge_and_cube_on_its_own():
    store = typestore()
    dets = Detections3D([[0, 0, 0], [5, 5, 1], [-3, 2, 0]], [[4, 2, 1], [1, 1, 2], [3, 2, 2]], [0, 1, -2],
                        ["car", "truck", "car"], [1, 1, 1], "base_link", 1)
    raw = store.serialize_cdr(box_markers(dets), "visualization_msgs/msg/MarkerArray")
    decoded = store.deserialize_cdr(raw, "visualization_msgs/msg/MarkerArray").markers  # one object per point
    edges = box_corners(dets.centers, dets.sizes_lwh, dets.yaws)[:, [0, 1, 1, 2, 2, 3, 3, 0, 4, 5, 5, 6, 6, 7, 7, 4,
                                                                      0, 4, 1, 5, 2, 6, 3, 7]]
    for i, marker in enumerate(decoded[1:]):
        assert marker.id == i + 1
        np.testing.assert_array_equal([[p.x, p.y, p.z] for p in marker.points], edges[i])
    centers = np.arange(15.0).reshape(5, 3)
    palette, labels = np.array([[7, 7, 7], [0, 0, 255], [255, 0, 0], [10, 20, 30]]), np.array([1, 2, 1, 3, 2])
    colors = palette[labels]
    raw = store.serialize_cdr(voxel_markers(centers, labels, palette, 0.4, 10, "base_link", alpha=0.5),
                              "visualization_msgs/msg/MarkerArray")
    cubes = store.deserialize_cdr(raw, "visualization_msgs/msg/MarkerArray").markers[1]
    np.testing.assert_array_equal([[p.x, p.y, p.z] for p in cubes.points], centers)
    np.testing.assert_array_equal([[c.r, c.g, c.b, c.a] for c in cubes.colors],
                                  np.c_[colors / 255.0, np.full(5, 0.5)].astype(np.float32))


def test_detection3d_hypotheses_carry_their_own_class_and_score_and_an_identity_pose():
    dets = Detections3D([[0, 0, 0], [5, 5, 1]], [[4, 2, 1]] * 2, [0, 1], ["car", "truck"], [0.25, 0.75],
                        "base_link", 1)
    store = typestore()
    raw = store.serialize_cdr(detections3d_to_msg(dets), "vision_msgs/msg/Detection3DArray")
    results = [d.results for d in store.deserialize_cdr(raw, "vision_msgs/msg/Detection3DArray").detections]
    assert [(r[0].hypothesis.class_id, r[0].hypothesis.score) for r in results] == [("car", 0.25), ("truck", 0.75)]
    for (result,) in results:
        pose = result.pose
        assert (pose.pose.orientation.w, pose.pose.position.x) == (1.0, 0.0) and not pose.covariance.any()


def test_tf_round_trip():
    T = transform_from_quat_xyzw([1, 2, 3], yaw_to_quat_xyzw(0.7))
    msg = tf_message([transform_stamped(T, "base_link", "LIDAR_TOP", 42)])
    [(parent, child, stamp, back)] = tf_message_to_transforms(msg)
    assert (parent, child, stamp) == ("base_link", "LIDAR_TOP", 42)
    np.testing.assert_allclose(back, T, atol=1e-12)


def test_voxel_grid_survives_the_float32_resolution_of_the_message():
    grid = VoxelGrid.from_range((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), 0.4)
    msg = volume_to_occupancy_msg(np.zeros(grid.shape, np.uint8), grid, 0, "base_link")
    wire = typestore().deserialize_cdr(typestore().serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    _, back, _, _ = occupancy_msg_to_volume(wire)
    assert back != grid and back.matches(grid)  # 0.4 is not exact in float32
    assert not back.matches(VoxelGrid(grid.origin, 0.2, grid.shape))
