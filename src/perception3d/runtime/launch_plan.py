"""What the launch files start, computed from runtime/graph.py and the parameter file.

`node_launches` is pure (no ROS): which executables, with which parameter file, overrides and remappings. The
launch files (launch/*.launch.py) call `launch_description`, which turns that plan into launch / launch_ros actions
when they are evaluated (arguments are read at launch time through an OpaqueFunction).

Launching imports no node implementation (and so no torch or onnxruntime): the parameter file is checked against
rcl's YAML rules and the committed JSON schema (config/perception3d.schema.json, generated from the node
declarations), which is all the plan needs. Each node's own process loads its definition and dependencies.

Launch arguments: config, use_sim_time, device, model_path, log_level, rviz, bag (a rosbag2 to play with --clock and the
/tf_static QoS override, started bag_delay_s after the nodes so detector2d has warmed up; implies use_sim_time),
enable_<node> per node, single_process (true: the enabled nodes run in one `perception3d_graph` process,
`graph_process_launch`, instead of a process each) and process_groups (true: a `perception3d_graph` process per group
of nodes that exchange no topic, `group_process_launches`).
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..nodes.params import PARAMS_KEY, resolve_node_parameters, validate_against_schema
from ..nodes.rcl_yaml import check_rcl_parameter_yaml
from .graph import FULL_GRAPH, GRAPH_EXECUTABLE, Graph, linked_groups

PACKAGE = "perception3d"
TRUE_WORDS = ("true", "1", "yes", "on")
# Seconds between starting the nodes and `ros2 bag play`: detector2d loads and warms its model up first (a few
# seconds on CPU); messages played before a node subscribes are lost.
DEFAULT_BAG_DELAY_S = "8.0"


@dataclass(frozen=True)
class NodeLaunch:
    """One node to start: ROS node name, executable, parameter file + overrides, and (port, topic) remappings."""

    name: str
    executable: str
    config: str
    overrides: Mapping[str, Any]
    remappings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GraphProcessLaunch:
    """Nodes to start in one process (GRAPH_EXECUTABLE): their names (its arguments), the parameter file, each
    node's overrides (a parameter-file section of its own: a process-wide override reaches every node that declares
    the name, e.g. detector2d's model_path would reach the LiDAR nodes'), and the node-targeted remappings
    ('<node>:<port>', topic)."""

    executable: str
    nodes: tuple[str, ...]
    config: str
    overrides: Mapping[str, Mapping[str, Any]]
    remappings: tuple[tuple[str, str], ...]


def graph_process_launch(plan: Sequence[NodeLaunch]) -> GraphProcessLaunch:
    """The one-process launch of the nodes of a node_launches plan (same parameters and topics per node)."""
    if not plan:
        raise ConfigError("single_process / process_groups: no node is enabled")
    return GraphProcessLaunch(GRAPH_EXECUTABLE, tuple(item.name for item in plan), plan[0].config,
                              {item.name: dict(item.overrides) for item in plan},
                              tuple((f"{item.name}:{port}", topic) for item in plan for port, topic in item.remappings))


def group_process_launches(plan: Sequence[NodeLaunch]) -> list[GraphProcessLaunch]:
    """A one-process launch per group of the plan's nodes that exchange no topic (runtime.graph.linked_groups):
    with every node but detector2d, detection3d and segmentation -> occupancy."""
    groups = linked_groups({item.name: dict(item.remappings) for item in plan})
    return [graph_process_launch([item for item in plan if item.name in group]) for group in groups]


def write_overrides(overrides: Mapping[str, Mapping[str, Any]], directory: Path) -> Path:
    """A parameter file with one section per node holding its overrides (GraphProcessLaunch.overrides)."""
    import yaml

    path = Path(directory) / "perception3d_graph_overrides.yaml"
    path.write_text(yaml.safe_dump({node: {PARAMS_KEY: dict(values)} for node, values in overrides.items()}))
    return path


def remove_folders(folders: Sequence[Path]) -> None:
    """Remove the launch's temporary override folders (write_overrides), whatever is left of them."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _node_declares(schema: Mapping[str, Any], node: str, name: str) -> bool:
    section = schema["properties"].get(node, {}).get("properties", {}).get(PARAMS_KEY, {})
    return name in section.get("properties", {})


def node_launches(node_names: Sequence[str], config: str | Path, schema: str | Path, use_sim_time: bool = False,
                  device: str = "", model_path: str = "", graph: Graph = FULL_GRAPH) -> list[NodeLaunch]:
    """The nodes to start for the enabled node names, in graph order.

    `schema` is the parameter file's JSON schema (config/perception3d.schema.json). `device` (when not empty) is
    passed to every node that declares it, `model_path` to detector2d only. Camera names (for the per-camera remappings)
    come from the parameter file, which is checked here (rcl's YAML rules, the schema) so a bad file fails before
    anything starts.
    """
    import json

    import yaml

    try:
        text = Path(config).read_text()
        schema_doc = json.loads(Path(schema).read_text())
    except OSError as exc:
        raise ConfigError(f"{exc.filename}: cannot read: {exc.strerror}") from exc
    check_rcl_parameter_yaml(text, str(config))
    doc = yaml.safe_load(text)
    validate_against_schema(doc, schema_doc, str(config))
    selected = graph.select(node_names)
    plan = []
    for node in selected.nodes:
        overrides: dict[str, Any] = {"use_sim_time": bool(use_sim_time)}
        if device and _node_declares(schema_doc, node.name, "device"):
            overrides["device"] = device  # every learned node
        if model_path and node.name == "detector2d":
            overrides["model_path"] = model_path  # each LiDAR node's model is its own: set it in the parameter file
        camera_names = resolve_node_parameters(doc, node.name, (), str(config))["camera_names"]
        topics = selected.topics(node, camera_names)
        plan.append(NodeLaunch(node.name, node.executable, str(config), overrides,
                               tuple(sorted((port, topic) for port, topic in topics.items()))))
    return plan


def _share(*parts: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory(PACKAGE), *parts))


def launch_description(node_names: Sequence[str], graph: Graph = FULL_GRAPH) -> Any:
    """A LaunchDescription starting node_names (each can be disabled with enable_<node>:=false)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, RegisterEventHandler, TimerAction
    from launch.event_handlers import OnShutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def setup(context: Any) -> list:
        def arg(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        bag = arg("bag")
        use_sim_time = arg("use_sim_time").lower() in TRUE_WORDS or bool(bag)
        enabled = [n for n in node_names if arg(f"enable_{n}").lower() in TRUE_WORDS]
        plan = node_launches(enabled, arg("config"), _share("config", "perception3d.schema.json"), use_sim_time,
                             arg("device"), arg("model_path"), graph)
        log_level = ["--log-level", arg("log_level")]
        single, grouped = (arg(name).lower() in TRUE_WORDS for name in ("single_process", "process_groups"))
        if single and grouped:
            raise ConfigError("single_process:=true and process_groups:=true exclude each other; choose one")
        if single or grouped:
            # no node name: '-r __node:=' would rename every node of the process
            processes = [graph_process_launch(plan)] if single else group_process_launches(plan)
            folders = [Path(tempfile.mkdtemp(prefix="perception3d_launch_")) for _ in processes]
            actions = [Node(package=PACKAGE, executable=one.executable, arguments=list(one.nodes), output="screen",
                            parameters=[one.config, str(write_overrides(one.overrides, folder))],
                            remappings=list(one.remappings), ros_arguments=log_level)
                       for one, folder in zip(processes, folders)]
            # the processes read their override files at start; the files go when the launch shuts down
            actions.append(RegisterEventHandler(OnShutdown(on_shutdown=lambda event, context: remove_folders(folders))))
        else:
            actions = [Node(package=PACKAGE, executable=item.executable, name=item.name, output="screen",
                            parameters=[item.config, dict(item.overrides)], remappings=list(item.remappings),
                            ros_arguments=log_level) for item in plan]
        if arg("rviz").lower() in TRUE_WORDS:
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                                arguments=["-d", _share("config", "rviz", "perception3d.rviz")],
                                parameters=[{"use_sim_time": use_sim_time}]))
        if bag:
            play = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock",
                                       "--qos-profile-overrides-path", _share("config", "qos_overrides.yaml")],
                                  output="screen")
            actions.append(TimerAction(period=float(arg("bag_delay_s")), actions=[play]))
        return actions

    arguments = [
        DeclareLaunchArgument("config", default_value=_share("config", "perception3d.yaml"),
                              description="parameter file (config/perception3d.yaml layout)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("device", default_value="", description="torch device for learned modes, e.g. cuda:0"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="checkpoint or .onnx file of detector2d (the LiDAR nodes' models are set "
                                          "in the parameter file); empty: the parameter file's"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the nodes"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz with config/rviz/perception3d.rviz"),
        DeclareLaunchArgument("bag", default_value="",
                              description="rosbag2 to play with --clock (sets use_sim_time, applies the /tf_static "
                                          "QoS override)"),
        DeclareLaunchArgument("bag_delay_s", default_value=DEFAULT_BAG_DELAY_S,
                              description="seconds between starting the nodes and playing the bag (model warm-up)"),
        *[DeclareLaunchArgument(f"enable_{n}", default_value="true", description=f"start {n}") for n in node_names],
        DeclareLaunchArgument("single_process", default_value="false",
                              description="run the enabled nodes in one perception3d_graph process (shared per-sweep "
                                          "work, one TF listener, outputs handed over in-process)"),
        DeclareLaunchArgument("process_groups", default_value="false",
                              description="a perception3d_graph process per group of enabled nodes that exchange no "
                                          "topic (without detector2d: detection3d, and segmentation -> occupancy "
                                          "with the cloud handed over in-process): a core each"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=setup)])
