"""Launch files: the node plan from the graph and the parameter file, and the launch files themselves evaluated
with a small recording stand-in for the `launch` / `launch_ros` API (ROS 2 is not installed here)."""
from __future__ import annotations

import importlib.util
import runpy
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
import yaml

import ros_double
from perception3d.errors import ConfigError
from perception3d.runtime import ros
from perception3d.runtime.graph import FULL_GRAPH
from perception3d.runtime.launch_plan import node_launches as plan_nodes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "perception3d.yaml"
SCHEMA = ROOT / "config" / "perception3d.schema.json"
NODES = [n.name for n in FULL_GRAPH.nodes]


def node_launches(names, config, **kwargs):
    return plan_nodes(names, config, SCHEMA, **kwargs)


def console_scripts(monkeypatch) -> dict[str, str]:
    """{script: 'module:function'} that setup.py installs (setup() is intercepted, nothing is built)."""
    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    return dict(item.replace(" ", "").split("=") for item in captured["entry_points"]["console_scripts"])


def test_plan_names_installed_executables_and_existing_config(monkeypatch):
    plan = node_launches(NODES, CONFIG)
    assert [p.name for p in plan] == NODES
    scripts = console_scripts(monkeypatch)
    for p in plan:
        module, function = scripts[p.executable].split(":")
        assert module == "perception3d.runtime.ros" and callable(getattr(ros, function))
        assert Path(p.config) == CONFIG and p.overrides == {"use_sim_time": False}


def test_detections_come_from_detector2d_only_when_it_runs():
    with_detector = {p.name: dict(p.remappings) for p in node_launches(NODES, CONFIG)}
    without = {p.name: dict(p.remappings) for p in node_launches(["detection3d", "segmentation"], CONFIG)}
    assert with_detector["detection3d"]["~/input/CAM_FRONT/detections"] == "/perception/CAM_FRONT/detections"
    assert with_detector["detector2d"]["~/output/CAM_FRONT/detections"] == "/perception/CAM_FRONT/detections"
    assert without["detection3d"]["~/input/CAM_FRONT/detections"] == "/CAM_FRONT/detections"
    assert without["segmentation"]["~/input/pointcloud"] == "/LIDAR_TOP/points"


def test_camera_names_come_from_the_config_and_bad_configs_fail(tmp_path):
    doc = yaml.safe_load(CONFIG.read_text())
    doc["/**"]["ros__parameters"]["camera_names"] = ["CAM_FRONT", "CAM_BACK"]
    doc["/**"]["ros__parameters"]["sync"]["camera_offsets_s"] = [-0.03, -0.01]
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(doc))
    (plan,) = node_launches(["segmentation"], config)
    cams = {port.split("/")[2] for port, _ in plan.remappings if port.startswith("~/input/CAM")}
    assert cams == {"CAM_FRONT", "CAM_BACK"}
    doc["/**"]["ros__parameters"]["sync"]["tolerance_s"] = -1
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"\[/\*\*\] sync.tolerance_s"):
        node_launches(["segmentation"], config)


# -- the launch files, with a recording stand-in for launch / launch_ros -----------------------------------------
class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchRosNode(Recorded):
    """launch_ros/actions/node.py Node(*, executable, package, name, namespace, exec_name, parameters, remappings,
    ros_arguments, arguments, **ExecuteProcess kwargs), and the command line it runs."""

    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, **kwargs):
        super().__init__(executable=executable, package=package, name=name, namespace=namespace,
                         parameters=parameters, remappings=remappings, ros_arguments=ros_arguments,
                         arguments=arguments, **kwargs)

    def command_line(self, tmp_path):
        """node.py _perform_substitutions / execute: [executable, *arguments, '--ros-args', *ros_arguments,
        '-r __node:=name', one '--params-file' per parameter file, where a dict is first written to a temporary file
        under '/**: ros__parameters' (launch_ros/utilities/evaluate_parameters + _create_params_file_from_dict),
        '-r from:=to' per remapping]."""
        k = self.kwargs
        cmd = [k["executable"], *(k["arguments"] or []), "--ros-args", *(k["ros_arguments"] or [])]
        if k["name"] is not None:  # node.py: the name remap only when a name is given
            cmd += ["-r", f"__node:={k['name']}"]
        for i, item in enumerate(k["parameters"] or []):
            if isinstance(item, dict):
                path = tmp_path / f"launch_params_{k['name']}_{i}.yaml"
                path.write_text(yaml.safe_dump({"/**": {"ros__parameters": item}}))
                item = path
            cmd += ["--params-file", str(item)]
        for source, target in k["remappings"] or []:
            cmd += ["-r", f"{source}:={target}"]
        return cmd


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture()
def launch_stub(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the launches' override folders go with the test's

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)

    module("launch", LaunchDescription=lambda actions: list(actions))
    module("launch.actions", **{name: type(name, (Recorded,), {}) for name in (
        "DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction", "RegisterEventHandler", "TimerAction")})
    module("launch.event_handlers", OnShutdown=type("OnShutdown", (Recorded,), {}))
    module("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
    module("launch_ros")
    module("launch_ros.actions", Node=type("Node", (LaunchRosNode,), {}))
    module("ament_index_python")
    module("ament_index_python.packages", get_package_share_directory=lambda package: str(ROOT))


def evaluate(launch_file: str, **arguments):
    spec = importlib.util.spec_from_file_location("launch_file", ROOT / "launch" / launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.args[0]: a.kwargs["default_value"] for a in description
                if type(a).__name__ == "DeclareLaunchArgument"}
    context = {**declared, **arguments}
    (opaque,) = [a for a in description if type(a).__name__ == "OpaqueFunction"]
    return declared, opaque.kwargs["function"](context)


def test_full_launch_file(launch_stub):
    declared, actions = evaluate("full.launch.py", rviz="true", bag="/data/scene-0061", device="cuda:0",
                                 model_path="/models/detector2d.onnx")
    assert {"config", "use_sim_time", "device", "model_path", "rviz", "bag", "log_level"} <= set(declared)
    assert {f"enable_{n}" for n in NODES} <= set(declared)
    assert Path(declared["config"]) == CONFIG
    nodes = [a for a in actions if type(a).__name__ == "Node" and a.kwargs["package"] == "perception3d"]
    assert [n.kwargs["executable"] for n in nodes] == [f"perception3d_{n}" for n in NODES]
    assert all(n.kwargs["parameters"][1]["use_sim_time"] is True for n in nodes)  # a bag implies sim time
    overrides = {n.kwargs["name"]: n.kwargs["parameters"][1] for n in nodes}
    assert overrides["detector2d"]["model_path"] == "/models/detector2d.onnx"
    assert overrides["detector2d"]["device"] == "cuda:0" and overrides["detection3d"]["device"] == "cuda:0"
    assert "model_path" not in overrides["detection3d"]  # a detector2d file is no detection3d model
    (rviz,) = [a for a in actions if type(a).__name__ == "Node" and a.kwargs["package"] == "rviz2"]
    assert Path(rviz.kwargs["arguments"][1]).is_file()
    (timer,) = [a for a in actions if type(a).__name__ == "TimerAction"]  # the bag starts after the nodes warm up
    assert timer.kwargs["period"] == float(declared["bag_delay_s"]) > 0
    (play,) = timer.kwargs["actions"]
    cmd = play.kwargs["cmd"]
    assert cmd[:5] == ["ros2", "bag", "play", "/data/scene-0061", "--clock"]
    assert Path(cmd[cmd.index("--qos-profile-overrides-path") + 1]).is_file()


def test_enable_flags_and_per_node_files(launch_stub):
    _, actions = evaluate("full.launch.py", enable_detector2d="false", enable_occupancy="false")
    assert [a.kwargs["name"] for a in actions] == ["detection3d", "segmentation"]
    for node in NODES:
        declared, actions = evaluate(f"{node}.launch.py")
        assert [a.kwargs["executable"] for a in actions] == [f"perception3d_{node}"]
        assert declared["use_sim_time"] == "false" and declared["rviz"] == "false"


def test_qos_override_makes_tf_static_transient_local():
    overrides = yaml.safe_load((ROOT / "config" / "qos_overrides.yaml").read_text())
    assert overrides["/tf_static"]["durability"] == "transient_local"
    assert overrides["/tf_static"]["reliability"] == "reliable"


def test_log_level_goes_through_ros_arguments(launch_stub, tmp_path):
    _, actions = evaluate("detection3d.launch.py", log_level="debug")
    (node,) = actions
    cmd = node.command_line(tmp_path)
    assert cmd.count("--ros-args") == 1 and cmd[cmd.index("--ros-args") + 1:][:2] == ["--log-level", "debug"]
    assert ros_double.rcl_parse_arguments(cmd).log_level == "debug"


def test_device_argument_reaches_the_node_validation(launch_stub, tmp_path, monkeypatch):
    """device:=cuda:0 from the launch command line, through launch_ros' parameter file and rcl, into detector2d's
    declared parameters and their validation."""
    detector2d = FULL_GRAPH.node("detector2d").load()
    for device, accepted in (("cuda:0", True), ("cuda:1", True), ("cpu", True), ("gpu0", False)):
        _, actions = evaluate("detector2d.launch.py", device=device)
        (node,) = actions
        ros_double.install(monkeypatch)
        ros_double.init(node.command_line(tmp_path))
        rcl_node = ros_double.Node("detector2d")
        if accepted:
            assert ros.declare_parameters(rcl_node, "detector2d", detector2d.parameters)["device"] == device
        else:
            with pytest.raises(ConfigError, match=r"\[detector2d\] device: 'gpu0' does not match"):
                ros.declare_parameters(rcl_node, "detector2d", detector2d.parameters)


def test_every_launched_node_starts_under_rcl_with_the_default_file(launch_stub, tmp_path, monkeypatch):
    _, actions = evaluate("full.launch.py")
    for node in actions:
        ros_double.install(monkeypatch)
        ros_double.init(node.command_line(tmp_path))  # rcl parses both parameter files
        name = node.kwargs["name"]
        ros.declare_parameters(ros_double.Node(name), name, FULL_GRAPH.node(name).load().parameters)


def test_single_process_runs_the_enabled_nodes_in_one_process_with_their_own_topics_and_overrides(
        launch_stub, tmp_path, monkeypatch):
    arguments = {"device": "cuda:0", "model_path": "/models/detector2d.onnx", "enable_occupancy": "false"}
    _, separate = evaluate("full.launch.py", **arguments)
    _, actions = evaluate("full.launch.py", single_process="true", **arguments)
    (node,) = [a for a in actions if type(a).__name__ == "Node"]
    names = ["detector2d", "detection3d", "segmentation"]
    assert node.kwargs["executable"] == "perception3d_graph" and node.kwargs["name"] is None
    module, function = console_scripts(monkeypatch)["perception3d_graph"].split(":")
    assert module == "perception3d.runtime.ros" and callable(getattr(ros, function))
    cmd = node.command_line(tmp_path)
    assert ros.graph_node_names(cmd) == names
    ros_double.install(monkeypatch)
    ros_double.init(cmd)  # rcl parses the parameter files and the node-targeted remappings
    for alone in separate:
        name = alone.kwargs["name"]
        rcl_node = ros_double.Node(name)
        values = ros.declare_parameters(rcl_node, name, FULL_GRAPH.node(name).load().parameters)
        for port, topic in alone.kwargs["remappings"]:  # the topics it has when it runs alone
            assert rcl_node.resolve_topic_name(port) == topic
        assert {k: values[k] for k in alone.kwargs["parameters"][1] if k in values} == {
            k: v for k, v in alone.kwargs["parameters"][1].items() if k in values}
        assert values["device"] == "cuda:0"
        assert (values["model_path"] == "/models/detector2d.onnx") == (name == "detector2d")


def test_process_groups_run_each_group_of_nodes_that_exchange_no_topic_in_a_process(launch_stub, tmp_path,
                                                                                     monkeypatch):
    arguments = {"enable_detector2d": "false", "device": "cuda:0"}
    _, separate = evaluate("full.launch.py", **arguments)
    _, actions = evaluate("full.launch.py", process_groups="true", **arguments)
    actions = [a for a in actions if type(a).__name__ == "Node"]
    assert [a.kwargs["executable"] for a in actions] == ["perception3d_graph"] * 2
    commands = [a.command_line(tmp_path) for a in actions]
    assert [ros.graph_node_names(cmd) for cmd in commands] == [["detection3d"], ["segmentation", "occupancy"]]
    alone = {a.kwargs["name"]: a for a in separate}
    ros_double.install(monkeypatch)
    for cmd in commands:
        ros_double.init(cmd)  # rcl parses each process's parameter files and node-targeted remappings
        for name in ros.graph_node_names(cmd):
            rcl_node = ros_double.Node(name)
            values = ros.declare_parameters(rcl_node, name, FULL_GRAPH.node(name).load().parameters)
            for port, topic in alone[name].kwargs["remappings"]:  # the topics it has when it runs alone
                assert rcl_node.resolve_topic_name(port) == topic
            assert values["device"] == "cuda:0"
    _, actions = evaluate("full.launch.py", process_groups="true")  # detector2d feeds the LiDAR nodes: one group
    assert [ros.graph_node_names(a.command_line(tmp_path)) for a in actions if type(a).__name__ == "Node"] == [NODES]
    with pytest.raises(ConfigError, match="exclude each other"):
        evaluate("full.launch.py", process_groups="true", single_process="true")


GUARD = """
import importlib.abc, sys
BLOCKED = ("torch", "onnxruntime", "onnx", "perception3d.nodes.detector2d", "perception3d.nodes.detection3d",
           "perception3d.nodes.segmentation", "perception3d.nodes.occupancy", "perception3d.nodes.runner",
           "perception3d.core.models")
class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"launching imported {name}")
sys.meta_path.insert(0, Guard())
"""

LAUNCH_STUB = """
import types
def module(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m
class Recorded:
    def __init__(self, *args, **kwargs): self.args, self.kwargs = args, kwargs
class LaunchConfiguration:
    def __init__(self, name): self.name = name
    def perform(self, context): return context[self.name]
module("launch", LaunchDescription=lambda actions: list(actions))
module("launch.actions", **{n: type(n, (Recorded,), {}) for n in
       ("DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction", "RegisterEventHandler", "TimerAction")})
module("launch.event_handlers", OnShutdown=type("OnShutdown", (Recorded,), {}))
module("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
module("launch_ros"); module("launch_ros.actions", Node=type("Node", (Recorded,), {}))
module("ament_index_python"); module("ament_index_python.packages", get_package_share_directory=lambda p: ROOT)
import runpy
description = runpy.run_path(ROOT + "/launch/full.launch.py")["generate_launch_description"]()
context = {a.args[0]: a.kwargs["default_value"] for a in description if type(a).__name__ == "DeclareLaunchArgument"}
context.update(bag="/data/bag", rviz="true")
actions = [a for a in description if type(a).__name__ == "OpaqueFunction"][0].kwargs["function"](context)
assert len(actions) == 6, actions
"""


@pytest.mark.parametrize("what", ["import", "full launch description"])
def test_launching_imports_no_node_implementation(what):
    code = GUARD + ("import perception3d.runtime.launch_plan" if what == "import"
                    else f"ROOT = {str(ROOT)!r}\n" + LAUNCH_STUB)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("mode", ["single_process", "process_groups"])
def test_the_override_files_of_graph_processes_are_removed_when_the_launch_shuts_down(launch_stub, mode):
    """Each graph process reads its per-node overrides from a file written at launch; the launch's shutdown handler
    (launch.event_handlers.OnShutdown, called with the Shutdown event and the context) removes them, so launches do not
    pile up folders in /tmp."""
    _, actions = evaluate("full.launch.py", enable_detector2d="false", **{mode: "true"})
    files = [Path(a.kwargs["parameters"][1]) for a in actions if type(a).__name__ == "Node"]
    (handler,) = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    (on_shutdown,) = handler.args
    assert len(files) == (1 if mode == "single_process" else 2) and all(f.is_file() for f in files)
    on_shutdown.kwargs["on_shutdown"](None, None)
    assert not any(f.parent.exists() for f in files)
