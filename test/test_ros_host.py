"""The rclpy host against the strict test double in ros_double.py (NOT ROS 2): the double applies rcl's parameter-file
and remapping rules, rclpy's parameter typing, rmw's QoS matching and tf2's buffer rules, and a test drives the host
the way other nodes would, by publishing on the graph."""
from __future__ import annotations

import array
import os
from pathlib import Path

import numpy as np
import pytest

import ros_double
from perception3d.core.sensor_timing import CAMERA_NAMES
from perception3d.errors import ConfigError
from perception3d.msgs.bag import BagReader
from perception3d.msgs.factory import stamp_to_ns
from perception3d.nodes.params import SHARED_PARAMS
from perception3d.runtime import ros
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH
from perception3d.runtime.ros import RosNodeHost
from replay_fixtures import CHAIN_GRAPH, OBJECTS_TOPIC, TEST_GRAPH, CentroidNode, write_nuscenes_timed_bag

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "perception3d.yaml"
RELIABLE = ros_double.QoSProfile(depth=5)  # what RViz and most subscribers request
LATCHED = ros_double.QoSProfile(depth=1, durability=ros_double.DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("ros") / "bag"
    stamps = write_nuscenes_timed_bag(path, duration_s=1.0)
    return path, stamps


def launch_args(graph, name, *extra):
    """The command line launch_ros gives a node: its remappings (port:=topic, from the graph) and extra ROS args."""
    topics = graph.topics(graph.node(name), CAMERA_NAMES)
    remaps = [arg for port, topic in sorted(topics.items()) for arg in ("-r", f"{port}:={topic}")]
    return [f"perception3d_{name}", "--ros-args", "-r", f"__node:={name}", *remaps, *extra]


def start(monkeypatch, graph=TEST_GRAPH, name="centroid", extra=(), install=True):
    if install:
        ros_double.install(monkeypatch)
    args = launch_args(graph, name, *extra)
    ros_double.init(args)
    return RosNodeHost(graph.node(name), graph, args)


class Player:
    """`ros2 bag play` into the double's graph: data best effort (sensor QoS), /tf reliable, /tf_static latched."""

    def __init__(self, host=None, stamp_offset_ns=0):
        self.node = ros_double.Node("player")
        self.host, self.offset = host, stamp_offset_ns
        self.publishers = {}

    def qos(self, topic):
        if topic == "/tf_static":
            return LATCHED
        return ros_double.QoSProfile(depth=100) if topic == "/tf" else ros_double.QOS_SENSOR_DATA

    def publish(self, topic, msg, stamp_ns=None):
        msg = ros_double.to_double(msg)
        if self.offset:
            for m in (msg.transforms if topic.startswith("/tf") else [msg]):
                ns = stamp_to_ns(m.header.stamp) + self.offset
                m.header.stamp.sec, m.header.stamp.nanosec = divmod(ns, 10**9)
        if topic not in self.publishers:
            self.publishers[topic] = self.node.create_publisher(type(msg), topic, self.qos(topic))
        self.publishers[topic].publish(msg)
        if self.host is not None and stamp_ns is not None:
            self.host.node.clock.now_ns = stamp_ns + self.offset

    def play(self, bag_path):
        with BagReader(bag_path) as reader:
            for m in reader.messages():
                self.publish(m.topic, m.decode(), m.stamp_ns)


def viewer(topic, msgtype, qos=RELIABLE):
    """A subscriber like RViz (reliable unless told); returns the list its messages go into."""
    received = []
    ros_double.Node("viewer").create_subscription(ros_double.message_class(msgtype), topic, received.append, qos)
    return received


def test_parameters_are_declared_with_descriptors(monkeypatch):
    host = start(monkeypatch)
    assert (host.node.name, host.tf.node.name) == ("centroid", "centroid_tf_listener")  # launch's __node remap
    declared = host.node.parameters
    assert list(declared) == [p.name for p in (*SHARED_PARAMS, *CentroidNode.parameters)]
    value, descriptor = declared["sync.tolerance_s"]
    assert value == 0.05 and descriptor.read_only
    assert (descriptor.floating_point_range[0].from_value, descriptor.floating_point_range[0].to_value) == (0.0, 0.5)
    assert declared["sync.queue_size"][1].integer_range[0].to_value == 100
    assert not declared["log_throttle_s"][1].read_only


def test_bad_parameter_fails_at_start_naming_the_key(monkeypatch, tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("/**:\n  ros__parameters:\n    sync:\n      camera_set_window_s: 0.9\n      timeout_s: 1.5\n"
                      "centroid:\n  ros__parameters:\n    output_frame: ''\n    sleep_s: 0.5\n")
    host = start(monkeypatch, extra=("--params-file", str(config)))  # within the descriptors' ranges
    assert host.runner.node.params["sleep_s"] == 0.5
    config.write_text("/**:\n  ros__parameters:\n    camera_names: [CAM_FRONT]\n")  # offsets no longer match
    with pytest.raises(ConfigError, match=r"sync.camera_offsets_s has 6 values for 1 camera_names"):
        start(monkeypatch, extra=("--params-file", str(config)))


# -- defect 1: the default parameter file must be readable by rcl ------------------------------------------------
def test_default_parameter_file_passes_rcl_and_starts_a_node(monkeypatch):
    ros_double.install(monkeypatch)
    ros_double.init(["x", "--ros-args", "--params-file", str(CONFIG)])  # RCLError "Will not support aliasing" before
    node = ros_double.Node("segmentation")
    values = ros.declare_parameters(node, "segmentation", FULL_GRAPH.node("segmentation").load().parameters)
    assert values["ego_box_m"] == [-1.0, -1.0, -0.6, 3.4, 1.0, 2.0]


def test_main_reports_a_file_rcl_refuses_clearly(monkeypatch, tmp_path, capsys):
    ros_double.install(monkeypatch)
    config = tmp_path / "alias.yaml"
    config.write_text("/**:\n  ros__parameters:\n    base_frame: &b base_link\ncentroid:\n  ros__parameters:\n"
                      "    output_frame: *b\n")
    assert ros.main("centroid", ["x", "--ros-args", "--params-file", str(config)], TEST_GRAPH) == 2
    err = capsys.readouterr().err
    assert "perception3d_centroid: error:" in err and "alias *b" in err and "Traceback" not in err


# -- defect 8: an int for a float parameter --------------------------------------------------------------------
def test_int_for_a_float_parameter_is_coerced(monkeypatch, tmp_path):
    config = tmp_path / "int.yaml"
    config.write_text("centroid:\n  ros__parameters:\n    sleep_s: 0\n    sync: {tolerance_s: 0}\n")
    host = start(monkeypatch, extra=("--params-file", str(config), "-p", "log_throttle_s:=2"))
    params = host.runner.node.params
    assert params["sleep_s"] == 0.0 and isinstance(params["sleep_s"], float)
    assert params["sync.tolerance_s"] == 0.0 and params["log_throttle_s"] == 2.0
    node = ros_double.Node("centroid")  # what rclpy does without the coercion: static typing refuses the int
    with pytest.raises(ros_double.InvalidParameterTypeException):
        node.declare_parameter("sleep_s", 0.5)


def test_the_process_thread_pools_follow_the_parameter_at_start(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)  # monkeypatch restores what the host sets, too
    with threadpool_limits(limits=None):  # restores the pools afterwards
        start(monkeypatch, extra=("-p", "process_threads:=1"))
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}
        assert os.environ["OMP_NUM_THREADS"] == "1"


# -- QoS, remapping, flow -----------------------------------------------------------------------------------------
def test_subscriptions_publishers_and_qos(monkeypatch):
    host = start(monkeypatch)
    subs = {s.topic: s for s in host.node.subscribers}
    assert set(subs) == {"/LIDAR_TOP/points"} | {f"/{c}/{s}" for c in CAMERA_NAMES for s in ("camera_info",
                                                                                              "detections")}
    assert all(s.qos.reliability == ros_double.ReliabilityPolicy.BEST_EFFORT for s in subs.values())
    assert subs["/LIDAR_TOP/points"].msg_class is ros_double.message_class("sensor_msgs/msg/PointCloud2")
    pubs = host.node.publishers
    assert pubs[OBJECTS_TOPIC].qos.reliability == ros_double.ReliabilityPolicy.RELIABLE
    assert {"/centroid/debug/processing_time_ms/total", "/centroid/debug/pipeline_latency_ms"} <= set(pubs)


# -- defect 4: LabelInfo reaches the remapped topic ----------------------------------------------------------------
def test_label_info_is_latched_on_the_remapped_topic(monkeypatch):
    host = start(monkeypatch)
    assert OBJECTS_TOPIC + "/label_info" in host.node.publishers  # not /centroid/output/objects/label_info
    late = viewer(OBJECTS_TOPIC + "/label_info", "vision_msgs/msg/LabelInfo", LATCHED)  # joins after publishing
    (info,) = late
    assert [c.class_name for c in info.class_map] == ["car"] and info.threshold == 0.0


def test_full_graph_label_info_topics_are_the_documented_ones():
    plan = {name: dict(FULL_GRAPH.topics(FULL_GRAPH.node(name), ["CAM_FRONT"])) for name in ("detection3d",
                                                                                             "detector2d")}
    assert plan["detection3d"]["~/output/objects/label_info"] == "/perception/objects/label_info"
    assert (plan["detector2d"]["~/output/CAM_FRONT/detections/label_info"]
            == "/perception/CAM_FRONT/detections/label_info")


def test_messages_flow_like_the_bag_runtime(monkeypatch, bag, tmp_path):
    bag_path, stamps = bag
    host = start(monkeypatch)
    objects = viewer(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray")
    Player(host).play(bag_path)
    # the last sweeps wait for later camera frames; the clock timer releases them after the timeout
    assert len(stamps["lidar"]) - 3 <= len(objects) < len(stamps["lidar"])
    (period, timer), = host.node.timers
    host.node.clock.now_ns = int(stamps["lidar"][-1]) + 200_000_000
    timer()
    summary = replay(bag_path, tmp_path / "out", TEST_GRAPH, progress=False)
    assert summary.runners[0].stats.outputs == len(objects) == len(stamps["lidar"])
    assert [stamp_to_ns(m.header.stamp) for m in objects] == [int(s) for s in stamps["lidar"]]
    assert sorted(d.id for d in objects[-1].detections) == sorted(CAMERA_NAMES)  # the node's ids reach Detection3D.id
    assert len(host.node.publishers["/centroid/debug/processing_time_ms/total"].published) == len(objects)
    cpu_ms = [m.data for m in host.node.publishers["/centroid/debug/cpu_time_ms"].published]
    wall_ms = [m.data for m in host.node.publishers["/centroid/debug/processing_time_ms/total"].published]
    assert len(cpu_ms) == len(objects) and all(c <= w + 1.0 for c, w in zip(cpu_ms, wall_ms))
    (status,) = host.node.updater.force_update()
    assert status.level == ros_double.message_class("diagnostic_msgs/msg/DiagnosticStatus").OK
    assert status.values["sync matched"] == str(len(objects))
    assert float(status.values["rate ~/input/pointcloud [Hz]"]) == len(stamps["lidar"])  # over the 1 s window


def test_a_reliable_only_sensor_subscription_would_get_nothing(monkeypatch):
    """The double's QoS rule that the host's SensorDataQoS subscriptions satisfy: a best-effort publisher (a bag
    played with its recorded QoS, a camera driver) does not connect to a reliable subscriber."""
    ros_double.install(monkeypatch)
    ros_double.init([])
    received = viewer("/x", "std_msgs/msg/Float64", RELIABLE)
    pub = ros_double.Node("p").create_publisher(ros_double.message_class("std_msgs/msg/Float64"), "/x",
                                                 ros_double.QOS_SENSOR_DATA)
    pub.publish(ros_double.message_class("std_msgs/msg/Float64")(data=1.0))
    assert received == [] and pub.get_subscription_count() == 0


def test_clock_far_from_stamps_does_not_time_sets_out(monkeypatch, bag):
    bag_path, stamps = bag
    host = start(monkeypatch)
    objects = viewer(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray")
    Player(host).play(bag_path)
    before = len(objects)
    host.node.clock.now_ns = int(stamps["lidar"][-1]) + 3600 * 10**9  # wall clock, bag played without --clock
    host.node.timers[0][1]()
    assert len(objects) == before


def test_no_subscribers_skips_work(monkeypatch, bag):
    bag_path, stamps = bag
    host = start(monkeypatch)
    Player(host).play(bag_path)
    assert host.node.publishers[OBJECTS_TOPIC].published == []
    assert host.runner.stats.frames_skipped >= len(stamps["lidar"]) - 3 and host.runner.stats.frames_processed == 0


# -- defect 10: TF waits with a timeout; the buffer is cleared on a jump back --------------------------------------
def test_a_transform_arriving_late_is_waited_for(monkeypatch, bag):
    bag_path, stamps = bag
    host = start(monkeypatch, extra=("-p", "tf_timeout_s:=0.05"))
    objects = viewer(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray")
    player = Player(host)
    with BagReader(bag_path) as reader:
        for m in reader.messages():
            if m.topic == "/tf":  # /tf is 20 ms behind the data: still in flight when the sweep is processed
                for t in m.decode().transforms:
                    host.tf_buffer.in_flight.append((0.02, ros_double.to_double(t)))
            else:
                player.publish(m.topic, m.decode(), m.stamp_ns)
    assert len(objects) >= len(stamps["lidar"]) - 3 and not host.runner.stats.drops
    assert host.tf.listener.spin_thread  # the wait is served only by a listener with its own thread


def test_a_frame_whose_transform_comes_after_the_wait_is_retried_in_order(monkeypatch, bag):
    bag_path, stamps = bag
    host = start(monkeypatch, extra=("-p", "tf_timeout_s:=0.01"))
    objects = viewer(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray")
    player, late_tf = Player(host), []
    with BagReader(bag_path) as reader:
        for m in reader.messages():
            if m.topic == "/tf":  # each /tf reaches the node 60 ms late: past the lookup's wait
                late_tf.append((m.stamp_ns + 60_000_000, m.decode()))
            while late_tf and late_tf[0][0] <= m.stamp_ns:
                player.publish("/tf", late_tf.pop(0)[1])
            if m.topic != "/tf":
                player.publish(m.topic, m.decode(), m.stamp_ns)
    for _, msg in late_tf:
        player.publish("/tf", msg)
    host.node.clock.now_ns = int(stamps["lidar"][-1]) + 90_000_000
    host.node.timers[0][1]()
    published = [stamp_to_ns(m.header.stamp) for m in objects]
    assert published == sorted(published) and len(published) >= len(stamps["lidar"]) - 1, host.runner.stats.drops


def test_tf_buffer_is_cleared_when_time_jumps_back(monkeypatch, bag):
    bag_path, stamps = bag
    host = start(monkeypatch)
    objects = viewer(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray")
    Player(host, stamp_offset_ns=30 * 10**9).play(bag_path)  # first pass of a looped bag, 30 s later in time
    first = len(objects)
    Player(host).play(bag_path)  # the loop: stamps 30 s back, more than tf2's 10 s cache
    assert first >= len(stamps["lidar"]) - 3
    assert len(objects) - first >= len(stamps["lidar"]) - 4, host.runner.stats.drops


# -- defect 7: writable parameters are validated and applied -------------------------------------------------------
def test_writable_parameters_are_validated_and_applied(monkeypatch):
    host = start(monkeypatch, graph=FULL_GRAPH, name="detection3d")
    label_info = viewer("/perception/objects/label_info", "vision_msgs/msg/LabelInfo", LATCHED)
    assert label_info[-1].threshold == pytest.approx(0.05)  # defect 13: the node's score threshold
    P = ros_double.Parameter
    results = host.node.set_parameters([P("score_threshold", value=0.4), P("publish_markers", value=False),
                                        P("log_throttle_s", value=1.0), P("nms_iou", value=0.3)])
    assert [r.successful for r in results] == [True, True, True, False]  # nms_iou is read-only
    params = host.runner.node.params
    assert params["score_threshold"] == 0.4 and params["publish_markers"] is False
    assert host.runner._warn.period_s == 1.0
    assert label_info[-1].threshold == pytest.approx(0.4)
    result = host._on_set_parameters([P("score_threshold", value=1.5)])  # what the schema says about it
    assert not result.successful and "[detection3d] score_threshold: 1.5 is greater than the maximum" in result.reason
    assert params["score_threshold"] == 0.4


# -- defect 9: raw sensor_msgs/Image cameras ------------------------------------------------------------------------
def raw_image(camera, stamp_ns, value):
    image = ros_double.message_class("sensor_msgs/msg/Image")(height=12, width=16, encoding="rgb8", step=48,
                                                              data=array.array("B", bytes([value]) * 576))
    image.header.frame_id = camera
    image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return image


@pytest.mark.parametrize("transport", ["auto", "raw"])
def test_raw_images_are_received(monkeypatch, transport):
    ros_double.install(monkeypatch)
    ros_double.init([])
    camera_pub = ros_double.Node("camera_driver").create_publisher(
        ros_double.message_class("sensor_msgs/msg/Image"), "/CAM_FRONT/image/compressed", ros_double.QOS_SENSOR_DATA)
    host = start(monkeypatch, graph=CHAIN_GRAPH, name="imagebox", install=False,
                 extra=("-p", f"image_transport:={transport}", "-p", "camera_names:=[CAM_FRONT]",
                        "-p", "sync.camera_offsets_s:=[0.0]"))
    boxes = viewer("/imagebox/CAM_FRONT/detections", "vision_msgs/msg/Detection2DArray")
    info = ros_double.message_class("sensor_msgs/msg/CameraInfo")(height=12, width=16, distortion_model="plumb_bob",
                                                                  k=[10.0, 0, 8, 0, 10.0, 6, 0, 0, 1],
                                                                  p=[10.0, 0, 8, 0, 0, 10.0, 6, 0, 0, 0, 1, 0])
    info.header.frame_id = "CAM_FRONT"
    Player(host).publish("/CAM_FRONT/camera_info", info, 10**9)
    for k in range(3):
        camera_pub.publish(raw_image("CAM_FRONT", 10**9 + k * 83_000_000, 100))
    host.runner.flush()
    assert boxes, host.runner.stats.drops
    assert boxes[0].detections[0].results[0].hypothesis.score == pytest.approx(100 / 255)


# -- defect 12: shutdown ----------------------------------------------------------------------------------------------
def test_ctrl_c_destroys_the_nodes_quietly(monkeypatch, capsys):
    ros_double.install(monkeypatch)

    def interrupted(node):
        raise KeyboardInterrupt

    monkeypatch.setattr(ros_double, "spin", interrupted)
    monkeypatch.setitem(__import__("sys").modules["rclpy"].__dict__, "spin", interrupted)
    assert ros.main("centroid", launch_args(TEST_GRAPH, "centroid"), TEST_GRAPH) == 0
    node, tf_node = ros_double.Node.instances
    assert node.destroyed and tf_node.destroyed and "Traceback" not in capsys.readouterr().err


def test_a_missing_heavy_dependency_names_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    for module in [m for m in __import__("sys").modules if m.startswith("perception3d.nodes.detector2d")
                   or m.startswith("perception3d.core.models")]:
        monkeypatch.delitem(__import__("sys").modules, module)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ConfigError, match=r"detector2d needs the Python package 'torch'.*pip install torch"):
        FULL_GRAPH.node("detector2d").load()



# -- issue 18: several nodes in one process (perception3d_graph) ----------------------------------------------------
def graph_process_args(graph, *extra):
    """The command line launch gives perception3d_graph: the node names, then node-targeted remappings."""
    remaps = [arg for node in graph.nodes for port, topic in sorted(graph.topics(node, CAMERA_NAMES).items())
              for arg in ("-r", f"{node.name}:{port}:={topic}")]
    return ["perception3d_graph", *[n.name for n in graph.nodes], "--ros-args", *remaps, *extra]


def test_node_targeted_remap_rules_apply_to_their_node_only_and_the_first_match_wins(monkeypatch):
    ros_double.install(monkeypatch)
    ros_double.init(["x", "--ros-args", "-r", "a:~/in:=/for_a", "-r", "~/in:=/for_all", "-r", "~/in:=/later",
                     "-r", "b:__node:=renamed"])
    a, b, c = ros_double.Node("a"), ros_double.Node("b"), ros_double.Node("c")
    assert (a.name, b.name, c.name) == ("a", "renamed", "c")
    assert a.resolve_topic_name("~/in") == "/for_a" and c.resolve_topic_name("~/in") == "/for_all"


def test_a_graph_process_hands_outputs_to_its_nodes_and_still_publishes_them(monkeypatch, tmp_path):
    from replay_fixtures import CHAIN_GRAPH

    bag_path = tmp_path / "images"
    stamps = write_nuscenes_timed_bag(bag_path, duration_s=1.0, with_images=True)
    ros_double.install(monkeypatch)
    args = graph_process_args(CHAIN_GRAPH)
    assert ros.graph_node_names(args, CHAIN_GRAPH) == ["imagebox", "centroid"]
    ros_double.init(args)
    process = ros.GraphProcess(ros.graph_node_names(args, CHAIN_GRAPH), CHAIN_GRAPH, args)
    imagebox, centroid = process.hosts
    subscribed = {sub.topic for sub in centroid.node.subscribers}
    assert not any(topic.startswith("/imagebox/") for topic in subscribed)  # handed over, not subscribed
    assert "/LIDAR_TOP/points" in subscribed and imagebox.handoffs
    # one TF listener for the process, not one per node
    assert [n.name for n in ros_double.Node.instances if n.name.endswith("_tf_listener")] == [
        "perception3d_graph_tf_listener"]
    objects = viewer(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray")
    boxes = viewer("/imagebox/CAM_FRONT/detections", "vision_msgs/msg/Detection2DArray")
    Player(centroid).play(bag_path)
    centroid.node.clock.now_ns = int(stamps["lidar"][-1]) + 200_000_000
    centroid.node.timers[0][1]()
    summary = replay(bag_path, tmp_path / "out", CHAIN_GRAPH, progress=False)
    assert len(objects) == summary.runners[1].stats.outputs == len(stamps["lidar"])
    assert len(boxes) == len(stamps["CAM_FRONT"])  # still published for other subscribers
    assert sorted(d.id for d in objects[-1].detections) == sorted(CAMERA_NAMES)  # the boxes reached centroid
    process.close()
    assert all(node.destroyed for node in ros_double.Node.instances if node.name != "viewer" and node.name != "player")


def test_a_graph_process_s_thread_pools_are_the_largest_its_nodes_ask_for(monkeypatch, tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    from replay_fixtures import CHAIN_GRAPH

    config = tmp_path / "threads.yaml"  # the upstream node asks for more threads than the one created after it
    config.write_text("imagebox:\n  ros__parameters:\n    process_threads: 2\n"
                      "centroid:\n  ros__parameters:\n    process_threads: 1\n")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    ros_double.install(monkeypatch)
    args = graph_process_args(CHAIN_GRAPH, "--params-file", str(config))
    ros_double.init(args)
    with threadpool_limits(limits=2):  # what limiting this process's pools to 2 gives (an old OpenBLAS that a
        expected = [pool["num_threads"] for pool in threadpool_info()]  # library bundles may stay at 1)
    with threadpool_limits(limits=None):  # restores the pools afterwards
        threadpool_limits(limits=1)
        process = ros.GraphProcess(ros.graph_node_names(args, CHAIN_GRAPH), CHAIN_GRAPH, args)
        assert [pool["num_threads"] for pool in threadpool_info()] == expected and 2 in expected
        assert os.environ["OMP_NUM_THREADS"] == "2"
    process.close()


def test_the_graph_executable_spins_its_nodes_in_one_executor_and_refuses_an_unknown_node(monkeypatch, capsys):
    from replay_fixtures import CHAIN_GRAPH

    ros_double.install(monkeypatch)
    assert ros.main_graph_process(graph_process_args(CHAIN_GRAPH), CHAIN_GRAPH) == 0
    (executor,) = ros_double.SingleThreadedExecutor.spun
    assert [n.name for n in executor.nodes] == ["imagebox", "centroid"]
    assert all(n.destroyed for n in ros_double.Node.instances)
    assert ros.main_graph_process(["perception3d_graph", "nosuchnode", "--ros-args"], CHAIN_GRAPH) == 2
    assert "no node 'nosuchnode'" in capsys.readouterr().err


def test_the_host_prepares_the_node_once_its_static_transforms_are_buffered(monkeypatch):
    """NodeDefinition.prepare runs on the host's timer, answered from what tf has buffered (no wait), until it
    succeeds: before /tf_static arrives it is asked again, after it the node has its transform before any sweep."""
    from perception3d.msgs.tf import tf_message, transform_stamped
    from replay_fixtures import T0, T_BASE_LIDAR

    seen = []

    def prepare(self, tf):
        seen.append(tf.lookup("base_link", "LIDAR_TOP", 0))
        return True

    monkeypatch.setattr(CentroidNode, "prepare", prepare, raising=False)
    host = start(monkeypatch)
    host.node.timers[0][1]()
    assert not host.runner.prepared and seen == []  # LIDAR_TOP unknown yet: asked again on the next tick
    Player(host).publish("/tf_static", tf_message([transform_stamped(T_BASE_LIDAR, "base_link", "LIDAR_TOP", T0)]))
    host.node.timers[0][1]()
    host.node.timers[0][1]()
    assert host.runner.prepared and len(seen) == 1 and host.runner.stats.frames_in == 0
    np.testing.assert_allclose(seen[0], T_BASE_LIDAR, atol=1e-12)  # through the quaternion of the message
