"""Bag runtime acceptance: one output per sweep at the sweep stamp, partial sets, bad input, Ctrl-C."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from perception3d.cli import main as cli_main
from perception3d.errors import BagError, ConfigError
from perception3d.msgs.bag import BagReader
from perception3d.msgs.factory import stamp_to_ns
from perception3d.msgs.labels import label_info_to_dict
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import Graph, GraphNode, NodeNotImplementedError
from replay_fixtures import (
    OBJECTS_TOPIC,
    TEST_GRAPH,
    expected_centroid_base,
    start_slow_replay,
    write_nuscenes_timed_bag,
)

ROOT = Path(__file__).resolve().parents[1]


def read_mcap(out: Path) -> list[tuple[str, int, object]]:
    """(topic, log time, decoded message) of every message, read with the `mcap` readers (not rosbags)."""
    (mcap_file,) = out.glob("*.mcap")
    with mcap_file.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(channel.topic, message.log_time, decoded)
                for _, channel, message, decoded in reader.iter_decoded_messages()]


@pytest.fixture(scope="module")
def full_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "nuscenes_timed"
    stamps = write_nuscenes_timed_bag(path, duration_s=1.0)
    return path, stamps


def objects(messages):
    return [(t, m) for topic, t, m in messages if topic == OBJECTS_TOPIC]


def test_one_output_per_sweep_stamped_with_the_sweep(full_bag, tmp_path):
    bag, stamps = full_bag
    out = tmp_path / "out"
    assert cli_main(["replay", str(bag), "--out", str(out), "--graph-def", "replay_fixtures:TEST_GRAPH",
                     "--no-progress"]) == 0
    messages = read_mcap(out)
    outs = objects(messages)
    assert [t for t, _ in outs] == [int(s) for s in stamps["lidar"]]
    for k, (t, msg) in enumerate(outs):
        assert stamp_to_ns(msg.header.stamp) == t and msg.header.frame_id == "base_link"
        assert sorted(d.id for d in msg.detections) == sorted(c for c in stamps if c != "lidar")
        c = msg.detections[0].bbox.center.position
        np.testing.assert_allclose([c.x, c.y, c.z], expected_centroid_base(k), atol=1e-4)
    topics = {topic for topic, _, _ in messages}
    assert {"/tf", "/tf_static", f"{OBJECTS_TOPIC}/label_info"} <= topics
    assert "/LIDAR_TOP/points" not in topics  # inputs are only copied on request
    label = next(m for topic, _, m in messages if topic == f"{OBJECTS_TOPIC}/label_info")
    assert label_info_to_dict(label) == {0: "car"}
    with BagReader(out) as reader:  # the rosbag2 metadata is complete too
        assert reader.topics[OBJECTS_TOPIC] == "vision_msgs/msg/Detection3DArray"


def test_removed_camera_gives_partial_sets(tmp_path):
    bag = tmp_path / "five_cams"
    cams = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
    stamps = write_nuscenes_timed_bag(bag, duration_s=1.0, cameras=cams)
    summary = replay(bag, tmp_path / "out", TEST_GRAPH, progress=False)
    outs = objects(read_mcap(tmp_path / "out"))
    assert [t for t, _ in outs] == [int(s) for s in stamps["lidar"]]
    assert all(sorted(d.id for d in m.detections) == sorted(cams) for _, m in outs)
    sync = summary.runners[0].sync.stats
    assert sync.partial == len(stamps["lidar"]) and sync.matched == 0 and sync.missing["CAM_BACK"] == sync.partial
    assert any("CAM_BACK" in w and "not in the bag" in w for w in summary.warnings)


def test_camera_that_stops_mid_bag(tmp_path):
    bag = tmp_path / "stops"
    stamps = write_nuscenes_timed_bag(bag, duration_s=1.0, camera_stop_s={"CAM_FRONT": 0.5})
    summary = replay(bag, tmp_path / "out", TEST_GRAPH, progress=False)
    outs = objects(read_mcap(tmp_path / "out"))
    assert len(outs) == len(stamps["lidar"])
    with_front = [t for t, m in outs if "CAM_FRONT" in {d.id for d in m.detections}]
    last_front = int(stamps["CAM_FRONT"][-1])
    # a sweep keeps CAM_FRONT while its last image is within the tolerance (50 ms) of sweep + offset
    offset = -35_500_000
    assert with_front == [t for t, _ in outs if abs(last_front - (t + offset)) <= 50_000_000 or t + offset < last_front]
    stats = summary.runners[0].sync.stats
    assert stats.partial == len(outs) - len(with_front) > 0


def test_interrupted_replay_leaves_a_readable_bag(tmp_path):
    proc, out = start_slow_replay(tmp_path, 0.2)
    time.sleep(1.5)  # 80 sweeps at >= 200 ms each: still running, with a wide margin on a loaded machine
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stdout
    outs = objects(read_mcap(out))
    assert 0 < len(outs) < 80
    assert all(len(m.detections) == 6 for _, m in outs)
    with BagReader(out) as reader:
        assert reader.message_count == len(read_mcap(out))


def test_not_implemented_node_is_named(full_bag, tmp_path):
    bag, _ = full_bag
    ghost = GraphNode("ghost", "perception3d.nodes.ghost:GhostNode", inputs={"~/input/pointcloud": "/LIDAR_TOP/points"},
                      outputs={})
    with pytest.raises(NodeNotImplementedError, match="node ghost is not implemented yet"):
        replay(bag, tmp_path / "out", Graph((ghost,)), progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_lidar_topic_and_wrong_type(full_bag, tmp_path):
    bag, _ = full_bag
    with pytest.raises(BagError, match="needs LiDAR topic /lidar/points"):
        replay(bag, tmp_path / "a", TEST_GRAPH.with_remaps({"/LIDAR_TOP/points": "/lidar/points"}), progress=False)
    with pytest.raises(BagError, match="/tf has type tf2_msgs/msg/TFMessage; node centroid expects sensor_msgs/msg/P"):
        replay(bag, tmp_path / "b", TEST_GRAPH.with_remaps({"/LIDAR_TOP/points": "/tf"}), progress=False)
    with pytest.raises(ConfigError, match="two input ports map to one topic"):
        replay(bag, tmp_path / "c", TEST_GRAPH.with_remaps({"/LIDAR_TOP/points": "/CAM_BACK/camera_info"}),
               progress=False)


def test_remap_cli(full_bag, tmp_path):
    bag, stamps = full_bag
    out = tmp_path / "out"
    assert cli_main(["replay", str(bag), "--out", str(out), "--graph-def", "replay_fixtures:TEST_GRAPH",
                     "--remap", f"{OBJECTS_TOPIC}:=/renamed", "--copy-inputs", "--no-progress"]) == 0
    messages = read_mcap(out)
    assert len([1 for topic, _, _ in messages if topic == "/renamed"]) == len(stamps["lidar"])
    assert len([1 for topic, _, _ in messages if topic == "/LIDAR_TOP/points"]) == len(stamps["lidar"])


def test_missing_transforms_and_bad_clouds_are_counted_drops(tmp_path):
    bag = tmp_path / "no_static"
    stamps = write_nuscenes_timed_bag(bag, duration_s=0.5, with_tf_static=False)
    summary = replay(bag, tmp_path / "out", TEST_GRAPH, progress=False)
    runner = summary.runners[0]
    assert runner.stats.outputs == 0 and runner.stats.frames_in == len(stamps["lidar"])
    (reason,) = runner.stats.drops
    assert reason.startswith("TransformError") and runner.stats.drops[reason] == len(stamps["lidar"])
    assert "LIDAR_TOP" in runner.stats.last_error[reason]

    bag = tmp_path / "bad_cloud"
    stamps = write_nuscenes_timed_bag(bag, duration_s=0.5, bad_sweeps=(2, 5))
    summary = replay(bag, tmp_path / "out2", TEST_GRAPH, progress=False)
    runner = summary.runners[0]
    assert runner.stats.outputs == len(stamps["lidar"]) - 2
    assert runner.stats.drops == {"PointCloudError: /LIDAR_TOP/points field 'point_step'": 2}
    assert "PointCloudError" in summary.format()


def test_camera_triggered_node_feeds_a_lidar_node(tmp_path):
    from replay_fixtures import CHAIN_GRAPH, IMAGE_SIZE, ImageBoxNode

    bag = tmp_path / "images"
    stamps = write_nuscenes_timed_bag(bag, duration_s=1.0, with_images=True, bad_image=("CAM_BACK", 3))
    ImageBoxNode.batch_sizes.clear()
    summary = replay(bag, tmp_path / "out", CHAIN_GRAPH, progress=False)
    # one frame per firing cycle, the six images batched (five where CAM_BACK's image is broken)
    assert len(ImageBoxNode.batch_sizes) == len(stamps["CAM_FRONT"])
    assert sorted(set(ImageBoxNode.batch_sizes)) == [5, 6] and ImageBoxNode.batch_sizes.count(5) == 1
    messages = read_mcap(tmp_path / "out")
    boxes = [(topic, t, m) for topic, t, m in messages if topic.startswith("/imagebox/")]
    camera_frames = sum(len(v) for k, v in stamps.items() if k != "lidar")
    assert len(boxes) == camera_frames - 1  # every image but the broken one
    for topic, t, m in boxes:
        assert stamp_to_ns(m.header.stamp) == t and topic == f"/imagebox/{m.header.frame_id}/detections"
        assert (m.detections[0].bbox.size_x, m.detections[0].bbox.size_y) == IMAGE_SIZE
    imagebox, centroid = summary.runners
    assert imagebox.stats.drops == {"ImageError: /CAM_BACK/image/compressed field 'data'": 1}
    outs = objects(messages)
    assert [t for t, _ in outs] == [int(s) for s in stamps["lidar"]]
    # sweeps for which no other CAM_BACK frame than the broken one lies within the 50 ms tolerance lose CAM_BACK
    others = np.delete(stamps["CAM_BACK"], 3)
    target = stamps["lidar"] - 10_400_000
    lost = [int(s) for s, tt in zip(stamps["lidar"], target) if np.abs(others - tt).min() > 50_000_000]
    assert lost and [t for t, m in outs if "CAM_BACK" not in {d.id for d in m.detections}] == lost
    assert centroid.sync.stats.partial == len(lost) == centroid.sync.stats.missing["CAM_BACK"]


def test_sparse_tf_is_interpolated_at_each_sweep_stamp(tmp_path):
    from replay_fixtures import ego_pose

    bag = tmp_path / "sparse_tf"
    stamps = write_nuscenes_timed_bag(bag, duration_s=1.0, tf_every=10)  # /tf at 2 Hz, as nuScenes keyframes
    config = tmp_path / "map.yaml"
    config.write_text("/**:\n  ros__parameters: {}\ncentroid:\n  ros__parameters:\n    output_frame: map\n")
    summary = replay(bag, tmp_path / "out", TEST_GRAPH, config=config, progress=False)
    outs = objects(read_mcap(tmp_path / "out"))
    assert len(outs) == len(stamps["lidar"]) and not summary.runners[0].stats.drops
    for k, (t, msg) in enumerate(outs):
        c = msg.detections[0].bbox.center.position
        expected = ego_pose(t)[:3, :3] @ expected_centroid_base(k) + ego_pose(t)[:3, 3]
        np.testing.assert_allclose([c.x, c.y, c.z], expected, atol=1e-4)
        assert msg.header.frame_id == "map"


def test_missing_camera_info_marks_that_camera_missing(tmp_path):
    bag = tmp_path / "no_info"
    stamps = write_nuscenes_timed_bag(bag, duration_s=0.5, skip_topics=("/CAM_FRONT_LEFT/camera_info",))
    summary = replay(bag, tmp_path / "out", TEST_GRAPH, progress=False)
    outs = objects(read_mcap(tmp_path / "out"))
    assert len(outs) == len(stamps["lidar"])
    assert all("CAM_FRONT_LEFT" not in {d.id for d in m.detections} and len(m.detections) == 5 for _, m in outs)
    assert summary.runners[0].sync.stats.missing["CAM_FRONT_LEFT"] == len(outs)
    assert any("/CAM_FRONT_LEFT/camera_info" in w for w in summary.warnings)


NO_TORCH = """
import importlib.abc, sys, tempfile
from pathlib import Path
class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnxruntime"):
            raise ImportError(f"the geometric graph imported {name}")
sys.meta_path.insert(0, Guard())
from perception3d.bench.graph import write_frame_bag
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH
with tempfile.TemporaryDirectory() as tmp:
    write_frame_bag(Path(tmp) / "frames", sweeps=2)
    summary = replay(Path(tmp) / "frames", Path(tmp) / "out", FULL_GRAPH.select(("detection3d", "segmentation",
                     "occupancy")), progress=False)
    print({r.name: (r.stats.frames_processed, sum(r.stats.drops.values())) for r in summary.runners})
"""


def test_the_geometric_graph_replays_without_torch_or_onnxruntime():
    """A geometric-mode node never loads a model: on a robot without torch the geometric graph runs (and a
    process does not pay torch's import at start)."""
    import ast
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    processed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert processed == {"detection3d": (2, 0), "segmentation": (2, 0), "occupancy": (2, 0)}


def test_replay_lookups_are_answered_once_and_handed_out_as_copies():
    from perception3d.core.tf_buffer import TfBuffer
    from perception3d.errors import TransformError
    from perception3d.runtime.bag import LoadedTransforms

    buffer = TfBuffer()
    lookups = LoadedTransforms(buffer)
    with pytest.raises(TransformError):
        lookups.lookup("map", "base_link", 5)
    for stamp in (0, 10_000):  # base_link at x = stamp [m]
        T = np.eye(4)
        T[0, 3] = stamp
        buffer.set_transform("map", "base_link", stamp, T)
    first = lookups.lookup("map", "base_link", 5)  # the failure was not kept
    assert first[0, 3] == 5.0
    first[0, 3] = 99.0  # a caller's change does not reach the next caller
    buffer.set_transform("map", "base_link", 5, np.eye(4))  # never done during a replay: shows the answer is kept
    assert lookups.lookup("map", "base_link", 5)[0, 3] == 5.0 and buffer.lookup("map", "base_link", 5)[0, 3] == 0
    for stamp in range(100, 101 + LoadedTransforms.MEMO_SIZE):
        expected = buffer.lookup("base_link", "map", stamp)
        np.testing.assert_array_equal(lookups.lookup("base_link", "map", stamp), expected)
    assert lookups.lookup("map", "base_link", 5)[0, 3] == 0  # the oldest answers were let go
