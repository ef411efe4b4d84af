"""TEST DOUBLE of the parts of rclpy, message_filters, tf2_ros and diagnostic_updater that runtime/ros.py uses.

ROS 2 cannot be installed where perception3d is built and tested. This module stands in for it so that the rclpy
host's wiring (parameters, QoS, subscriptions, publishing, TF lookups, diagnostics) can be exercised: it RECORDS what
the host asks for and lets a test drive callbacks. It is not ROS 2 and proves nothing about ROS 2 itself.
`install(monkeypatch)` puts fake modules into sys.modules; message packages (`sensor_msgs.msg`, ...) hand out
plain mutable classes built from the rosbags typestore with ROS field names and defaults.
"""
from __future__ import annotations

import enum
import sys
import types
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


# -- rclpy ---------------------------------------------------------------------------------------------------
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


QOS_SENSOR_DATA = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


@dataclass
class Time:
    nanoseconds: int = 0


@dataclass
class Publisher:
    msg_class: type
    topic: str
    qos: Any
    published: list = field(default_factory=list)
    subscription_count: int = 1

    def publish(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_class):
            raise TypeError(f"{self.topic}: published a {type(msg).__name__}, publisher is {self.msg_class.__name__}")
        self.published.append(msg)

    def get_subscription_count(self) -> int:
        return self.subscription_count


class Clock:
    def __init__(self) -> None:
        self.now_ns = 0

    def now(self) -> Time:
        return Time(self.now_ns)


class Logger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)


class Parameter:
    def __init__(self, value: Any) -> None:
        self.value = value


class Node:
    """Records declared parameters, publishers, subscribers and timers. `PARAMETER_OVERRIDES` plays --ros-args -p."""

    PARAMETER_OVERRIDES: dict[str, Any] = {}
    instances: list = []

    def __init__(self, name: str) -> None:
        self.name = name
        self.parameters: dict[str, tuple[Any, Any]] = {}
        self.publishers: dict[str, Publisher] = {}
        self.subscribers: list = []
        self.timers: list = []
        self.clock = Clock()
        self.logger = Logger()
        Node.instances.append(self)

    def declare_parameter(self, name: str, value: Any, descriptor: Any) -> Parameter:
        if name in self.parameters:
            raise RuntimeError(f"parameter {name} declared twice")
        self.parameters[name] = (value, descriptor)
        return Parameter(self.PARAMETER_OVERRIDES.get(name, value))

    def get_parameter(self, name: str) -> Parameter:
        return Parameter(self.PARAMETER_OVERRIDES.get(name, self.parameters[name][0]))

    def create_publisher(self, msg_class: type, topic: str, qos: Any) -> Publisher:
        if topic in self.publishers:
            raise RuntimeError(f"publisher {topic} created twice")
        self.publishers[topic] = Publisher(msg_class, topic, qos)
        return self.publishers[topic]

    def create_timer(self, period_s: float, callback: Any) -> Any:
        self.timers.append((period_s, callback))
        return callback

    def get_clock(self) -> Clock:
        return self.clock

    def get_logger(self) -> Logger:
        return self.logger


# -- message_filters ------------------------------------------------------------------------------------------
class Subscriber:
    """message_filters.Subscriber: records its arguments; a test calls signalMessage as the executor would."""

    def __init__(self, node: Node, msg_class: type, topic: str, qos_profile: Any = 10) -> None:
        self.node, self.msg_class, self.topic, self.qos_profile = node, msg_class, topic, qos_profile
        self.callbacks: list = []
        node.subscribers.append(self)

    def registerCallback(self, callback: Any) -> None:  # noqa: N802 (message_filters API name)
        self.callbacks.append(callback)

    def signalMessage(self, msg: Any) -> None:  # noqa: N802
        for callback in self.callbacks:
            callback(msg)


# -- tf2_ros ------------------------------------------------------------------------------------------------------
class LookupException(Exception):  # noqa: N818 (tf2_ros names)
    pass


class ConnectivityException(Exception):  # noqa: N818 (tf2_ros names)
    pass


class ExtrapolationException(Exception):  # noqa: N818 (tf2_ros names)
    pass


class Buffer:
    """tf2_ros.Buffer with set_transform / lookup_transform, backed by core.tf_buffer (a double, not tf2)."""

    def __init__(self) -> None:
        self._tf = TfBuffer()

    def set_transform(self, t: Any, authority: str, static: bool = False) -> None:
        tr, q = t.transform.translation, t.transform.rotation
        self._tf.set_transform(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                               transform_from_quat_xyzw([tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w]), static)

    def lookup_transform(self, target: str, source: str, time: Time) -> Any:
        from perception3d.msgs.tf import transform_stamped

        try:
            T = self._tf.lookup(target, source, time.nanoseconds)
        except TransformError as exc:
            raise (LookupException if "unknown" in str(exc) else ExtrapolationException)(str(exc)) from exc
        return transform_stamped(T, target, source, time.nanoseconds)


class TransformListener:
    def __init__(self, buffer: Buffer, node: Node) -> None:
        self.buffer, self.node = buffer, node


# -- diagnostic_updater -----------------------------------------------------------------------------------------
class DiagnosticStatusWrapper:
    def __init__(self, name: str) -> None:
        self.name, self.level, self.message, self.values = name, None, "", {}

    def summary(self, level: Any, message: str) -> None:
        self.level, self.message = level, message

    def add(self, key: str, value: str) -> None:
        self.values[key] = value


class Updater:
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
        return [callback(DiagnosticStatusWrapper(name)) for name, callback in self.tasks]


def _message_attribute(package: str, name: str) -> type:
    if name.startswith("_") or f"{package}/msg/{name}" not in typestore().types:
        raise AttributeError(f"module {package}.msg has no attribute {name}")
    return message_class(f"{package}/msg/{name}")


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install(monkeypatch: Any) -> None:
    """Put the double's modules into sys.modules for one test (monkeypatch undoes it)."""
    Node.instances = []
    Node.PARAMETER_OVERRIDES = {}
    modules = {
        "rclpy": _module("rclpy", init=lambda args=None: None, spin=lambda node: None, try_shutdown=lambda: None),
        "rclpy.node": _module("rclpy.node", Node=Node),
        "rclpy.qos": _module("rclpy.qos", QoSProfile=QoSProfile, ReliabilityPolicy=ReliabilityPolicy,
                             DurabilityPolicy=DurabilityPolicy, HistoryPolicy=HistoryPolicy,
                             qos_profile_sensor_data=QOS_SENSOR_DATA),
        "rclpy.time": _module("rclpy.time", Time=Time),
        "message_filters": _module("message_filters", Subscriber=Subscriber),
        "tf2_ros": _module("tf2_ros", Buffer=Buffer, TransformListener=TransformListener,
                           LookupException=LookupException, ConnectivityException=ConnectivityException,
                           ExtrapolationException=ExtrapolationException),
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
