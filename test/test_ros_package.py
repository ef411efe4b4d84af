"""The ROS 2 package files: package.xml declares what the host and the launch files use (and nothing unused),
install_requires does not ask pip to replace Ubuntu 22.04's packages, and the RViz config uses only real default
plugins on topics the graph publishes."""
from __future__ import annotations

import ast
import importlib.metadata
import runpy
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from perception3d.nodes.base import CAMERA_STREAM_TYPES
from perception3d.runtime.graph import FULL_GRAPH, label_info_port

ROOT = Path(__file__).resolve().parents[1]
# Python module -> the ROS package (rosdep key) that installs it
ROS_PACKAGE_OF_MODULE = {"tf2_ros": "tf2_ros_py"}
# Ubuntu 22.04 (jammy) apt versions of the Python packages a ROS 2 Humble install uses
JAMMY = {"numpy": "1.21.5", "scipy": "1.8.0", "pyyaml": "5.4.1", "jsonschema": "3.2.0", "pillow": "9.0.1",
         "tqdm": "4.57.0", "threadpoolctl": "3.1.0"}
# rviz_default_plugins/plugins_description.xml (Humble) and rviz_common's panels
RVIZ_CLASSES = {f"rviz_default_plugins/{name}" for name in (
    "Axes", "Camera", "DepthCloud", "Grid", "GridCells", "Illuminance", "Image", "InteractiveMarkers", "LaserScan",
    "Map", "Marker", "MarkerArray", "Odometry", "Path", "PointCloud", "PointCloud2", "PointStamped", "Polygon",
    "Pose", "PoseArray", "PoseWithCovariance", "Range", "RobotModel", "TF", "Wrench", "MoveCamera", "Select",
    "Measure", "SetInitialPose", "SetGoal", "PublishPoint", "Interact", "FocusCamera", "Orbit", "XYOrbit",
    "TopDownOrtho", "FPS", "ThirdPersonFollower")} | {"rviz_common/Displays", "rviz_common/Views",
                                                      "rviz_common/Selection", "rviz_common/Time"}


def exec_depends() -> set[str]:
    return {e.text for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_package_xml_declares_what_the_host_and_launch_use():
    ros_modules = set()
    for path in ("src/perception3d/runtime/ros.py", "src/perception3d/runtime/launch_plan.py"):
        ros_modules |= imported_modules(ROOT / path)
    ros_modules -= {"__future__", "gc", "importlib", "sys", "collections", "itertools", "pathlib", "typing", "tempfile",
                    "shutil", "numpy", "dataclasses", "json", "yaml"}
    message_packages = {t.split("/")[0] for n in FULL_GRAPH.nodes for t in
                        [o.msgtype for o in n.outputs.values()]}
    message_packages |= {t.split("/")[0] for types in CAMERA_STREAM_TYPES.values() for t in types}
    message_packages |= {"vision_msgs", "std_msgs", "tf2_msgs", "diagnostic_msgs", "rcl_interfaces"}
    needed = {ROS_PACKAGE_OF_MODULE.get(m, m) for m in ros_modules} | message_packages | {"rviz2", "ros2bag",
                                                                                          "rosbag2_storage_mcap"}
    declared = exec_depends()
    assert needed <= declared, sorted(needed - declared)
    for unused in ("tf2_ros", "cv_bridge", "sensor_msgs_py", "rosbag2_py"):
        assert unused not in declared
    assert "python3-rosbags-pip" in declared


def setup_arguments(monkeypatch) -> dict:
    """The keyword arguments setup.py passes to setuptools.setup."""
    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    return captured


def test_install_requires_accept_ubuntu_22_04_packages(monkeypatch):
    install_requires = setup_arguments(monkeypatch)["install_requires"]
    requirements = {Requirement(r).name.lower(): Requirement(r) for r in install_requires}
    for name, version in JAMMY.items():
        assert requirements[name].specifier.contains(Version(version)), (name, str(requirements[name]))


def test_every_library_the_package_imports_is_declared_outside_the_test_extra(monkeypatch):
    """A library the package imports comes with `pip install perception3d` or with the extra of the feature using it
    (data, learned), never only with the test extra (the MCAP reader once imported `mcap`, which only `.[test]`
    installed: a replay on a machine without it stopped at its first bag), nor only through another package's
    dependencies. ROS 2 modules come from package.xml."""
    arguments = setup_arguments(monkeypatch)
    runtime = list(arguments["install_requires"])
    runtime += [r for extra, requirements in arguments["extras_require"].items() if extra != "test"
                for r in requirements]
    declared = {Requirement(r).name.lower().replace("_", "-") for r in runtime}
    distributions = importlib.metadata.packages_distributions()
    ros_packages = exec_depends()
    undeclared = {}
    for path in (ROOT / "src" / "perception3d").rglob("*.py"):
        for module in imported_modules(path) - set(sys.stdlib_module_names) - {"perception3d"}:
            names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
            if names:
                if not names & declared:
                    undeclared.setdefault(module, set()).add(path.name)
            elif ROS_PACKAGE_OF_MODULE.get(module, module) not in ros_packages:
                undeclared.setdefault(module, set()).add(path.name)
    assert not undeclared, undeclared


def test_rviz_config_uses_real_plugins_on_published_topics():
    config = yaml.safe_load((ROOT / "config/rviz/perception3d.rviz").read_text())
    classes, displays = [], []

    def walk(item):
        if isinstance(item, dict):
            if item.get("Class"):
                classes.append(item["Class"])
            if "Topic" in item:
                displays.append(item)
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config)
    assert set(classes) <= RVIZ_CLASSES, sorted(set(classes) - RVIZ_CLASSES)
    topics = {"/tf", "/tf_static", "/LIDAR_TOP/points"}
    for node in FULL_GRAPH.nodes:
        expanded = FULL_GRAPH.topics(node, ["CAM_FRONT"])
        topics |= set(expanded.values())
        topics |= {label_info_port(t) for t in expanded.values()}
    for display in displays:
        topic = display["Topic"]
        assert "Transport Hint" not in topic  # not an RViz2 property: the transport comes from the topic name
        assert topic["Value"] in topics, topic["Value"]
    (image,) = [d for d in displays if d["Class"] == "rviz_default_plugins/Image"]
    assert image["Topic"]["Value"].endswith("/compressed")
    boxes = [d for d in displays if d["Topic"]["Value"] == "/perception/objects/markers"]
    assert boxes and boxes[0]["Enabled"]  # the 3D boxes are visible with the default plugins
