"""Launch files: the node plan from the graph and the parameter file, and the launch files themselves evaluated
with a small recording stand-in for the `launch` / `launch_ros` API (ROS 2 is not installed here)."""
from __future__ import annotations

import importlib.util
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from perception3d.errors import ConfigError
from perception3d.runtime import ros
from perception3d.runtime.graph import FULL_GRAPH
from perception3d.runtime.launch_plan import node_launches

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "perception3d.yaml"
NODES = [n.name for n in FULL_GRAPH.nodes]


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


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture()
def launch_stub(monkeypatch):
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)

    module("launch", LaunchDescription=lambda actions: list(actions))
    module("launch.actions", **{name: type(name, (Recorded,), {})
                                for name in ("DeclareLaunchArgument", "ExecuteProcess", "OpaqueFunction")})
    module("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
    module("launch_ros")
    module("launch_ros.actions", Node=type("Node", (Recorded,), {}))
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
    declared, actions = evaluate("full.launch.py", rviz="true", bag="/data/scene-0061", device="cuda:0")
    assert {"config", "use_sim_time", "device", "rviz", "bag", "log_level"} <= set(declared)
    assert {f"enable_{n}" for n in NODES} <= set(declared)
    assert Path(declared["config"]) == CONFIG
    nodes = [a for a in actions if type(a).__name__ == "Node" and a.kwargs["package"] == "perception3d"]
    assert [n.kwargs["executable"] for n in nodes] == [f"perception3d_{n}" for n in NODES]
    assert all(n.kwargs["parameters"][1]["use_sim_time"] is True for n in nodes)  # a bag implies sim time
    (rviz,) = [a for a in actions if type(a).__name__ == "Node" and a.kwargs["package"] == "rviz2"]
    assert Path(rviz.kwargs["arguments"][1]).is_file()
    (play,) = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
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
