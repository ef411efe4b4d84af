"""The rclpy host: a ROS 2 node per graph node, with no perception logic of its own.

It checks the parameter files it is given against rcl's YAML rules before `rclpy.init` (which would otherwise
fail for every node with rcl's terse message), passes integers given for float parameters as floats (rclpy's static
parameter typing refuses an int for a double), declares the node's parameters (nodes.params: shared + own, with
descriptors: description, range, read-only), validates them with the same schema as the parameter file
(ConfigError naming the key, at start), and validates and applies `ros2 param set` of the writable ones in a
set-parameters callback. It subscribes to the input ports (`~/input/...`, remapped by the launch files) through
`message_filters.Subscriber` with SensorDataQoS (images as CompressedImage or Image per camera: image_transport),
and hands every message to the same NodeRunner as the bag runtime (same synchronizer, decoding and drops). It looks
transforms up in a tf2_ros Buffer at each message's stamp, waiting up to tf_timeout_s (the listener spins /tf in
its own thread, so the wait can be served); a frame whose transform is still missing stays pending (in order) and
is retried on the next message or timer tick until message time passes its stamp + sync.timeout_s; the buffer is
cleared when time jumps back (bag loop). It publishes
outputs (reliable), LabelInfo on each output's LabelInfo port (transient local, with the score threshold),
`~/debug/processing_time_ms/{pre,infer,post,total}`, `~/debug/cpu_time_ms` and `~/debug/pipeline_latency_ms`
(std_msgs/Float64), and a
diagnostic_updater status (input rates, sync health, model state). While no one subscribes to any output, frames
are skipped (counted). On shutdown it destroys its nodes and releases the model's GPU memory.

Executables: `perception3d_<node>` console scripts -> `main_<node>()`, one node per process; `perception3d_graph
[node ...]` -> `main_graph()`, the named nodes (default all) in one process (GraphProcess: one executor, one TF
listener, per-process caches shared, in-process hand-off of the outputs a node of the process reads; remap rules
for it are node-targeted, `<node>:<from>:=<to>`). ROS 2 is not installable where this package
is built; this module is tested against the test double in test/ros_double.py (which models the ROS 2 rules it
relies on and cites where each is defined), not on ROS 2.
"""
from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..core.geometry import transform_from_quat_xyzw
from ..errors import ConfigError, Perception3DError, TransformError
from ..msgs.factory import MessageFactory
from ..msgs.qos import QosSpec
from ..nodes.base import CAMERA_STREAM_TYPES
from ..nodes.params import PARAMS_KEY, SHARED_PARAMS, SHARED_SECTION, Param, validate_node_values
from ..nodes.rcl_yaml import check_rcl_parameter_yaml
from ..nodes.runner import TIMED, NodeRunner, Published, settle_garbage_collector
from .graph import FULL_GRAPH, GRAPH_EXECUTABLE, Graph, GraphNode
from .heap import keep_freed_memory
from .threads import apply_thread_policy, process_thread_count

DIAGNOSTICS_PERIOD_S = 1.0
SYNC_TIMER_PERIOD_S = 0.05
IMAGE_TYPES = {"compressed": "sensor_msgs/msg/CompressedImage", "raw": "sensor_msgs/msg/Image"}


def timing_topic(series: str) -> str:
    """The debug topic of a node's timing series (NodeStats.timings_ms): `~/debug/processing_time_ms/<stage>` for the
    stages and the total (wall-clock, as Autoware's nodes publish it), `~/debug/cpu_time_ms` for the process's CPU
    time during the frame (below the total when the frame waited for a core)."""
    return "~/debug/cpu_time_ms" if series == "cpu" else f"~/debug/processing_time_ms/{series}"


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


def ros_argument_values(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """Values of the given flags (e.g. '--params-file') inside the --ros-args sections of a command line."""
    values, inside = [], False
    for i, arg in enumerate(args):
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside and arg in flags and i + 1 < len(args):
            values.append(args[i + 1])
    return values


def check_parameter_files(args: Sequence[str]) -> list[Path]:
    """The --params-file paths of a command line, each checked against rcl's YAML rules (ConfigError)."""
    paths = [Path(p) for p in ros_argument_values(args, ("--params-file",))]
    for path in paths:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read parameter file: {exc.strerror}") from exc
        check_rcl_parameter_yaml(text, str(path))
    return paths


def _flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def float_overrides(args: Sequence[str], node_name: str, params: Sequence[Param]) -> dict[str, Any]:
    """{name: value as float(s)} for float parameters that the command line's parameter files (sections '/**',
    '<node>', '/<node>') or `-p name:=value` give as integers (`nms_iou: 1`).

    rclpy types a parameter statically from its default, so an integer for a float parameter raises
    InvalidParameterTypeException at declare time; passing these as parameter_overrides of the Node (which take
    precedence over file values) makes them floats first.
    """
    import yaml

    given: dict[str, Any] = {}
    for path in check_parameter_files(args):
        doc = yaml.safe_load(path.read_text()) or {}
        for section in (SHARED_SECTION, node_name, f"/{node_name}"):
            given.update(_flatten((doc.get(section) or {}).get(PARAMS_KEY) or {}))
    for item in ros_argument_values(args, ("-p", "--param")):
        name, _, text = item.partition(":=")
        given[name] = yaml.safe_load(text)
    out = {}
    for param in params:
        value = given.get(param.name)
        if param.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            out[param.name] = float(value)
        elif param.type == "float_array" and isinstance(value, list) and any(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            out[param.name] = [float(v) for v in value]
    return out


def declare_parameters(node: Any, node_name: str, own: Sequence[Param]) -> dict[str, Any]:
    """Declare the shared and own parameters on an rclpy node and return their values, validated.

    Raises:
        ConfigError: a value the schema rejects, naming the node and the key.
    """
    params = (*SHARED_PARAMS, *own)
    for param in params:
        node.declare_parameter(param.name, param.default, parameter_descriptor(param))
    values = {p.name: node.get_parameter(p.name).value for p in params}
    return validate_node_values(node_name, own, values, source=f"node {node_name} parameters")


class Tf2Lookup:
    """nodes.base.TransformLookup served by a tf2_ros Buffer, waiting up to timeout_s for a transform at the data's
    stamp to arrive (the TransformListener must spin in its own thread for the wait to be served)."""

    def __init__(self, buffer: Any, timeout_s: float) -> None:
        self.buffer = buffer
        self.timeout_s = timeout_s

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        import tf2_ros
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            t = self.buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=int(stamp_ns)),
                                             timeout=Duration(nanoseconds=int(self.timeout_s * 1e9)))
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException) as exc:
            raise TransformError(f"{target_frame} <- {source_frame} at {stamp_ns} ns: {exc}") from exc
        tr, q = t.transform.translation, t.transform.rotation
        return transform_from_quat_xyzw([tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w])


class SharedTf:
    """A tf2_ros Buffer filled by a TransformListener that spins /tf on its own node and thread, so that a lookup
    waiting inside a callback of a (single-threaded) node can be served. That node ignores the process's ROS
    arguments: launch's '-r __node:=<name>' would otherwise give it a perception node's name (and its parameters and
    remappings)."""

    def __init__(self, node_name: str) -> None:
        import rclpy
        import tf2_ros

        self.buffer = tf2_ros.Buffer()
        self.node = rclpy.create_node(node_name, use_global_arguments=False, start_parameter_services=False)
        self.listener = tf2_ros.TransformListener(self.buffer, self.node, spin_thread=True)

    def close(self) -> None:
        self.listener.executor.shutdown()
        self.listener.dedicated_listener_thread.join()
        self.node.destroy_node()


class RosNodeHost:
    """Wraps one node definition into an rclpy Node (created here) and wires it as the module doc says.

    args: the process's command line (its --params-file / -p values are checked and int-for-float coerced).
    """

    def __init__(self, graph_node: GraphNode, graph: Graph = FULL_GRAPH, args: Sequence[str] = (),
                 tf: SharedTf | None = None, subscribe: bool = True) -> None:
        import diagnostic_updater
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from std_msgs.msg import Float64

        definition = graph_node.load()
        own = definition.parameters
        coerced = float_overrides(args, graph_node.name, (*SHARED_PARAMS, *own))
        self.node = Node(graph_node.name, parameter_overrides=[Parameter(n, value=v) for n, v in coerced.items()])
        self.own_parameters = own
        params = declare_parameters(self.node, graph_node.name, own)
        applied = apply_thread_policy(process_thread_count([params]))  # before the runner loads a model
        if applied:
            self.node.get_logger().info(f"thread pools: {applied}")

        self.own_tf = tf is None  # a node alone listens to /tf itself; the nodes of a graph process share one
        self.tf = tf or SharedTf(f"{graph_node.name}_tf_listener")
        self.tf_buffer = self.tf.buffer
        self.static_tf = Tf2Lookup(self.tf_buffer, 0.0)  # NodeRunner.prepare's lookups: what is buffered, no wait
        self.runner = NodeRunner(definition, params, definition.ports_as_topics(params["camera_names"]),
                                 Tf2Lookup(self.tf_buffer, params["tf_timeout_s"]),
                                 factory=MessageFactory("rclpy", message_class=message_class),
                                 log=self.node.get_logger().warning, wanted=self._wanted,
                                 retry_transforms=True)
        self.handoffs: dict[str, list[Callable[[Any], None]]] = {}  # output port -> consumers in this process
        self.publishers = {topic: self.node.create_publisher(message_class(spec.msgtype), topic,
                                                             rclpy_qos(spec.qos))
                           for topic, spec in self.runner.outputs.values()}
        self.label_publishers: dict[str, Any] = {}
        self._publish_label_infos()
        self.timing_publishers = {
            series: self.node.create_publisher(Float64, timing_topic(series), 1) for series in TIMED}
        self.latency_publisher = self.node.create_publisher(Float64, "~/debug/pipeline_latency_ms", 1)
        self.subscribers: list = []
        if subscribe:
            self.subscribe()
        self.updater = diagnostic_updater.Updater(self.node, period=DIAGNOSTICS_PERIOD_S)
        self.updater.setHardwareID(f"perception3d/{graph_node.name}")
        self.updater.add(f"{graph_node.name} status", self._diagnose)
        self.sync_timer = self.node.create_timer(SYNC_TIMER_PERIOD_S, self._advance)
        self._newest_stamp_ns: int | None = None
        self.node.add_on_set_parameters_callback(self._on_set_parameters)
        self.node.get_logger().info(f"{graph_node.name} ready ({self.runner.node.model_state()})")

    # -- start ------------------------------------------------------------------------------------------------
    def subscribe(self, handed: Collection[str] = ()) -> None:
        """Subscribe to the input ports, but those in `handed` (another node of this process hands their
        messages over: GraphProcess)."""
        import message_filters
        from rclpy.qos import qos_profile_sensor_data

        transport = self.runner.node.params["image_transport"]
        for topic, port in self.runner.inputs.items():
            if topic in handed:
                continue
            msgtype = self._image_type(topic, transport) if port.stream == "image" else port.msgtypes[0]
            sub = message_filters.Subscriber(self.node, message_class(msgtype), topic,
                                             qos_profile=qos_profile_sensor_data)
            sub.registerCallback(lambda msg, t=topic: self.receive(t, msg))
            self.subscribers.append(sub)

    def _image_type(self, topic: str, transport: str) -> str:
        """The image message type of one camera: forced by image_transport, else the type its topic is published
        with now (CompressedImage when nobody publishes it yet)."""
        if transport != "auto":
            return IMAGE_TYPES[transport]
        resolved = self.node.resolve_topic_name(topic)
        published = {name: types for name, types in self.node.get_topic_names_and_types()}.get(resolved, [])
        accepted = [t for t in CAMERA_STREAM_TYPES["image"] if t in published]
        if not accepted:
            self.node.get_logger().info(f"nobody publishes {resolved} yet: subscribing as CompressedImage (set "
                                        f"image_transport:=raw for a sensor_msgs/Image camera)")
        return accepted[0] if accepted else IMAGE_TYPES["compressed"]

    def _publish_label_infos(self) -> None:
        """Publish (transient local, so late subscribers get it) one LabelInfo per labelled output."""
        for item in self.runner.label_infos(self.node.get_clock().now().nanoseconds):
            if item.topic not in self.label_publishers:
                self.label_publishers[item.topic] = self.node.create_publisher(
                    message_class(item.msgtype), item.topic, rclpy_qos(item.qos))
            self.label_publishers[item.topic].publish(item.msg)

    # -- parameters -------------------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters: Sequence[Any]) -> Any:
        """Validate `ros2 param set` values with the parameter schema and apply them to the running node (rclpy
        itself refuses read-only parameters and values of the wrong type before this is called)."""
        from rcl_interfaces.msg import SetParametersResult

        kinds = {p.name: p.type for p in (*SHARED_PARAMS, *self.own_parameters)}
        changes = {p.name: (float(p.value) if kinds.get(p.name) == "float" else p.value) for p in parameters
                   if p.name in kinds}
        values = {**self.runner.node.params, **changes}
        name = self.runner.name
        try:
            validate_node_values(name, self.own_parameters, values, source=f"node {name} parameters")
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.runner.set_parameters(changes)
        if "score_threshold" in changes:
            self._publish_label_infos()  # LabelInfo carries the threshold
        return SetParametersResult(successful=True)

    # -- data -------------------------------------------------------------------------------------------------
    def _wanted(self) -> bool:
        """Someone reads an output: a subscriber, or a node of this process it is handed to."""
        return bool(self.handoffs) or any(pub.get_subscription_count() > 0 for pub in self.publishers.values())

    def receive(self, topic: str, msg: Any) -> None:
        """One message on an input port (from its subscription, or handed over by a node of this process)."""
        self._clear_tf_on_jump_back(msg)
        self._deliver(lambda: self.runner.on_message(topic, msg))

    def _clear_tf_on_jump_back(self, msg: Any) -> None:
        """Clear the TF buffer when message time jumps back by more than sync.reset_jump_s (a bag loop): tf2
        otherwise keeps the later transforms and answers lookups at the repeated stamps with extrapolation errors,
        and refuses the replayed /tf as old data."""
        header = getattr(msg, "header", None)
        if header is None:
            return
        stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        reset_jump_ns = int(self.runner.node.params["sync.reset_jump_s"] * 1e9)
        if self._newest_stamp_ns is not None and stamp_ns < self._newest_stamp_ns - reset_jump_ns:
            self.tf_buffer.clear()
            self.node.get_logger().warning("time jumped back (bag loop?): cleared the TF buffer")
            self._newest_stamp_ns = stamp_ns
        self._newest_stamp_ns = max(stamp_ns, self._newest_stamp_ns or stamp_ns)

    def _advance(self) -> None:
        """Until the node has built what it needs from static transforms (NodeRunner.prepare, answered from what tf
        has buffered, no wait), try that first. Then release sets held for late cameras (or a camera firing cycle
        whose window has passed) when the clock (sim time during bag play) passes their timeout.

        Skipped while the clock and the message stamps disagree by more than sync.reset_jump_s (e.g. a bag played
        without --clock), where the clock would time every set out at once.
        """
        self.runner.prepare(self.static_tf)
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
            for consumer in self.handoffs.get(item.topic, ()):
                consumer(item.msg)
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

    # -- run ---------------------------------------------------------------------------------------------------
    def spin(self) -> None:
        import rclpy

        rclpy.spin(self.node)

    def close(self) -> None:
        """Stop its TF listener (when it has its own), destroy its node, and release the model (and its GPU
        memory)."""
        if self.own_tf:
            self.tf.close()
        self.node.destroy_node()
        self.runner = None
        gc.collect()
        torch = sys.modules.get("torch")  # only when the node used it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


class GraphProcess:
    """Several nodes of the graph in one process (the `perception3d_graph` executable), as a composable container
    holds C++ nodes: a RosNodeHost per node, one TF listener for all of them, one executor, and the per-process
    caches (nodes.shared_sweep). An output another node of the process reads (the output's resolved topic is that
    node's resolved input) is handed to it as the message object, with no subscription and no serialization; it is
    still published for every other subscriber."""

    def __init__(self, names: Sequence[str], graph: Graph = FULL_GRAPH, args: Sequence[str] = ()) -> None:
        selected = graph.select(names)
        self.tf = SharedTf("perception3d_graph_tf_listener")
        self.hosts: list[RosNodeHost] = []
        try:
            for graph_node in selected.nodes:  # upstream first
                self.hosts.append(RosNodeHost(graph_node, selected, args, tf=self.tf, subscribe=False))
            # each host set the pools from its own process_threads; the process's are those of all its nodes
            apply_thread_policy(process_thread_count(host.runner.node.params for host in self.hosts))
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        outputs: dict[str, tuple[RosNodeHost, str]] = {}  # resolved topic -> (host, output port)
        for host in self.hosts:
            handed = set()
            for port in host.runner.inputs:
                source = outputs.get(host.node.resolve_topic_name(port))
                if source is not None:
                    upstream, output_port = source
                    upstream.handoffs.setdefault(output_port, []).append(
                        lambda msg, consumer=host, input_port=port: consumer.receive(input_port, msg))
                    handed.add(port)
            host.subscribe(handed)
            outputs.update({host.node.resolve_topic_name(port): (host, port) for port in host.publishers})

    def spin(self) -> None:
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor()
        for host in self.hosts:
            executor.add_node(host.node)
        executor.spin()

    def close(self) -> None:
        for host in self.hosts:
            host.close()
        self.tf.close()


def graph_node_names(args: Sequence[str], graph: Graph = FULL_GRAPH) -> list[str]:
    """The node names a `perception3d_graph` command line asks for (its arguments before --ros-args); all of the
    graph's when it gives none."""
    names = list(args[1:args.index("--ros-args")] if "--ros-args" in args else args[1:])
    return names or [node.name for node in graph.nodes]


def _serve(executable: str, args: Sequence[str] | None, start: Callable[[list[str]], Any]) -> int:
    """rclpy.init, start(args) (a RosNodeHost or a GraphProcess), spin it until shutdown; bad parameters or a missing
    dependency fail at start with exit status 2 and the reason, Ctrl-C ends it quietly with status 0."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    args = list(args or [])
    running = None
    try:
        check_parameter_files(args)  # rclpy.init would fail on them with rcl's terse message
        keep_freed_memory()  # before a node allocates
        rclpy.init(args=args)
        running = start(args)
        settle_garbage_collector()
        running.spin()
    except Perception3DError as exc:
        print(f"{executable}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if running is not None:
            running.close()
        rclpy.try_shutdown()
    return 0


def main(node_name: str, args: Sequence[str] | None = None, graph: Graph = FULL_GRAPH) -> int:
    """Run one graph node under rclpy until shutdown."""
    return _serve(f"perception3d_{node_name}", args, lambda a: RosNodeHost(graph.node(node_name), graph, a))


def main_graph_process(args: Sequence[str] | None = None, graph: Graph = FULL_GRAPH) -> int:
    """Run the nodes the command line names (all by default) in one process until shutdown."""
    args = list(args or [])
    return _serve(GRAPH_EXECUTABLE, args, lambda a: GraphProcess(graph_node_names(a, graph), graph, a))


def main_graph() -> int:
    return main_graph_process(sys.argv)


def main_detector2d() -> int:
    return main("detector2d", sys.argv)


def main_detection3d() -> int:
    return main("detection3d", sys.argv)


def main_segmentation() -> int:
    return main("segmentation", sys.argv)


def main_occupancy() -> int:
    return main("occupancy", sys.argv)
