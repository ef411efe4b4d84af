"""What a node is: its parameters, input streams, outputs, and `process(frame, tf, timer) -> [(port, message)]`.

A node is a subclass of `NodeDefinition`. It never sees a subscription, a bag or rclpy: a host (the bag runtime or
the rclpy host, through `nodes.runner.NodeRunner`) subscribes to its input ports, synchronizes them with
`core.sync.LidarSync`, decodes and validates the messages into the `Frame` handed to `process`, and publishes what
`process` returns. Ports are ROS-style private names that the graph (`runtime/graph.py`) remaps to topics:

- `~/input/pointcloud`: the LiDAR sweep (sensor_msgs/PointCloud2); it triggers LiDAR nodes.
- `~/input/pointcloud/<lidar>`: the other LiDARs of the `lidar_names` parameter, for nodes that merge them
  (`merges_lidars`); the host hands them over in `Frame.extra_lidars` (nodes.sweep merges them).
- `~/input/<camera>/image`, `~/input/<camera>/camera_info`, `~/input/<camera>/detections`: the camera streams a
  node asks for in `camera_streams`, one set per camera of the `camera_names` parameter.
- outputs: `OutputSpec.port`, e.g. `~/output/objects`; `{camera}` in a port makes one output per camera.

A minimal node::

    class Counter(NodeDefinition):
        name = "counter"
        parameters = (Param("min_points", "int", 1, "sweeps with fewer points are skipped", 0, 10**7),)
        camera_streams = ("camera_info", "detections")
        outputs = (OutputSpec("~/output/objects", "vision_msgs/msg/Detection3DArray",
                              label_classes=DETECTION_CLASSES),)

        def process(self, frame, tf, timer):
            with timer.stage("pre"):
                T_base_lidar = tf.lookup(self.params["base_frame"], frame.lidar.frame_id, frame.stamp_ns)
            ...
            return [("~/output/objects", detections3d_to_msg(dets, self.factory))]

Outputs must carry the source stamp (`frame.stamp_ns`, the LiDAR stamp); the runner checks it.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from ..core.camera import CameraModel
from ..core.detections import Detections2D
from ..core.geometry import invert_transform
from ..msgs.factory import MessageFactory, default_factory
from ..msgs.qos import OUTPUT, SENSOR, QosSpec
from .params import Param

LIDAR_PORT = "~/input/pointcloud"
# camera stream -> (accepted message types, first one is what ROS subscribes to)
CAMERA_STREAM_TYPES: dict[str, tuple[str, ...]] = {
    "image": ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "detections": ("vision_msgs/msg/Detection2DArray",),
}
LIDAR_TYPES: tuple[str, ...] = ("sensor_msgs/msg/PointCloud2",)
STAGES: tuple[str, ...] = ("pre", "infer", "post")


def camera_port(camera: str, stream: str) -> str:
    """The input port of one camera stream, e.g. '~/input/CAM_FRONT/detections'."""
    return f"~/input/{camera}/{stream}"


@dataclass(frozen=True)
class OutputSpec:
    """One output of a node.

    Attributes:
        port: '~/output/...' name; '{camera}' in it makes one output per camera.
        msgtype: ROS 2 type name, e.g. 'vision_msgs/msg/Detection3DArray'.
        qos: offered QoS (outputs are reliable; see msgs.qos).
        label_classes: class names (index = class id, or an {id: name} map) of a labelled output; the host publishes a
            vision_msgs/LabelInfo (transient local) on its own port `label_port` ('<port>/label_info'), which the
            graph maps to '<topic>/label_info'.
        description: one line for the README topic table.
    """

    port: str
    msgtype: str
    qos: QosSpec = OUTPUT
    label_classes: tuple[str, ...] | Mapping[int, str] | None = None
    description: str = ""

    @property
    def per_camera(self) -> bool:
        return "{camera}" in self.port

    @property
    def label_port(self) -> str | None:
        """The LabelInfo port of a labelled output ('{camera}' expands like the port), else None."""
        return f"{self.port}/label_info" if self.label_classes is not None else None


@dataclass(frozen=True)
class InputPort:
    """One subscription of a node: port, accepted message types, QoS, (camera, stream) for camera inputs, and the
    LiDAR name for the ports of LiDARs merged into the trigger's sweep."""

    port: str
    msgtypes: tuple[str, ...]
    qos: QosSpec = SENSOR
    camera: str | None = None
    stream: str | None = None
    lidar: str | None = None


def extra_lidar_port(lidar: str) -> str:
    """The input port of a LiDAR merged into the trigger's sweep, e.g. '~/input/pointcloud/LIDAR_FRONT_LEFT'."""
    return f"{LIDAR_PORT}/{lidar}"


@dataclass
class LidarInput:
    """The triggering sweep: stamp [ns], frame (the LiDAR frame), points (structured view), the message itself."""

    stamp_ns: int
    frame_id: str
    points: np.ndarray
    msg: Any


@dataclass
class CameraInput:
    """One camera's data matched to the frame; streams the node did not ask for are None.

    Attributes:
        stamp_ns: the camera message stamp [ns] (look up camera transforms at this stamp).
        delta_ns: stamp - (LiDAR stamp + configured offset) [ns].
        frame_id: the optical frame of the camera.
        camera: the validated CameraModel (from CameraInfo).
        detections: Detections2D of the camera's Detection2DArray.
        image: decoded pixels (RGB (H, W, 3) uint8 for JPEG; see msgs.image).
        msgs: {stream: raw message}.
    """

    name: str
    stamp_ns: int
    delta_ns: int
    frame_id: str
    camera: CameraModel | None = None
    detections: Detections2D | None = None
    image: np.ndarray | None = None
    msgs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Frame:
    """What process() receives: the trigger stamp, the sweep, matched cameras and {camera: reason} missing ones.

    LiDAR nodes: stamp_ns is the sweep's stamp and lidar is set; extra_lidars holds, for nodes that merge LiDARs,
    the newest sweep of each other LiDAR stamped at or before it (within lidar_merge_window_s). Camera-triggered
    nodes (trigger = 'camera'): lidar is None, `cameras` holds the images of one camera firing cycle
    (core.camera_sets; each with its own stamp) and stamp_ns is the earliest of them; outputs per camera carry that
    camera's image stamp.
    """

    stamp_ns: int
    lidar: LidarInput | None
    cameras: dict[str, CameraInput]
    missing: dict[str, str]
    extra_lidars: dict[str, LidarInput] = field(default_factory=dict)


class TransformLookup(Protocol):
    """Transforms at a stamp; the bag runtime serves them from core.tf_buffer, the rclpy host from tf2_ros."""

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> np.ndarray:
        """4x4 T_target_source mapping points in source_frame into target_frame at stamp_ns.

        Raises:
            TransformError: a frame is unknown or the stamp is outside the buffered time.
        """
        ...


def lookup_across_time(tf: TransformLookup, target_frame: str, target_stamp_ns: int, source_frame: str,
                       source_stamp_ns: int, fixed_frame: str = "map",
                       T_fixed_source: np.ndarray | None = None) -> np.ndarray:
    """4x4 mapping points of source_frame at source_stamp_ns into target_frame at target_stamp_ns.

    Goes through fixed_frame (a world frame), so the ego motion between the two stamps is compensated (tf2's
    lookup_transform_full): T = inv(T_fixed_target(t_target)) @ T_fixed_source(t_source). Use it to project a LiDAR
    sweep into a camera image taken tens of milliseconds earlier. T_fixed_source: that transform when the caller
    already looked it up (one sweep into several cameras).
    """
    T_fixed_target = tf.lookup(fixed_frame, target_frame, target_stamp_ns)
    if T_fixed_source is None:
        T_fixed_source = tf.lookup(fixed_frame, source_frame, source_stamp_ns)
    return invert_transform(T_fixed_target) @ T_fixed_source


class StageTimer:
    """Wall-clock milliseconds of the stages of one frame ('pre', 'infer', 'post'); stages may repeat."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3


class NodeDefinition:
    """Base class of every node. Subclasses set the class attributes and implement `process`.

    Class attributes:
        name: the node name (parameter-file section, executable `perception3d_<name>`).
        description: one line for the README.
        parameters: the node's own parameters (the shared ones in nodes.params.SHARED_PARAMS come on top).
        trigger: 'lidar' (one frame per LiDAR sweep, cameras synchronized to it) or 'camera' (one frame per camera
            firing cycle: the cycle's images together, for one batched forward pass, each with its camera's latest
            CameraInfo).
        camera_streams: per-camera streams the node needs: any of 'image', 'camera_info', 'detections'.
        merges_lidars: a LiDAR node that merges the other LiDARs of `lidar_names` into the trigger's sweep.
        outputs: the OutputSpecs the node publishes.
        images_as_rgb: the node takes images as RGB (H, W, 3) uint8: the host turns grey 8-bit images into RGB and
            marks a camera whose image has another pixel format missing (counted), instead of failing the batch.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Param, ...]] = ()
    trigger: ClassVar[str] = "lidar"
    camera_streams: ClassVar[tuple[str, ...]] = ()
    merges_lidars: ClassVar[bool] = False
    outputs: ClassVar[tuple[OutputSpec, ...]] = ()
    images_as_rgb: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any], factory: MessageFactory | None = None) -> None:
        """params: {dotted name: value}, validated (shared + own); factory builds messages for the host's backend."""
        self.params = dict(params)
        self.factory = factory or default_factory()

    def process(self, frame: Frame, tf: TransformLookup, timer: StageTimer) -> list[tuple[str, Any]]:
        """Turn one frame into [(output port, message)], each stamped with frame.stamp_ns.

        Raise an InputError subclass for data that cannot be used (the host counts and drops the frame) and let
        TransformError from tf propagate (counted the same way).
        """
        raise NotImplementedError

    def prepare(self, tf: TransformLookup) -> bool:
        """Build, before the first frame, what depends on the rig's static transforms (looked up at stamp 0: the
        latest); True when done. The host calls it when its transforms may have arrived (the bag runtime once they
        are loaded, the ROS host on its timer) until it returns True or the first frame comes; a TransformError counts
        as not yet. The default has nothing to build."""
        return True

    def model_state(self) -> str:
        """One line for diagnostics, e.g. 'geometric mode' or 'checkpoint loaded on cuda:0'."""
        return "ready"

    def update_parameters(self, changes: Mapping[str, Any]) -> None:
        """Apply validated new values of writable parameters (`ros2 param set`). Nodes read self.params on every
        frame, so storing them is enough; a node that caches a value overrides this to refresh it."""
        self.params.update(changes)

    @property
    def label_threshold(self) -> float:
        """The score threshold LabelInfo reports (the node's `score_threshold`, 0 when it has none)."""
        return float(self.params.get("score_threshold", 0.0))

    @classmethod
    def check_definition(cls) -> None:
        """Raise TypeError when the class attributes are inconsistent (called by hosts at start)."""
        if not cls.name:
            raise TypeError(f"{cls.__name__}.name is empty")
        if cls.trigger not in ("lidar", "camera"):
            raise TypeError(f"{cls.__name__}.trigger is {cls.trigger!r}; expected 'lidar' or 'camera'")
        unknown = set(cls.camera_streams) - set(CAMERA_STREAM_TYPES)
        if unknown:
            raise TypeError(f"{cls.__name__}.camera_streams has unknown {sorted(unknown)}")
        if cls.trigger == "camera" and ("image" not in cls.camera_streams or "detections" in cls.camera_streams):
            raise TypeError(f"{cls.__name__}: a camera-triggered node takes 'image' (+ 'camera_info') streams")
        ports = [o.port for o in cls.outputs]
        if len(set(ports)) != len(ports) or not all(p.startswith("~/output/") for p in ports):
            raise TypeError(f"{cls.__name__}.outputs ports must be unique '~/output/...' names: {ports}")

    @classmethod
    def input_ports(cls, camera_names: Sequence[str], extra_lidars: Sequence[str] = ()) -> list[InputPort]:
        """The node's subscriptions for the given cameras (and the LiDARs it merges into the trigger's sweep)."""
        ports = [InputPort(LIDAR_PORT, LIDAR_TYPES)] if cls.trigger == "lidar" else []
        if cls.trigger == "lidar" and cls.merges_lidars:
            ports += [InputPort(extra_lidar_port(name), LIDAR_TYPES, lidar=name) for name in extra_lidars]
        for camera in camera_names:
            for stream in cls.camera_streams:
                ports.append(InputPort(camera_port(camera, stream), CAMERA_STREAM_TYPES[stream],
                                       camera=camera, stream=stream))
        return ports

    @classmethod
    def output_ports(cls, camera_names: Sequence[str]) -> dict[str, OutputSpec]:
        """{concrete output port: spec}, per-camera outputs expanded."""
        out = {}
        for spec in cls.outputs:
            for camera in (camera_names if spec.per_camera else [None]):
                out[spec.port.format(camera=camera) if camera else spec.port] = spec
        return out

    @classmethod
    def label_ports(cls, camera_names: Sequence[str]) -> dict[str, str]:
        """{concrete LabelInfo port: the concrete output port it describes}, per labelled output."""
        return {f"{port}/label_info": port for port, spec in cls.output_ports(camera_names).items()
                if spec.label_classes is not None}

    @classmethod
    def ports_as_topics(cls, camera_names: Sequence[str]) -> dict[str, str]:
        """{port: the port's own name as its topic} for every input, output and LabelInfo port: the ROS host's
        topics, which ROS remaps by name, and a runner's wiring where topics do not matter (tests, benchmarks)."""
        ports = [p.port for p in cls.input_ports(camera_names)]
        ports += [*cls.output_ports(camera_names), *cls.label_ports(camera_names)]
        return {port: port for port in ports}
