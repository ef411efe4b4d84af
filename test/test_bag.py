"""rosbag2 I/O: our MCAP writer checked message for message by a second implementation (mcap + mcap-ros2-support),
metadata v8 with real QoS, sqlite3 reading, clean close on error, and clear errors for unreadable bags."""
import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import StoragePlugin, Writer

from perception3d.core.camera import CameraModel
from perception3d.core.detections import Detections2D, Detections3D
from perception3d.core.voxels import VoxelGrid
from perception3d.errors import BagError
from perception3d.msgs.bag import BagReader, BagWriter
from perception3d.msgs.camera_info import camera_model_to_camera_info
from perception3d.msgs.detections import detections2d_to_msg, detections3d_to_msg
from perception3d.msgs.image import compressed_image_msg, encode_jpeg
from perception3d.msgs.labels import label_info_msg
from perception3d.msgs.markers import box_markers
from perception3d.msgs.occupancy import volume_to_occupancy_msg
from perception3d.msgs.pointcloud import NUSCENES_LIDAR_DTYPE, array_to_pointcloud2
from perception3d.msgs.qos import LATCHED, OUTPUT, SENSOR
from perception3d.msgs.tf import tf_message, transform_stamped
from perception3d.msgs.typestore import typestore


def _messages():
    """(topic, stamp_ns, msg, qos) of every message type we write, with distinctive contents."""
    rng = np.random.default_rng(0)
    pts = np.zeros(50, dtype=NUSCENES_LIDAR_DTYPE)
    for name in NUSCENES_LIDAR_DTYPE.names:
        pts[name] = rng.normal(size=50)
    cam = CameraModel(np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]]), 1600, 900, frame_id="CAM_FRONT")
    grid = VoxelGrid((-1.0, -1.0, 0.0), 0.5, (4, 4, 2))
    volume = rng.integers(0, 17, grid.shape).astype(np.uint8)
    d3 = Detections3D([[5, 1, 0.5], [9, -3, 1]], [[4.6, 1.9, 1.7], [0.7, 0.7, 1.8]], [0.2, -1.0],
                      ["car", "pedestrian"], [0.9, 0.6], "base_link", 1_000_000_100)
    return [
        ("/tf_static", 1_000_000_000, tf_message([transform_stamped(np.eye(4), "base_link", "LIDAR_TOP",
                                                                    1_000_000_000)]), LATCHED),
        ("/LIDAR_TOP/points", 1_000_000_100, array_to_pointcloud2(pts, 1_000_000_100, "LIDAR_TOP"), SENSOR),
        ("/CAM_FRONT/image/compressed", 1_000_000_200,
         compressed_image_msg(encode_jpeg(np.full((8, 8, 3), 128, np.uint8)), 1_000_000_200, "CAM_FRONT"), SENSOR),
        ("/CAM_FRONT/camera_info", 1_000_000_200, camera_model_to_camera_info(cam, 1_000_000_200), SENSOR),
        ("/CAM_FRONT/detections", 1_000_000_200,
         detections2d_to_msg(Detections2D([[1, 2, 30, 40]], ["car"], [0.8], "CAM_FRONT", 1_000_000_200)), OUTPUT),
        ("/detections", 1_000_000_100, detections3d_to_msg(d3), OUTPUT),
        ("/occupancy", 1_000_000_100, volume_to_occupancy_msg(volume, grid, 1_000_000_100, "base_link"), OUTPUT),
        ("/detections/label_info", 1_000_000_100, label_info_msg(["car", "pedestrian"], 1_000_000_100), LATCHED),
        ("/detections/markers", 1_000_000_100, box_markers(d3), OUTPUT),
    ]


def read_with_mcap(path):
    """(channel, log_time_ns, schema, decoded message) of every message, decoded by mcap-ros2-support."""
    with open(path, "rb") as f:
        return [(c, m.log_time, s, d) for s, c, m, d in
                make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]


def _same(ours, theirs, path="msg"):
    """Recursively compare a rosbags message with an mcap-ros2-support decoded one."""
    if hasattr(ours, "__msgtype__"):
        for name, _ in typestore().fielddefs[ours.__msgtype__][1]:  # fields only, not constants
            _same(getattr(ours, name), getattr(theirs, name), f"{path}.{name}")
    elif isinstance(ours, np.ndarray):
        np.testing.assert_array_equal(ours, np.asarray(list(theirs) if not isinstance(theirs, bytes) else
                                                       np.frombuffer(theirs, np.uint8)), err_msg=path)
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(ours, float):  # float32 fields were rounded on the wire
        assert theirs == pytest.approx(ours, rel=1e-6), path
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


@pytest.fixture(scope="module")
def written_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "out"
    msgs = _messages()
    with BagWriter(path, custom_data={"perception3d.test": "v1"}) as writer:
        for topic, stamp, msg, qos in msgs:
            writer.write(topic, stamp, msg, qos)
    return path, msgs


def test_second_implementation_decodes_every_message(written_bag):
    path, msgs = written_bag
    decoded = read_with_mcap(path / "out.mcap")
    assert len(decoded) == len(msgs)
    decoded.sort(key=lambda d: (d[1], d[0].topic))
    for (topic, stamp, msg, _), (channel, log_time, schema, theirs) in zip(sorted(msgs, key=lambda m: m[1::-1]),
                                                                           decoded):
        assert (channel.topic, log_time, schema.name) == (topic, stamp, msg.__msgtype__)
        _same(msg, theirs)


def test_metadata_is_version_8_with_offered_qos(written_bag):
    path, _ = written_bag
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    assert meta["custom_data"] == {"perception3d.test": "v1"}
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in meta["topics_with_message_count"]}
    static_qos = yaml.safe_load(topics["/tf_static"]["offered_qos_profiles"])[0]
    sensor_qos = yaml.safe_load(topics["/LIDAR_TOP/points"]["offered_qos_profiles"])[0]
    assert (static_qos["reliability"], static_qos["durability"]) == (1, 1)  # reliable, transient local
    assert (sensor_qos["reliability"], sensor_qos["durability"], sensor_qos["depth"]) == (2, 2, 5)


def test_our_reader_returns_time_ordered_decodable_messages(written_bag):
    path, msgs = written_bag
    with BagReader(path) as reader:
        assert reader.message_count == len(msgs)
        assert reader.topics["/occupancy"] == "perception3d_msgs/msg/OccupancyGrid3D"
        stamps = [m.stamp_ns for m in reader.messages()]
        assert stamps == sorted(stamps)
        only = list(reader.messages(["/detections"]))
        assert len(only) == 1 and only[0].decode().detections[1].results[0].hypothesis.class_id == "pedestrian"
        with pytest.raises(BagError, match=r"missing topic\(s\) \['/nope'\]"):
            list(reader.messages(["/nope"]))


def test_sqlite3_bags_are_read_too(tmp_path):
    store = typestore()
    msg = label_info_msg(["car"], 5)
    with Writer(tmp_path / "sq", version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/labels", msg.__msgtype__, typestore=store)
        writer.write(conn, 5, store.serialize_cdr(msg, msg.__msgtype__))
    with BagReader(tmp_path / "sq") as reader:
        [m] = list(reader.messages())
        assert m.decode().class_map[0].class_name == "car" and m.stamp_ns == 5


def test_bag_stays_readable_after_an_exception_mid_write(tmp_path):
    path = tmp_path / "crash"
    with pytest.raises(RuntimeError), BagWriter(path) as writer:
        for i in range(3):
            writer.write("/labels", 10 + i, label_info_msg(["car"], 10 + i))
        raise RuntimeError("node crashed")
    assert [log_time for _, log_time, _, _ in read_with_mcap(path / "crash.mcap")] == [10, 11, 12]
    with BagReader(path) as reader:
        assert reader.message_count == 3


def test_writer_refuses_to_overwrite(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "exists")


def test_unreadable_bags_raise_bag_error(tmp_path, written_bag):
    with pytest.raises(BagError, match="no such bag"):
        BagReader(tmp_path / "missing")
    with pytest.raises(BagError, match="is a file"):
        BagReader(written_bag[0] / "out.mcap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a readable rosbag2"):
        BagReader(tmp_path / "empty")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "metadata.yaml").write_text((written_bag[0] / "metadata.yaml").read_text())
    data = (written_bag[0] / "out.mcap").read_bytes()
    (truncated / "out.mcap").write_bytes(data[: len(data) // 2])
    with BagReader(truncated) as reader:  # rosbags cannot open it: read record by record, damage listed
        assert reader.record_by_record and reader.damage
        assert 0 < len(list(reader.messages())) == reader.message_count
