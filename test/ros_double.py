"""TEST DOUBLE of the parts of ROS 2 (rcl, rclpy, rmw, message_filters, tf2_ros, diagnostic_updater) that
runtime/ros.py relies on.

ROS 2 cannot be installed where perception3d is built and tested. This module stands in for it, and it is STRICT:
each rule below models a behaviour of the real stack, and a comment beside it says where that behaviour is defined
(package, file, function) in the Humble sources. What the double does not model is not verified here; it is not
ROS 2 and proves nothing about ROS 2 itself beyond these rules (the README's ROS 2 section lists them).

`install(monkeypatch)` puts the fake modules into sys.modules; message packages (`sensor_msgs.msg`, ...) hand out
plain mutable classes built from the rosbags typestore with ROS field names and defaults. Topics connect through a
graph (GRAPH) that applies rmw's matching rules, so a test drives a host the way other nodes would: by publishing.
"""
from __future__ import annotations

import enum
import sys
import types
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perception3d.core.geometry import transform_from_quat_xyzw
from perception3d.core.tf_buffer import TfBuffer
from perception3d.errors import TransformError
from perception3d.msgs.factory import MessageFactory, stamp_to_ns
from perception3d.msgs.typestore import typestore

MESSAGE_PACKAGES = ("std_msgs", "sensor_msgs", "vision_msgs", "geometry_msgs", "builtin_interfaces", "tf2_msgs",
                    "diagnostic_msgs", "rcl_interfaces", "visualization_msgs", "perception3d_msgs")
_CLASSES: dict[str, type] = {}


def message_class(msgtype: str) -> type:
    """A mutable message class for 'pkg/msg/Name' with ROS defaults (rclpy classes are mutable)."""
    if msgtype not in _CLASSES:
        store = typestore()
        rosbags_type = store.types[msgtype]
        names = [name for name, _ in store.fielddefs[msgtype][1]]
        defaults_factory = MessageFactory("rosbags")

        def __init__(self, **kwargs):  # noqa: N807 (becomes the class's __init__)
            defaults = defaults_factory(msgtype)
            for name in names:
                setattr(self, name, kwargs.pop(name) if name in kwargs else getattr(defaults, name))
            if kwargs:
                raise TypeError(f"{msgtype} has no fields {sorted(kwargs)}")

        constants = {k: v for k, v in vars(rosbags_type).items() if k.isupper()}
        _CLASSES[msgtype] = type(msgtype.rsplit("/", 1)[1], (), {"__init__": __init__, "_type": msgtype,
                                                                 **constants})
    return _CLASSES[msgtype]


# == rcl: command-line arguments and parameter files ============================================================
class RCLError(RuntimeError):
    """rclpy's RCLError (rclpy/_rclpy_pybind11): what rclpy.init raises when rcl rejects the arguments."""


def rcl_parse_parameter_file(text: str, path: str) -> dict[str, dict[str, Any]]:
    """{section: {dotted name: value}} of a parameter file, with rcl's rules (rcl_yaml_param_parser).

    Written independently of perception3d.nodes.rcl_yaml (the code under test) from the parser's sources.
    """
    import yaml

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        # rcl_yaml_param_parser/src/parser.c (parse_file_events): YAML_ALIAS_EVENT -> "Will not support aliasing";
        # an anchor only exists to be aliased, and libyaml reports anchors on the node events.
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise RCLError(f"Failed to parse parameters file {path}: Will not support aliasing at line "
                           f"{event.start_mark.line + 1}")
        # parse.c (parse_value): only plain/quoted scalars are typed; an explicit tag is not a supported type.
        if getattr(event, "tag", None) is not None and not isinstance(event, yaml.DocumentStartEvent):
            raise RCLError(f"Failed to parse parameters file {path}: unsupported tag {event.tag}")
    doc = yaml.safe_load(text) or {}
    sections: dict[str, dict[str, Any]] = {}

    def walk(prefix: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise RCLError(f"{path}: [{prefix}] is not a node section")
        if "ros__parameters" in body:  # parser.c: PARAMS_KEY "ros__parameters" opens a node's parameters
            sections[prefix] = {}
            flatten(prefix, "", body["ros__parameters"] or {})
        else:  # parser.c: keys above ros__parameters are namespaces joined with '/'
            for key, item in body.items():
                walk(f"{prefix}/{key}".replace("//", "/") if prefix else str(key), item)

    def flatten(section: str, prefix: str, params: dict) -> None:
        for key, value in params.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):  # parser.c: nested maps are parameter namespaces, joined with '.'
                flatten(section, name + ".", value)
                continue
            if isinstance(value, list):
                # parse.c (parse_value): a sequence takes the type of its first element; a later element of another
                # type fails "Sequence should be of same type"; an empty sequence has no type and is refused.
                if not value:
                    raise RCLError(f"{path}: {name}: empty sequence is not supported")
                kinds = {_param_type(v) for v in value}
                if len(kinds) != 1 or None in kinds:
                    raise RCLError(f"{path}: {name}: Sequence should be of same type")
            sections[section][name] = value

    for key, body in doc.items():
        walk(str(key), body)
    return sections


@dataclass
class RosArgs:
    """What rcl_parse_arguments (rcl/src/rcl/arguments.c) keeps of the --ros-args sections of a command line."""

    params_files: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    remaps: list[tuple[str | None, str, str]] = field(default_factory=list)  # (node or None, from, to), in order
    log_level: str | None = None


def rcl_parse_arguments(args: list[str] | None) -> RosArgs:
    import yaml

    out, inside, i = RosArgs(), False, 0
    args = list(args or [])
    while i < len(args):
        arg = args[i]
        if arg == "--ros-args":  # arguments.c: ROS arguments only between --ros-args and -- (or the end)
            inside = True
        elif arg == "--":
            inside = False
        elif inside:
            value = args[i + 1] if i + 1 < len(args) else None
            if value is None:
                raise RCLError(f"rcl: {arg} needs a value")
            if arg in ("-r", "--remap"):  # arguments.c: _rcl_parse_remap_rule, '[node:]from:=to'
                source, _, target = value.partition(":=")
                # arguments.c (_rcl_parse_remap_nodename): a name before ':' makes the rule apply to that node only
                # ("Passing remapping arguments to specific nodes", docs.ros.org How-To-Guides/Node-arguments)
                node, colon, rest = source.partition(":")
                out.remaps.append((node, rest, target) if colon else (None, source, target))
            elif arg == "--params-file":  # arguments.c: the file is parsed here, at init (rcl_parse_yaml_file)
                out.params_files.append(value)
            elif arg in ("-p", "--param"):  # arguments.c: _rcl_parse_param_rule; the value is parsed as YAML
                name, _, text = value.partition(":=")
                out.params[name] = yaml.safe_load(text)
            elif arg == "--log-level":
                out.log_level = value
            else:  # arguments.c: an unknown ROS argument is an error (RCL_RET_INVALID_ROS_ARGS)
                raise RCLError(f"rcl: unknown ROS argument {arg!r}")
            i += 1
        i += 1
    return out


class _Context:
    args: RosArgs | None = None
    files: dict[str, dict[str, dict[str, Any]]] = {}


def init(args: list[str] | None = None) -> None:
    """rclpy.init (rclpy/__init__.py -> rcl_init): parses the ROS arguments and every --params-file."""
    parsed = rcl_parse_arguments(args)
    files = {}
    for path in parsed.params_files:
        with open(path) as handle:
            files[path] = rcl_parse_parameter_file(handle.read(), path)
    _Context.args, _Context.files = parsed, files


def _context() -> RosArgs:
    if _Context.args is None:  # rclpy/node.py: a Node needs an initialised context
        raise RuntimeError("rclpy.init() has not been called")
    return _Context.args


# == rclpy parameters ===========================================================================================
class ParameterType(enum.IntEnum):
    """rclpy/parameter.py Parameter.Type (values of rcl_interfaces/ParameterType)."""

    NOT_SET = 0
    BOOL = 1
    INTEGER = 2
    DOUBLE = 3
    STRING = 4
    BYTE_ARRAY = 5
    BOOL_ARRAY = 6
    INTEGER_ARRAY = 7
    DOUBLE_ARRAY = 8
    STRING_ARRAY = 9


def _param_type(value: Any) -> ParameterType | None:
    # rclpy/parameter.py Parameter.Type.from_parameter_value: bool before int; an EMPTY list is BYTE_ARRAY
    if value is None:
        return ParameterType.NOT_SET
    for kind, scalar in ((bool, ParameterType.BOOL), (int, ParameterType.INTEGER), (float, ParameterType.DOUBLE),
                         (str, ParameterType.STRING)):
        if isinstance(value, kind):
            return scalar
    if isinstance(value, (list, tuple)):
        if not value:
            return ParameterType.BYTE_ARRAY
        kinds = {_param_type(v) for v in value}
        if len(kinds) == 1:
            return {ParameterType.BOOL: ParameterType.BOOL_ARRAY, ParameterType.INTEGER: ParameterType.INTEGER_ARRAY,
                    ParameterType.DOUBLE: ParameterType.DOUBLE_ARRAY,
                    ParameterType.STRING: ParameterType.STRING_ARRAY}.get(kinds.pop())
    return None


class Parameter:
    """rclpy/parameter.py Parameter(name, type_=None, value=None)."""

    Type = ParameterType

    def __init__(self, name: str, type_: ParameterType | None = None, value: Any = None) -> None:
        self.name, self.value = name, value
        self.type_ = type_ if type_ is not None else _param_type(value)


class InvalidParameterTypeException(Exception):  # noqa: N818 (rclpy/exceptions.py name)
    pass


class InvalidParameterValueException(Exception):  # noqa: N818 (rclpy/exceptions.py name)
    pass


class ParameterNotDeclaredException(Exception):  # noqa: N818 (rclpy/exceptions.py name)
    pass


class ParameterAlreadyDeclaredException(Exception):  # noqa: N818 (rclpy/exceptions.py name)
    pass


class ExternalShutdownException(Exception):  # noqa: N818 (rclpy/executors.py name)
    pass


def _descriptor_problem(descriptor: Any, declared: ParameterType, param: Parameter) -> tuple[type, str] | None:
    """rclpy/node.py Node._apply_descriptor: static typing, then the numeric ranges of the descriptor."""
    if not descriptor.dynamic_typing and param.type_ != declared:
        return InvalidParameterTypeException, (f"Wrong parameter type, expected '{declared!r}' got "
                                               f"'{param.type_!r}'")
    for ranges in (descriptor.floating_point_range, descriptor.integer_range):
        if ranges and isinstance(param.value, (int, float)) and not isinstance(param.value, bool):
            lo, hi = ranges[0].from_value, ranges[0].to_value
            if not lo <= param.value <= hi:
                return InvalidParameterValueException, f"{param.name}: {param.value} is not in [{lo}, {hi}]"
    return None


# == rmw: topics, QoS matching ==================================================================================
class ReliabilityPolicy(enum.Enum):
    RELIABLE = 1
    BEST_EFFORT = 2


class DurabilityPolicy(enum.Enum):
    TRANSIENT_LOCAL = 1
    VOLATILE = 2


class HistoryPolicy(enum.Enum):
    KEEP_LAST = 1


@dataclass
class QoSProfile:
    depth: int
    history: HistoryPolicy = HistoryPolicy.KEEP_LAST
    reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE
    durability: DurabilityPolicy = DurabilityPolicy.VOLATILE


QOS_SENSOR_DATA = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)  # rclpy/qos.py


def _qos(profile: Any) -> QoSProfile:
    # rclpy/qos.py: an int is shorthand for QoSProfile(depth=n) (reliable, volatile)
    return QoSProfile(depth=profile) if isinstance(profile, int) else profile


def qos_compatible(offered: QoSProfile, requested: QoSProfile) -> bool:
    """rmw/src/qos_profiles.c rmw_qos_profile_check_compatible: a best-effort publisher cannot serve a reliable
    subscription, a volatile publisher cannot serve a transient-local subscription."""
    if offered.reliability == ReliabilityPolicy.BEST_EFFORT and requested.reliability == ReliabilityPolicy.RELIABLE:
        return False
    return not (offered.durability == DurabilityPolicy.VOLATILE
                and requested.durability == DurabilityPolicy.TRANSIENT_LOCAL)


class Graph:
    """Every endpoint by resolved topic name; publish() delivers to the matched subscriptions."""

    def __init__(self) -> None:
        self.publishers: dict[str, list[Publisher]] = {}
        self.subscriptions: dict[str, list[Subscription]] = {}

    def matched(self, pub: Publisher, sub: Subscription) -> bool:
        # DDS matches endpoints only when the type names agree and the QoS is compatible (rmw_*: type mismatch
        # is reported as an incompatible type, no data flows)
        return pub.msg_class is sub.msg_class and qos_compatible(pub.qos, sub.qos)


GRAPH = Graph()


@dataclass
class Publisher:
    msg_class: type
    topic: str
    qos: QoSProfile
    published: list = field(default_factory=list)

    def publish(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_class):  # rclpy/publisher.py publish: TypeError for another type
            raise TypeError(f"{self.topic}: published a {type(msg).__name__}, publisher is {self.msg_class.__name__}")
        self.published.append(msg)
        for sub in GRAPH.subscriptions.get(self.topic, []):
            if GRAPH.matched(self, sub):
                sub.callback(msg)

    def get_subscription_count(self) -> int:  # rclpy/publisher.py: matched subscriptions
        return sum(GRAPH.matched(self, s) for s in GRAPH.subscriptions.get(self.topic, []))

    def history(self) -> list:
        """Messages a late-joining transient-local subscription receives (the last `depth`)."""
        if self.qos.durability != DurabilityPolicy.TRANSIENT_LOCAL:
            return []
        return self.published[-self.qos.depth:]


@dataclass
class Subscription:
    msg_class: type
    topic: str
    callback: Callable
    qos: QoSProfile


# == rclpy Node, clock, time ===================================================================================
@dataclass
class Time:
    """rclpy/time.py Time(seconds=0, nanoseconds=0)."""

    seconds: float = 0
    nanoseconds: int = 0

    def __post_init__(self) -> None:
        self.nanoseconds = int(self.seconds * 1e9) + int(self.nanoseconds)


@dataclass
class Duration:
    """rclpy/duration.py Duration(seconds=0, nanoseconds=0)."""

    seconds: float = 0
    nanoseconds: int = 0

    def __post_init__(self) -> None:
        self.nanoseconds = int(self.seconds * 1e9) + int(self.nanoseconds)


class Clock:
    def __init__(self) -> None:
        self.now_ns = 0

    def now(self) -> Time:
        return Time(nanoseconds=self.now_ns)


class Logger:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def info(self, text: str) -> None:
        self.infos.append(text)


def _resolve(name: str, node_name: str, namespace: str = "/") -> str:
    """rcl/src/rcl/expand_topic_name.c: '~' is the node's fully qualified name, a relative name goes under the
    namespace."""
    base = namespace.rstrip("/")
    if name.startswith("~"):
        return f"{base}/{node_name}{name[1:]}"
    return name if name.startswith("/") else f"{base}/{name}"


class Node:
    """rclpy/node.py Node, with the parameter, topic and remapping behaviour the host depends on."""

    instances: list = []

    def __init__(self, node_name: str, *, context: Any = None, cli_args: Any = None, namespace: str | None = None,
                 use_global_arguments: bool = True, enable_rosout: bool = True, start_parameter_services: bool = True,
                 parameter_overrides: list[Parameter] | None = None, allow_undeclared_parameters: bool = False,
                 automatically_declare_parameters_from_overrides: bool = False) -> None:
        # rcl/src/rcl/node.c rcl_node_init: the process's (global) ROS arguments apply to every node created with
        # use_global_arguments=True (the default), including '-r __node:=name', which renames it
        args = _context() if use_global_arguments else RosArgs()
        if not use_global_arguments:
            _context()
        # rcl/src/rcl/remap.c (rcl_remap_node_name -> _rcl_remap_first_match): the first rule that matches wins; a
        # node-targeted rule matches only the node of that name
        node_name = next((target for node, source, target in args.remaps
                          if source == "__node" and node in (None, node_name)), node_name)
        self.name, self.namespace = node_name, namespace or "/"
        # rcl/src/rcl/node.c + rclpy/node.py __init__: overrides are the parameter-file sections that match this
        # node ('/**', '<name>', '/<name>', wildcards; rcl_yaml_param_parser/src/parser.c), then -p rules, then
        # the parameter_overrides argument, which wins.
        self._overrides: dict[str, Any] = {}
        for sections in (_Context.files.values() if use_global_arguments else ()):
            for section in ("/**", "/**/" + node_name, node_name, "/" + node_name):
                self._overrides.update(sections.get(section, {}))
        self._overrides.update(args.params)
        self._overrides.update({p.name: p.value for p in parameter_overrides or []})
        self._remaps: dict[str, str] = {}  # remap.c rcl_remap_topic_name: rules expanded with the node's name,
        for node, source, target in args.remaps:  # the first matching rule wins
            if source != "__node" and node in (None, node_name):
                self._remaps.setdefault(_resolve(source, node_name, self.namespace), target)
        self.parameters: dict[str, tuple[Any, Any]] = {}  # name -> (value, descriptor)
        self._types: dict[str, ParameterType] = {}
        self._set_callbacks: list = []
        self.publishers: dict[str, Publisher] = {}
        self.subscribers: list[Subscription] = []
        self.timers: list = []
        self.clock = Clock()
        self.logger = Logger()
        self.destroyed = False
        Node.instances.append(self)

    def get_name(self) -> str:
        return self.name

    # -- parameters --------------------------------------------------------------------------------------------
    def declare_parameter(self, name: str, value: Any = None, descriptor: Any = None,
                          ignore_override: bool = False) -> Parameter:
        """rclpy/node.py declare_parameter -> declare_parameters: the type is inferred from the DEFAULT (static
        typing), the override replaces the value, then _apply_descriptor checks type and range and raises."""
        if name in self.parameters:
            raise ParameterAlreadyDeclaredException(name)
        descriptor = descriptor or message_class("rcl_interfaces/msg/ParameterDescriptor")()
        declared = _param_type(value)
        if not ignore_override and name in self._overrides:
            value = self._overrides[name]
        param = Parameter(name, value=value)
        problem = _descriptor_problem(descriptor, declared, param)
        if problem:
            exception, text = problem
            raise exception(text)
        self.parameters[name] = (value, descriptor)
        self._types[name] = declared
        return param

    def get_parameter(self, name: str) -> Parameter:
        if name not in self.parameters:  # rclpy/node.py get_parameter
            raise ParameterNotDeclaredException(name)
        return Parameter(name, value=self.parameters[name][0])

    def add_on_set_parameters_callback(self, callback: Callable) -> None:
        self._set_callbacks.append(callback)

    def set_parameters(self, parameters: list[Parameter]) -> list[Any]:
        """rclpy/node.py set_parameters -> _set_parameters_atomically per parameter: read-only and the descriptor
        (type, range) are checked first, then every on-set callback must accept, then the value is stored."""
        result_class = message_class("rcl_interfaces/msg/SetParametersResult")
        results = []
        for param in parameters:
            if param.name not in self.parameters:
                results.append(result_class(successful=False, reason="parameter not declared"))
                continue
            descriptor = self.parameters[param.name][1]
            if descriptor.read_only:
                results.append(result_class(successful=False,
                                            reason=f"Trying to set a read-only parameter: {param.name}."))
                continue
            problem = _descriptor_problem(descriptor, self._types[param.name], param)
            if problem:
                results.append(result_class(successful=False, reason=problem[1]))
                continue
            result = result_class(successful=True)
            for callback in self._set_callbacks:
                result = callback([param])
                if not result.successful:
                    break
            if result.successful:
                self.parameters[param.name] = (param.value, descriptor)
            results.append(result)
        return results

    # -- topics ------------------------------------------------------------------------------------------------
    def resolve_topic_name(self, topic: str, *, only_expand: bool = False) -> str:
        """rcl/src/rcl/remap.c rcl_remap_topic_name: a rule matches the WHOLE expanded name ('~/output/a' does not
        rename '~/output/a/label_info')."""
        expanded = _resolve(topic, self.name, self.namespace)
        if only_expand:
            return expanded
        target = self._remaps.get(expanded)
        return _resolve(target, self.name, self.namespace) if target else expanded

    def create_publisher(self, msg_type: type, topic: str, qos_profile: Any) -> Publisher:
        name = self.resolve_topic_name(topic)
        if name in self.publishers:
            raise RuntimeError(f"publisher {name} created twice")
        pub = Publisher(msg_type, name, _qos(qos_profile))
        self.publishers[name] = pub
        GRAPH.publishers.setdefault(name, []).append(pub)
        return pub

    def create_subscription(self, msg_type: type, topic: str, callback: Callable, qos_profile: Any) -> Subscription:
        sub = Subscription(msg_type, self.resolve_topic_name(topic), callback, _qos(qos_profile))
        self.subscribers.append(sub)
        GRAPH.subscriptions.setdefault(sub.topic, []).append(sub)
        for pub in GRAPH.publishers.get(sub.topic, []):  # transient local: the late joiner gets the history
            if GRAPH.matched(pub, sub):
                for msg in pub.history():
                    callback(msg)
        return sub

    def get_topic_names_and_types(self) -> list[tuple[str, list[str]]]:
        """rclpy/node.py get_topic_names_and_types: every topic of the graph with its type names."""
        return [(name, sorted({p.msg_class._type for p in pubs})) for name, pubs in GRAPH.publishers.items() if pubs]

    def create_timer(self, period_s: float, callback: Any) -> Any:
        self.timers.append((period_s, callback))
        return callback

    def get_clock(self) -> Clock:
        return self.clock

    def get_logger(self) -> Logger:
        return self.logger

    def destroy_node(self) -> None:
        for pub in self.publishers.values():
            GRAPH.publishers[pub.topic].remove(pub)
        for sub in self.subscribers:
            GRAPH.subscriptions[sub.topic].remove(sub)
        self.destroyed = True


def create_node(node_name: str, **kwargs: Any) -> Node:  # rclpy/__init__.py create_node
    return Node(node_name, **kwargs)


# == message_filters ===========================================================================================
class Subscriber:
    """message_filters/__init__.py Subscriber(*args, **kwargs): args = (node, msg_type, topic); qos_profile
    defaults to 10 (reliable!); it calls node.create_subscription(msg_type, topic, self.callback, **kwargs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.node, self.topic = args[0], args[2]
        kwargs.setdefault("qos_profile", 10)
        self.callbacks: list = []
        self.sub = self.node.create_subscription(*args[1:], self.callback, **kwargs)

    def callback(self, msg: Any) -> None:
        self.signalMessage(msg)

    def registerCallback(self, callback: Any, *args: Any) -> None:  # noqa: N802 (SimpleFilter API name)
        self.callbacks.append((callback, args))

    def signalMessage(self, *msg: Any) -> None:  # noqa: N802
        for callback, args in self.callbacks:
            callback(*(msg + args))


# == tf2_ros ===================================================================================================
class TransformException(Exception):  # noqa: N818 (tf2_py names, re-exported by tf2_ros/__init__.py)
    pass


class LookupException(TransformException):
    pass


class ConnectivityException(TransformException):
    pass


class ExtrapolationException(TransformException):
    pass


class Buffer:
    """tf2_ros/buffer.py Buffer(cache_time=None, node=None) over tf2's BufferCore, with the rules the host meets.

    Interpolation is served by core.tf_buffer; the ROS rules are modelled here.
    """

    CACHE_TIME_NS = 10 * 10**9  # tf2/buffer_core.h BUFFER_CORE_DEFAULT_CACHE_TIME = 10 s

    def __init__(self, cache_time: Duration | None = None, node: Any = None) -> None:
        self.cache_time_ns = cache_time.nanoseconds if cache_time else self.CACHE_TIME_NS
        self._tf = TfBuffer(cache_time_ns=self.cache_time_ns)
        self._newest: dict[str, int] = {}
        self.rejected_old = 0
        self.listener: TransformListener | None = None
        self.in_flight: deque = deque()  # (delay_s, TransformStamped): /tf on its way, not received yet

    def set_transform(self, transform: Any, authority: str) -> bool:
        stamp = stamp_to_ns(transform.header.stamp)
        newest = self._newest.get(transform.child_frame_id)
        # tf2/src/cache.cpp TimeCache::insertData: data older than the newest minus the cache time is dropped
        # ("TF_OLD_DATA ignoring data from the past"), e.g. after a bag loop until the buffer is cleared
        if newest is not None and stamp < newest - self.cache_time_ns:
            self.rejected_old += 1
            return False
        self._newest[transform.child_frame_id] = max(stamp, newest or stamp)
        self._insert(transform, static=False)
        return True

    def set_transform_static(self, transform: Any, authority: str) -> bool:
        self._insert(transform, static=True)
        return True

    def _insert(self, t: Any, static: bool) -> None:
        tr, q = t.transform.translation, t.transform.rotation
        self._tf.set_transform(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                               transform_from_quat_xyzw([tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w]), static)

    def clear(self) -> None:
        """tf2/src/buffer_core.cpp BufferCore::clear: every TimeCache is emptied; StaticCache::clearList does
        nothing, so static transforms stay."""
        self._tf.clear_dynamic()
        self._newest.clear()

    def lookup_transform(self, target_frame: str, source_frame: str, time: Time,
                         timeout: Duration | None = None) -> Any:
        """tf2_ros/buffer.py lookup_transform(target_frame, source_frame, time, timeout=Duration()): with a timeout
        it waits (can_transform) for the listener to receive the data; without one it answers from what is
        buffered now. Time 0 is tf2's 'latest' (tf2/src/buffer_core.cpp, getLatestCommonTime); the double answers it
        through core.tf_buffer at stamp 0, which is the same for frames joined by static transforms only (the host
        asks time 0 only for those: NodeDefinition.prepare) and an ExtrapolationException through a /tf edge."""
        from perception3d.msgs.tf import transform_stamped

        timeout_ns = timeout.nanoseconds if timeout is not None else 0
        # The wait is served only by a listener spinning in its own thread (tf2_ros/transform_listener.py
        # spin_thread=True): a callback blocking the node's single-threaded executor starves its own /tf
        # subscription, and the lookup waits out the timeout every time.
        if timeout_ns > 0 and self.listener is not None and self.listener.spin_thread:
            while self.in_flight and self.in_flight[0][0] * 1e9 <= timeout_ns:
                self.set_transform(self.in_flight.popleft()[1], "in flight")
        try:
            T = self._tf.lookup(target_frame, source_frame, time.nanoseconds)
        except TransformError as exc:
            raise (LookupException if "unknown" in str(exc) else ExtrapolationException)(str(exc)) from exc
        return transform_stamped(T, target_frame, source_frame, time.nanoseconds)


class _Executor:
    def __init__(self) -> None:
        self.stopped = False

    def shutdown(self) -> None:
        self.stopped = True


class _Thread:
    def __init__(self) -> None:
        self.joined = False

    def join(self, timeout: float | None = None) -> None:
        self.joined = True


class TransformListener:
    """tf2_ros/transform_listener.py TransformListener(buffer, node, *, spin_thread=False, qos=None,
    static_qos=None): subscribes /tf (depth 100) and /tf_static (transient local) on `node`; with spin_thread it
    spins that node in its own SingleThreadedExecutor (`executor`) on `dedicated_listener_thread`."""

    def __init__(self, buffer: Buffer, node: Node, *, spin_thread: bool = False, qos: Any = None,
                 static_qos: Any = None) -> None:
        self.buffer, self.node, self.spin_thread = buffer, node, spin_thread
        buffer.listener = self
        tf_class = message_class("tf2_msgs/msg/TFMessage")
        node.create_subscription(tf_class, "/tf", self.callback, qos or QoSProfile(depth=100))
        node.create_subscription(tf_class, "/tf_static", self.static_callback, static_qos or QoSProfile(
            depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        if spin_thread:
            self.executor, self.dedicated_listener_thread = _Executor(), _Thread()
            _Spun.nodes.add(id(node))

    def callback(self, msg: Any) -> None:
        for t in msg.transforms:
            self.buffer.set_transform(t, "default_authority")

    def static_callback(self, msg: Any) -> None:
        for t in msg.transforms:
            self.buffer.set_transform_static(t, "default_authority")


class _Spun:
    """Nodes already spun by an executor: rclpy/executors.py allows a node in one executor only."""

    nodes: set = set()


def spin(node: Node) -> None:
    if id(node) in _Spun.nodes:
        raise RuntimeError(f"node {node.name} is already spun by the TF listener's executor")


class SingleThreadedExecutor:
    """rclpy/executors.py SingleThreadedExecutor: add_node, then spin runs the nodes' callbacks on this thread (in
    the double the test drives callbacks by publishing, so spin returns at once)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add_node(self, node: Node) -> bool:
        if id(node) in _Spun.nodes:
            raise RuntimeError(f"node {node.name} is already spun by the TF listener's executor")
        if node in self.nodes:  # executors.py add_node: a node already added is not added again
            return False
        self.nodes.append(node)
        return True

    def spin(self) -> None:
        SingleThreadedExecutor.spun.append(self)

    spun: list = []


# == diagnostic_updater ========================================================================================
class DiagnosticStatusWrapper:
    """diagnostic_updater/_diagnostic_status_wrapper.py: summary(level, message), add(key, value)."""

    def __init__(self, name: str) -> None:
        self.name, self.level, self.message, self.values = name, None, "", {}

    def summary(self, level: Any, message: str) -> None:
        self.level, self.message = level, message

    def add(self, key: str, value: str) -> None:
        self.values[key] = value


class Updater:
    """diagnostic_updater/_updater.py Updater(node, period=1.0): setHardwareID(id); add(name, function), where
    the function fills and returns the DiagnosticStatusWrapper it is given; force_update()."""

    def __init__(self, node: Node, period: float = 1.0) -> None:
        self.node, self.period = node, period
        self.hardware_id = ""
        self.tasks: list = []
        node.updater = self

    def setHardwareID(self, hardware_id: str) -> None:  # noqa: N802
        self.hardware_id = hardware_id

    def add(self, name: str, callback: Any) -> None:
        self.tasks.append((name, callback))

    def force_update(self) -> list[DiagnosticStatusWrapper]:
        out = []
        for name, callback in self.tasks:
            stat = callback(DiagnosticStatusWrapper(name))
            if not isinstance(stat, DiagnosticStatusWrapper):  # _updater.py publishes what the task returns
                raise TypeError(f"diagnostic task {name} returned {stat!r}, not the status")
            out.append(stat)
        return out


# == install ===================================================================================================
def _message_attribute(package: str, name: str) -> type:
    if name.startswith("_") or f"{package}/msg/{name}" not in typestore().types:
        raise AttributeError(f"module {package}.msg has no attribute {name}")
    return message_class(f"{package}/msg/{name}")


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def try_shutdown() -> None:
    _Context.args = None


def install(monkeypatch: Any) -> None:
    """Put the double's modules into sys.modules for one test (monkeypatch undoes it); a fresh graph."""
    global GRAPH
    GRAPH = Graph()
    Node.instances = []
    _Spun.nodes = set()
    SingleThreadedExecutor.spun = []
    _Context.args, _Context.files = None, {}
    modules = {
        "rclpy": _module("rclpy", init=init, spin=spin, try_shutdown=try_shutdown, create_node=create_node),
        "rclpy.node": _module("rclpy.node", Node=Node),
        "rclpy.parameter": _module("rclpy.parameter", Parameter=Parameter),
        "rclpy.exceptions": _module("rclpy.exceptions", InvalidParameterTypeException=InvalidParameterTypeException,
                                    InvalidParameterValueException=InvalidParameterValueException,
                                    ParameterNotDeclaredException=ParameterNotDeclaredException),
        "rclpy.executors": _module("rclpy.executors", ExternalShutdownException=ExternalShutdownException,
                                   SingleThreadedExecutor=SingleThreadedExecutor),
        "rclpy.qos": _module("rclpy.qos", QoSProfile=QoSProfile, ReliabilityPolicy=ReliabilityPolicy,
                             DurabilityPolicy=DurabilityPolicy, HistoryPolicy=HistoryPolicy,
                             qos_profile_sensor_data=QOS_SENSOR_DATA),
        "rclpy.time": _module("rclpy.time", Time=Time),
        "rclpy.duration": _module("rclpy.duration", Duration=Duration),
        "message_filters": _module("message_filters", Subscriber=Subscriber),
        "tf2_ros": _module("tf2_ros", Buffer=Buffer, TransformListener=TransformListener,
                           TransformException=TransformException, LookupException=LookupException,
                           ConnectivityException=ConnectivityException, ExtrapolationException=ExtrapolationException),
        "diagnostic_updater": _module("diagnostic_updater", Updater=Updater,
                                      DiagnosticStatusWrapper=DiagnosticStatusWrapper),
    }
    for package in MESSAGE_PACKAGES:
        msg = _module(f"{package}.msg")
        msg.__getattr__ = lambda name, package=package: _message_attribute(package, name)
        modules[package] = _module(package, msg=msg)
        modules[f"{package}.msg"] = msg
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def to_double(msg: Any) -> Any:
    """A rosbags message (e.g. read from a bag) as the double's rclpy-like message class, fields converted."""
    msgtype = getattr(type(msg), "__msgtype__", None)
    if msgtype is None:
        return [to_double(m) for m in msg] if isinstance(msg, list) else msg
    names = [name for name, _ in typestore().fielddefs[msgtype][1]]
    return message_class(msgtype)(**{name: to_double(getattr(msg, name)) for name in names})
