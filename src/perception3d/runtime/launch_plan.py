"""What the launch files start, computed from runtime/graph.py and the parameter file.

`node_launches` is pure (no ROS): which executables, with which parameter file, overrides and remappings. The
launch files (launch/*.launch.py) call `launch_description`, which turns that plan into launch / launch_ros actions
when they are evaluated (arguments are read at launch time through an OpaqueFunction).

Launch arguments: config, use_sim_time, device, log_level, rviz, bag (a rosbag2 to play with --clock and the
/tf_static QoS override; implies use_sim_time), and enable_<node> per node.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..nodes.params import load_parameters
from .graph import FULL_GRAPH, Graph, NodeNotImplementedError

PACKAGE = "perception3d"
TRUE_WORDS = ("true", "1", "yes", "on")


@dataclass(frozen=True)
class NodeLaunch:
    """One node to start: ROS node name, executable, parameter file + overrides, and (port, topic) remappings."""

    name: str
    executable: str
    config: str
    overrides: Mapping[str, Any]
    remappings: tuple[tuple[str, str], ...]


def node_launches(node_names: Sequence[str], config: str | Path, use_sim_time: bool = False, device: str = "",
                  graph: Graph = FULL_GRAPH) -> list[NodeLaunch]:
    """The nodes to start for the enabled node names, in graph order.

    `device` is passed only to nodes that declare a 'device' parameter. Camera names (for the per-camera
    remappings) come from the parameter file, which is validated here so a bad value fails before anything starts.
    """
    selected = graph.select(node_names)
    own: dict[str, tuple] = {}
    for node in graph.nodes:
        try:
            own[node.name] = node.load().parameters
        except NodeNotImplementedError:
            own[node.name] = ()  # its executable will say so at start
    params = load_parameters(config, own)
    plan = []
    for node in selected.nodes:
        overrides: dict[str, Any] = {"use_sim_time": bool(use_sim_time)}
        if device and any(p.name == "device" for p in own[node.name]):
            overrides["device"] = device
        topics = selected.topics(node, params[node.name]["camera_names"])
        plan.append(NodeLaunch(node.name, node.executable, str(config), overrides,
                               tuple(sorted((port, topic) for port, topic in topics.items()))))
    return plan


def _share(*parts: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory(PACKAGE), *parts))


def launch_description(node_names: Sequence[str], graph: Graph = FULL_GRAPH) -> Any:
    """A LaunchDescription starting node_names (each can be disabled with enable_<node>:=false)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def setup(context: Any) -> list:
        def arg(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        bag = arg("bag")
        use_sim_time = arg("use_sim_time").lower() in TRUE_WORDS or bool(bag)
        enabled = [n for n in node_names if arg(f"enable_{n}").lower() in TRUE_WORDS]
        actions = [
            Node(package=PACKAGE, executable=item.executable, name=item.name, output="screen",
                 parameters=[item.config, dict(item.overrides)], remappings=list(item.remappings),
                 arguments=["--ros-args", "--log-level", arg("log_level")])
            for item in node_launches(enabled, arg("config"), use_sim_time, arg("device"), graph)]
        if arg("rviz").lower() in TRUE_WORDS:
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                                arguments=["-d", _share("config", "rviz", "perception3d.rviz")],
                                parameters=[{"use_sim_time": use_sim_time}]))
        if bag:
            actions.append(ExecuteProcess(
                cmd=["ros2", "bag", "play", bag, "--clock",
                     "--qos-profile-overrides-path", _share("config", "qos_overrides.yaml")], output="screen"))
        return actions

    arguments = [
        DeclareLaunchArgument("config", default_value=_share("config", "perception3d.yaml"),
                              description="parameter file (config/perception3d.yaml layout)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("device", default_value="", description="torch device for learned modes, e.g. cuda:0"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the nodes"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz with config/rviz/perception3d.rviz"),
        DeclareLaunchArgument("bag", default_value="",
                              description="rosbag2 to play with --clock (sets use_sim_time, applies the /tf_static "
                                          "QoS override)"),
        *[DeclareLaunchArgument(f"enable_{n}", default_value="true", description=f"start {n}") for n in node_names],
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=setup)])
