"""The perception graph: which nodes exist, where their definitions live, and how their ports map to topics.

Described once, read by the launch files (remappings, executables) and by the bag runtime (`perception3d
replay`). Input topics follow the bag conventions of `perception3d convert`: `/LIDAR_TOP/points`,
`/<camera>/image/compressed`, `/<camera>/camera_info`, `/<camera>/detections` (an external 2D detector's or recorded
detections), `/tf`, `/tf_static`. Outputs go under `/perception/`.

2D detections: when `detector2d` runs in the same graph, `detection3d` and `segmentation` read its output
(`/perception/<camera>/detections`); otherwise they read the external `/<camera>/detections`.

Occupancy points: when `segmentation` runs in the same graph, `occupancy` reads its labelled cloud (the sweep's
points + label), so occupied voxels get classes; otherwise it reads the raw sweep.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..msgs.topics import (
    OBJECT_MARKERS_TOPIC,
    OBJECT_MOTION_TOPIC,
    OBJECTS_TOPIC,
    OCCUPANCY_GRID_TOPIC,
    OCCUPANCY_MARKERS_TOPIC,
    OCCUPANCY_VOXELS_TOPIC,
    SEGMENTATION_TOPIC,
)
from ..nodes.base import CAMERA_STREAM_TYPES, LIDAR_PORT, LIDAR_TYPES, NodeDefinition

GRAPH_EXECUTABLE = "perception3d_graph"  # the console script running several nodes in one process (runtime.ros)
LIDAR_TOPIC = "/LIDAR_TOP/points"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
DETECTIONS_PLACEHOLDER = "{detections}"
LABELLED_POINTS_PLACEHOLDER = "{labelled_points}"
EXTERNAL_DETECTIONS_TOPIC = "/{camera}/detections"
DETECTOR2D_DETECTIONS_TOPIC = "/perception/{camera}/detections"
OUTPUT_PORT_PREFIX = "~/output/"  # a node's output ports; its input ports are under ~/input/
_CAMERA_INPUTS = {
    "~/input/{camera}/image": "/{camera}/image/compressed",
    "~/input/{camera}/camera_info": "/{camera}/camera_info",
    "~/input/{camera}/detections": DETECTIONS_PLACEHOLDER,
}


class NodeNotImplementedError(ConfigError):
    """A graph node whose definition module does not exist yet."""


class NodeDependencyError(ConfigError):
    """A node's definition needs a package that is not installed (e.g. torch for detector2d)."""


# how to install what a node may need on a ROS machine (ros2_ws/README.md explains the choice of build)
INSTALL_HINTS = {
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu  (CPU build; for the CUDA build "
             "see ros2_ws/README.md)",
    "onnxruntime": "pip install onnxruntime  (onnxruntime-gpu for CUDA)",
    "rosbags": 'pip install "rosbags>=0.11.9,<0.12"',
}


@dataclass(frozen=True)
class GraphOutput:
    """One output of a graph node: its topic ('{camera}' expands per camera) and message type.

    label_info: the output is labelled (its OutputSpec has label_classes); its vision_msgs/LabelInfo goes out on
    the port '<port>/label_info', mapped to '<topic>/label_info' (ROS remaps whole names, so the LabelInfo port
    needs a remapping of its own).
    """

    topic: str
    msgtype: str
    label_info: bool = False


@dataclass(frozen=True)
class GraphNode:
    """A node of the graph.

    Attributes:
        name: node name (parameter section, launch name).
        definition: 'module:Class' of its NodeDefinition, or the class itself (test graphs).
        inputs: {port: topic}; '{camera}' expands per camera, '{detections}' resolves as the module doc says.
        outputs: {port: GraphOutput}.
        description: one line for the README.
    """

    name: str
    definition: str | type[NodeDefinition]
    inputs: Mapping[str, str]
    outputs: Mapping[str, GraphOutput]
    description: str = ""

    @property
    def executable(self) -> str:
        """The console script of the rclpy host for this node."""
        return f"perception3d_{self.name}"

    def load(self) -> type[NodeDefinition]:
        """The node's definition class.

        Raises:
            NodeNotImplementedError: its module does not exist yet.
            NodeDependencyError: its module needs a package that is not installed (the message says how to install
                it). Only the node's own process loads its definition; launch files never do.
        """
        if not isinstance(self.definition, str):
            definition = self.definition
        else:
            module_name, _, class_name = self.definition.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    missing = (exc.name or "").split(".")[0]
                    hint = INSTALL_HINTS.get(missing, f"pip install {missing}")
                    raise NodeDependencyError(f"node {self.name} needs the Python package {missing!r}, which is not "
                                              f"installed: {hint}") from exc
                raise NodeNotImplementedError(
                    f"node {self.name} is not implemented yet ({module_name} does not exist); the graph only "
                    f"describes its wiring") from exc
            definition = getattr(module, class_name)
        self._check(definition)
        return definition

    def _check(self, definition: type[NodeDefinition]) -> None:
        if definition.name != self.name:
            raise TypeError(f"graph node {self.name} loads a definition named {definition.name!r}")
        for spec in definition.outputs:
            wired = self.outputs.get(spec.port)
            if wired is None or wired.msgtype != spec.msgtype or wired.label_info != (spec.label_classes is not None):
                raise TypeError(f"{self.name}: output {spec.port} ({spec.msgtype}, labelled: "
                                f"{spec.label_classes is not None}) is not wired in the graph as {dict(self.outputs)}")


def _expand(mapping: Mapping[str, str], camera_names: Sequence[str]) -> dict[str, str]:
    out = {}
    for port, topic in mapping.items():
        if "{camera}" in port:
            for camera in camera_names:
                out[port.format(camera=camera)] = topic.replace("{camera}", camera)
        else:
            out[port] = topic
    return out


@dataclass(frozen=True)
class Graph:
    """An ordered set of nodes (upstream first) with their wiring."""

    nodes: tuple[GraphNode, ...]
    remaps: Mapping[str, str] = field(default_factory=dict)
    known: tuple[str, ...] = ()
    fed_by: tuple[str, ...] = ()  # nodes that run elsewhere and feed these (fed_by_others)

    @property
    def known_names(self) -> tuple[str, ...]:
        """Every node name of the graph this one was selected from (their parameter sections are valid even when
        the node does not run)."""
        return self.known or tuple(n.name for n in self.nodes)

    def node(self, name: str) -> GraphNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"no node {name!r} in the graph; nodes are {[n.name for n in self.nodes]}")

    def select(self, names: Iterable[str]) -> Graph:
        """The sub-graph of the named nodes ('full' = all), in graph order."""
        names = list(names)
        if names == ["full"]:
            return self
        wanted = {self.node(n).name for n in names}
        return Graph(tuple(n for n in self.nodes if n.name in wanted), self.remaps, self.known_names, self.fed_by)

    def with_remaps(self, remaps: Mapping[str, str]) -> Graph:
        """The same graph with topic renames {from: to} applied after resolution (`--remap a:=b`)."""
        return Graph(self.nodes, {**self.remaps, **remaps}, self.known, self.fed_by)

    def fed_by_others(self, names: Iterable[str]) -> Graph:
        """The same graph, its topics resolved as if the named nodes (of the graph it was selected from) ran beside
        it: they run in another process of the same replay and publish what these nodes read (detector2d's boxes
        for detection3d; runtime.replay_processes)."""
        return Graph(self.nodes, self.remaps, self.known, tuple(names))

    def topics(self, node: GraphNode, camera_names: Sequence[str]) -> dict[str, str]:
        """{port: topic} of every input and output port of a node of this graph."""
        running = {n.name for n in self.nodes} | set(self.fed_by)
        detections = DETECTOR2D_DETECTIONS_TOPIC if "detector2d" in running else EXTERNAL_DETECTIONS_TOPIC
        points = SEGMENTATION_TOPIC if "segmentation" in running else LIDAR_TOPIC
        mapping = {port: topic.replace(DETECTIONS_PLACEHOLDER, detections).replace(LABELLED_POINTS_PLACEHOLDER, points)
                   for port, topic in node.inputs.items()}
        mapping.update({port: out.topic for port, out in node.outputs.items()})
        mapping.update({label_info_port(port): label_info_port(out.topic) for port, out in node.outputs.items()
                        if out.label_info})
        return {port: self.remaps.get(topic, topic) for port, topic in _expand(mapping, camera_names).items()}


def label_info_port(name: str) -> str:
    """The LabelInfo port (or topic) beside a labelled output port (or topic)."""
    return f"{name}/label_info"


def _camera_inputs(*streams: str) -> dict[str, str]:
    return {port: topic for port, topic in _CAMERA_INPUTS.items() if port.rsplit("/", 1)[1] in streams}


FULL_GRAPH = Graph((
    GraphNode(
        "detector2d", "perception3d.nodes.detector2d:Detector2DNode",
        inputs=_camera_inputs("image", "camera_info"),
        outputs={"~/output/{camera}/detections": GraphOutput(DETECTOR2D_DETECTIONS_TOPIC,
                                                               "vision_msgs/msg/Detection2DArray", label_info=True)},
        description="2D detector per camera"),
    GraphNode(
        "detection3d", "perception3d.nodes.detection3d:Detection3DNode",
        inputs={"~/input/pointcloud": LIDAR_TOPIC, **_camera_inputs("camera_info", "detections")},
        outputs={"~/output/objects": GraphOutput(OBJECTS_TOPIC, "vision_msgs/msg/Detection3DArray",
                                                 label_info=True),
                 "~/output/markers": GraphOutput(OBJECT_MARKERS_TOPIC, "visualization_msgs/msg/MarkerArray"),
                 "~/output/motion": GraphOutput(OBJECT_MOTION_TOPIC, "visualization_msgs/msg/MarkerArray")},
        description="2D-detection-guided 3D object detection"),
    GraphNode(
        "segmentation", "perception3d.nodes.segmentation:SegmentationNode",
        inputs={"~/input/pointcloud": LIDAR_TOPIC, **_camera_inputs("camera_info", "detections")},
        outputs={"~/output/pointcloud": GraphOutput(SEGMENTATION_TOPIC, "sensor_msgs/msg/PointCloud2",
                                                    label_info=True)},
        description="2D-box-prior point cloud segmentation (input points + label + score)"),
    GraphNode(
        "occupancy", "perception3d.nodes.occupancy:OccupancyNode",
        inputs={"~/input/pointcloud": LABELLED_POINTS_PLACEHOLDER, **_camera_inputs("camera_info", "detections")},
        outputs={"~/output/grid": GraphOutput(OCCUPANCY_GRID_TOPIC, "perception3d_msgs/msg/OccupancyGrid3D",
                                               label_info=True),
                 "~/output/voxels": GraphOutput(OCCUPANCY_VOXELS_TOPIC, "sensor_msgs/msg/PointCloud2",
                                                 label_info=True),
                 "~/output/markers": GraphOutput(OCCUPANCY_MARKERS_TOPIC, "visualization_msgs/msg/MarkerArray")},
        description="3D semantic occupancy"),
))


def linked_groups(ports: Mapping[str, Mapping[str, str]]) -> list[list[str]]:
    """Node names grouped so that no topic passes from one group to another (a node joins the group of every node
    it reads from), the groups and their names in the order of `ports`.

    ports: {node name: {port: topic}} of every input and output port (Graph.topics); output ports are those under
    OUTPUT_PORT_PREFIX.
    """
    outputs = {name: {topic for port, topic in mapping.items() if port.startswith(OUTPUT_PORT_PREFIX)}
               for name, mapping in ports.items()}
    group_of = {name: index for index, name in enumerate(ports)}
    for producer in ports:
        for consumer, mapping in ports.items():
            if producer != consumer and outputs[producer] & set(mapping.values()):
                kept, joined = sorted((group_of[producer], group_of[consumer]))
                group_of = {name: kept if group == joined else group for name, group in group_of.items()}
    return [[name for name in ports if group_of[name] == group] for group in sorted(set(group_of.values()))]


def implemented_definitions(graph: Graph = FULL_GRAPH) -> dict[str, type[NodeDefinition]]:
    """{node name: definition} of the graph's nodes whose modules exist."""
    out = {}
    for node in graph.nodes:
        try:
            out[node.name] = node.load()
        except NodeNotImplementedError:
            continue
    return out


def load_graph(reference: str) -> Graph:
    """The Graph object named 'module:NAME'.

    Raises:
        ConfigError: the module or name does not exist, or is not a Graph.
    """
    module_name, _, attr = reference.partition(":")
    try:
        graph = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"graph {reference!r} not found ({exc}); expected MODULE:NAME of a Graph") from exc
    if not isinstance(graph, Graph):
        raise ConfigError(f"{reference} is a {type(graph).__name__}, not a runtime.graph.Graph")
    return graph


def _short_type(msgtype: str) -> str:
    package, _, name = msgtype.split("/")
    return f"`{package}/{name}`"


def topics_markdown(graph: Graph = FULL_GRAPH) -> str:
    """README table of every node's ports, default topics, types and QoS (from the graph, `<camera>` per camera)."""
    rows = ["| node | port | default topic | type | QoS |", "|---|---|---|---|---|"]
    for node in graph.nodes:
        for port, topic in node.inputs.items():
            stream = port.rsplit("/", 1)[1]
            types = LIDAR_TYPES if port == LIDAR_PORT else CAMERA_STREAM_TYPES[stream]
            placeholders = {
                DETECTIONS_PLACEHOLDER: f"`{DETECTOR2D_DETECTIONS_TOPIC}` (detector2d running), else "
                                        f"`{EXTERNAL_DETECTIONS_TOPIC}`",
                LABELLED_POINTS_PLACEHOLDER: f"`{SEGMENTATION_TOPIC}` (segmentation running), else `{LIDAR_TOPIC}`",
            }
            topic = placeholders.get(topic, f"`{topic}`")
            rows.append(f"| `{node.name}` | `{port}` | {topic} | {' or '.join(map(_short_type, types))} | "
                        f"best effort (sensor data) |".replace("{camera}", "<camera>"))
        for port, out in node.outputs.items():
            rows.append(f"| `{node.name}` | `{port}` | `{out.topic}` | {_short_type(out.msgtype)} | reliable |"
                        .replace("{camera}", "<camera>"))
            if out.label_info:
                rows.append(f"| `{node.name}` | `{label_info_port(port)}` | `{label_info_port(out.topic)}` | "
                            f"`vision_msgs/LabelInfo` | reliable, transient local |".replace("{camera}", "<camera>"))
    return "\n".join(rows) + "\n"
