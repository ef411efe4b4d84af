"""The rclpy host's wiring, exercised against the recording test double in ros_double.py (NOT ROS 2)."""
from __future__ import annotations

import pytest

import ros_double
from perception3d.errors import ConfigError
from perception3d.msgs.bag import BagReader
from perception3d.msgs.factory import stamp_to_ns
from perception3d.nodes.params import SHARED_PARAMS
from perception3d.runtime.bag import replay
from perception3d.runtime.ros import RosNodeHost
from replay_fixtures import TEST_GRAPH, CentroidNode, write_nuscenes_timed_bag


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("ros") / "bag"
    stamps = write_nuscenes_timed_bag(path, duration_s=1.0)
    return path, stamps


def make_host(monkeypatch, **overrides):
    ros_double.install(monkeypatch)
    ros_double.Node.PARAMETER_OVERRIDES = overrides
    return RosNodeHost(TEST_GRAPH.node("centroid"), TEST_GRAPH)


def play(host, bag_path):
    """Deliver a bag as the ROS graph would: TF into the buffer, data to the subscriber of the remapped port."""
    port_of_topic = {topic: port for port, topic in TEST_GRAPH.topics(TEST_GRAPH.node("centroid"),
                                                                         host.runner.node.params["camera_names"]).items()}
    subscribers = {s.topic: s for s in host.node.subscribers}
    with BagReader(bag_path) as reader:
        for m in reader.messages():
            msg = m.decode()
            if m.topic in ("/tf", "/tf_static"):
                for t in msg.transforms:
                    host.tf_buffer.set_transform(t, "bag", static=m.topic == "/tf_static")
            else:
                subscribers[port_of_topic[m.topic]].signalMessage(msg)
            host.node.clock.now_ns = m.stamp_ns


def test_parameters_are_declared_with_descriptors(monkeypatch):
    host = make_host(monkeypatch)
    declared = host.node.parameters
    assert list(declared) == [p.name for p in (*SHARED_PARAMS, *CentroidNode.parameters)]
    value, descriptor = declared["sync.tolerance_s"]
    assert value == 0.05 and descriptor.read_only
    assert (descriptor.floating_point_range[0].from_value, descriptor.floating_point_range[0].to_value) == (0.0, 0.5)
    assert declared["sync.queue_size"][1].integer_range[0].to_value == 100
    assert not declared["log_throttle_s"][1].read_only


def test_bad_parameter_fails_at_start_naming_the_key(monkeypatch):
    with pytest.raises(ConfigError, match=r"\[centroid\] sync.timeout_s: 5.0 is greater than the maximum"):
        make_host(monkeypatch, **{"sync.timeout_s": 5.0})


def test_subscriptions_publishers_and_qos(monkeypatch):
    host = make_host(monkeypatch)
    subs = {s.topic: s for s in host.node.subscribers}
    assert set(subs) == {"~/input/pointcloud"} | {f"~/input/{c}/{s}" for c in host.runner.node.params["camera_names"]
                                                  for s in ("camera_info", "detections")}
    assert all(s.qos_profile.reliability == ros_double.ReliabilityPolicy.BEST_EFFORT for s in subs.values())
    assert subs["~/input/pointcloud"].msg_class is ros_double.message_class("sensor_msgs/msg/PointCloud2")
    pubs = host.node.publishers
    assert pubs["~/output/objects"].qos.reliability == ros_double.ReliabilityPolicy.RELIABLE
    label = pubs["~/output/objects/label_info"]
    assert label.qos.durability == ros_double.DurabilityPolicy.TRANSIENT_LOCAL and len(label.published) == 1
    assert [c.class_name for c in label.published[0].class_map] == ["car"]
    assert {"~/debug/processing_time_ms/total", "~/debug/pipeline_latency_ms"} <= set(pubs)


def test_messages_flow_like_the_bag_runtime(monkeypatch, bag, tmp_path):
    bag_path, stamps = bag
    host = make_host(monkeypatch)
    play(host, bag_path)
    published = host.node.publishers["~/output/objects"].published
    # the last sweeps wait for later camera frames; the clock timer releases them after the timeout
    assert len(stamps["lidar"]) - 3 <= len(published) < len(stamps["lidar"])
    (period, timer), = host.node.timers
    host.node.clock.now_ns = int(stamps["lidar"][-1]) + 200_000_000
    timer()
    published = host.node.publishers["~/output/objects"].published
    summary = replay(bag_path, tmp_path / "out", TEST_GRAPH, progress=False)
    assert summary.runners[0].stats.outputs == len(published) == len(stamps["lidar"])
    assert [stamp_to_ns(m.header.stamp) for m in published] == [int(s) for s in stamps["lidar"]]
    assert all(isinstance(m, ros_double.message_class("vision_msgs/msg/Detection3DArray")) for m in published)
    assert len(host.node.publishers["~/debug/processing_time_ms/total"].published) == len(published)
    (status,) = host.node.updater.force_update()
    assert status.level == ros_double.message_class("diagnostic_msgs/msg/DiagnosticStatus").OK
    assert status.values["sync matched"] == str(len(published))
    assert float(status.values["rate ~/input/pointcloud [Hz]"]) == len(stamps["lidar"])  # over the 1 s window


def test_clock_far_from_stamps_does_not_time_sets_out(monkeypatch, bag):
    bag_path, stamps = bag
    host = make_host(monkeypatch)
    play(host, bag_path)
    before = len(host.node.publishers["~/output/objects"].published)
    host.node.clock.now_ns = int(stamps["lidar"][-1]) + 3600 * 10**9  # wall clock, bag played without --clock
    host.node.timers[0][1]()
    assert len(host.node.publishers["~/output/objects"].published) == before


def test_no_subscribers_skips_work(monkeypatch, bag):
    bag_path, stamps = bag
    host = make_host(monkeypatch)
    host.node.publishers["~/output/objects"].subscription_count = 0
    play(host, bag_path)
    assert host.node.publishers["~/output/objects"].published == []
    assert host.runner.stats.frames_skipped >= len(stamps["lidar"]) - 3 and host.runner.stats.frames_processed == 0
