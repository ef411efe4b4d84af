"""The rclpy host: one ROS 2 node per graph node, with no perception logic of its own.

It declares the node's parameters (nodes.params: shared + own, with descriptors: description, range, read-only),
validates them with the same schema as the parameter file (ConfigError naming the key, at start), subscribes to the
input ports (`~/input/...`, remapped by the launch files) through `message_filters.Subscriber` with SensorDataQoS,
and hands every message to the same NodeRunner as the bag runtime (same synchronizer, decoding and drops). It looks
transforms up in a tf2_ros Buffer at each message's stamp, publishes outputs (reliable) and LabelInfo (transient
local, on `<output>/label_info`), `~/debug/processing_time_ms/{pre,infer,post,total}` and
`~/debug/pipeline_latency_ms` (std_msgs/Float64), and a diagnostic_updater status (input rates, sync health,
model state). While no one subscribes to any output, frames are skipped (counted).

Executables: `perception3d_<node>` console scripts -> `main_<node>()`. ROS 2 is not installable where this package
is built; this module is tested against the recording test double in test/ros_double/, not on ROS 2.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import numpy as np

from ..core.geometry import transform_from_quat_xyzw
from ..errors import Perception3DError, TransformError
from ..msgs.factory import MessageFactory
from ..msgs.qos import QosSpec
from ..nodes.base import STAGES
from ..nodes.params import SHARED_PARAMS, Param, validate_node_values
from ..nodes.runner import NodeRunner, Published, settle_garbage_collector
from .graph import FULL_GRAPH, Graph, GraphNode

DIAGNOSTICS_PERIOD_S = 1.0
SYNC_TIMER_PERIOD_S = 0.05


def message_class(msgtype: str) -> type:
    """The rclpy class of 'pkg/msg/Type'."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def rclpy_qos(spec: QosSpec) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=spec.depth,
        reliability=ReliabilityPolicy.RELIABLE if spec.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if spec.transient_local else DurabilityPolicy.VOLATILE)


def parameter_descriptor(param: Param) -> Any:
    """rcl_interfaces/ParameterDescriptor of a Param (description, read-only, numeric range)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    descriptor = ParameterDescriptor(description=param.description, read_only=param.read_only)
    scalar = param.type.removesuffix("_array")
    if param.minimum is not None and param.maximum is not None and param.type != "float_array":
        if scalar == "int":
            descriptor.integer_range = [IntegerRange(from_value=int(param.minimum), to_value=int(param.maximum),
                                                     step=0)]
        elif scalar == "float":
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(param.minimum),
                                                                  to_value=float(param.maximum), step=0.0)]
    return descriptor


class Tf2Lookup:
    """nodes.base.TransformLookup served by a tf2_ros Buffer (no waiting: the data's stamp must be buffered)."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        import tf2_ros
        from rclpy.time import Time

        try:
            t = self.buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=int(stamp_ns)))
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException) as exc:
            raise TransformError(f"{target_frame} <- {source_frame} at {stamp_ns} ns: {exc}") from exc
        tr, q = t.transform.translation, t.transform.rotation
        return transform_from_quat_xyzw([tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w])


class RosNodeHost:
    """Wraps one node definition into an rclpy Node (created here) and wires it as the module doc says."""

    def __init__(self, graph_node: GraphNode, graph: Graph = FULL_GRAPH) -> None:
        import diagnostic_updater
        import message_filters
        import tf2_ros
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from std_msgs.msg import Float64

        definition = graph_node.load()
        self.node = Node(graph_node.name)
        own = definition.parameters
        for param in (*SHARED_PARAMS, *own):
            self.node.declare_parameter(param.name, param.default, parameter_descriptor(param))
        values = {p.name: self.node.get_parameter(p.name).value for p in (*SHARED_PARAMS, *own)}
        params = validate_node_values(graph_node.name, own, values, source=f"node {graph_node.name} parameters")

        self.tf_buffer = tf2_ros.Buffer()
        self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, self.node)
        ports = {p.port: p.port for p in definition.input_ports(params["camera_names"])}
        ports.update({port: port for port in definition.output_ports(params["camera_names"])})
        self.runner = NodeRunner(definition, params, ports, Tf2Lookup(self.tf_buffer),
                                 factory=MessageFactory("rclpy", message_class=message_class),
                                 log=self.node.get_logger().warning, wanted=self._has_subscribers)
        self.publishers = {topic: self.node.create_publisher(message_class(spec.msgtype), topic,
                                                             rclpy_qos(spec.qos))
                           for topic, spec in self.runner.outputs.values()}
        self.label_publishers = []
        for item in self.runner.label_infos(self.node.get_clock().now().nanoseconds):  # latched, published once
            publisher = self.node.create_publisher(message_class(item.msgtype), item.topic, rclpy_qos(item.qos))
            publisher.publish(item.msg)
            self.label_publishers.append(publisher)
        self.timing_publishers = {
            stage: self.node.create_publisher(Float64, f"~/debug/processing_time_ms/{stage}", 1)
            for stage in (*STAGES, "total")}
        self.latency_publisher = self.node.create_publisher(Float64, "~/debug/pipeline_latency_ms", 1)
        self.subscribers = []
        for topic, port in self.runner.inputs.items():
            sub = message_filters.Subscriber(self.node, message_class(port.msgtypes[0]), topic,
                                             qos_profile=qos_profile_sensor_data)
            sub.registerCallback(lambda msg, t=topic: self._on_message(t, msg))
            self.subscribers.append(sub)
        self.updater = diagnostic_updater.Updater(self.node, period=DIAGNOSTICS_PERIOD_S)
        self.updater.setHardwareID(f"perception3d/{graph_node.name}")
        self.updater.add(f"{graph_node.name} status", self._diagnose)
        self.sync_timer = self.node.create_timer(SYNC_TIMER_PERIOD_S, self._advance)

    def _has_subscribers(self) -> bool:
        return any(pub.get_subscription_count() > 0 for pub in self.publishers.values())

    def _on_message(self, topic: str, msg: Any) -> None:
        self._deliver(lambda: self.runner.on_message(topic, msg))

    def _advance(self) -> None:
        """Release sets held for late cameras (or a camera firing cycle whose window has passed) when the clock
        (sim time during bag play) passes their timeout.

        Skipped while the clock and the message stamps disagree by more than sync.reset_jump_s (e.g. a bag played
        without --clock), where the clock would time every set out at once.
        """
        sync, sets = self.runner.sync, self.runner.camera_sets
        if sync is not None:
            reference, reset_jump_ns = sync.now_ns, sync.config.reset_jump_ns
        elif sets is not None:
            reference, reset_jump_ns = sets.open_stamp_ns, sets.reset_jump_ns
        else:
            return
        now = self.node.get_clock().now().nanoseconds
        if reference is None or abs(now - reference) > reset_jump_ns:
            return
        self._deliver(lambda: self.runner.advance(now))

    def _deliver(self, produce: Callable[[], Sequence[Published]]) -> None:
        """Publish what the runner produces, plus one timing sample per frame it processed and the latency."""
        from std_msgs.msg import Float64

        processed = self.runner.stats.frames_processed
        items = produce()
        for item in items:
            self.publishers[item.topic].publish(item.msg)
        new_frames = self.runner.stats.frames_processed - processed
        if new_frames:
            for stage, values in self.runner.stats.timings_ms.items():
                for value in reversed(list(islice(reversed(values), new_frames))):  # the newest, oldest first
                    self.timing_publishers[stage].publish(Float64(data=float(value)))
        if items:
            latency_ms = (self.node.get_clock().now().nanoseconds - items[-1].stamp_ns) / 1e6
            self.latency_publisher.publish(Float64(data=float(latency_ms)))

    def _diagnose(self, stat: Any) -> Any:
        from diagnostic_msgs.msg import DiagnosticStatus

        level, summary, values = self.runner.health(DIAGNOSTICS_PERIOD_S)
        stat.summary(getattr(DiagnosticStatus, level), summary)
        for key, value in values.items():
            stat.add(key, value)
        return stat


def main(node_name: str, args: Sequence[str] | None = None, graph: Graph = FULL_GRAPH) -> int:
    """Run one graph node under rclpy until shutdown (Ctrl-C)."""
    import rclpy

    rclpy.init(args=args)
    try:
        host = RosNodeHost(graph.node(node_name), graph)
        settle_garbage_collector()
        rclpy.spin(host.node)
    except Perception3DError as exc:  # bad parameters, a node not implemented yet: fail at start, say why
        print(f"perception3d_{node_name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()
    return 0


def main_detector2d() -> int:
    return main("detector2d", sys.argv)


def main_detection3d() -> int:
    return main("detection3d", sys.argv)


def main_segmentation() -> int:
    return main("segmentation", sys.argv)


def main_occupancy() -> int:
    return main("occupancy", sys.argv)
