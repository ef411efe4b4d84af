"""`perception3d doctor`: a start-up self-check to run on the robot before `ros2 launch perception3d ...`.

Each check reports ok / warn / FAIL, what it found, and for a problem the command that fixes it: ROS 2 Python
packages (rclpy, message_filters, tf2_ros, diagnostic_updater) and the message packages the nodes publish
(vision_msgs with LabelInfo, perception3d_msgs), numpy below 2, torch / onnxruntime and the configured device, the
parameter file (rcl's YAML rules and the schema), and detector2d's checkpoint. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DISTRO = os.environ.get("ROS_DISTRO", "humble")
ROS_MODULES = {  # module: apt package providing it
    "rclpy": "ros-{distro}-rclpy",
    "message_filters": "ros-{distro}-message-filters",
    "tf2_ros": "ros-{distro}-tf2-ros-py",
    "diagnostic_updater": "ros-{distro}-diagnostic-updater",
}
MESSAGES = {  # module.Class: apt package / build step providing it
    "vision_msgs.msg.LabelInfo": "sudo apt install ros-{distro}-vision-msgs  (LabelInfo needs vision_msgs >= 4.1)",
    "sensor_msgs.msg.CompressedImage": "sudo apt install ros-{distro}-sensor-msgs",
    "diagnostic_msgs.msg.DiagnosticStatus": "sudo apt install ros-{distro}-diagnostic-msgs",
    "perception3d_msgs.msg.OccupancyGrid3D": "cd ros2_ws && colcon build && source install/setup.bash  "
                                             "(see ros2_ws/README.md)",
}


@dataclass
class Check:
    """One result: name, level ('ok', 'warn', 'FAIL'), what was found, and the command that fixes a problem."""

    name: str
    level: str
    found: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.level:>4}] {self.name}: {self.found}"
        return text + (f"\n         fix: {self.fix}" if self.fix and self.level != "ok" else "")


def _import(name: str) -> tuple[object | None, str]:
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # a broken install raises more than ImportError (e.g. a numpy ABI mismatch)
        return None, f"{type(exc).__name__}: {exc}"


def check_ros() -> list[Check]:
    out = []
    for module, package in ROS_MODULES.items():
        found, error = _import(module)
        install = package.format(distro=DISTRO)
        out.append(Check(module, "ok" if found else "FAIL", "importable" if found else error,
                         f"source /opt/ros/{DISTRO}/setup.bash  (else: sudo apt install {install})"))
    for dotted, fix in MESSAGES.items():
        module_name, _, cls = dotted.rpartition(".")
        module, error = _import(module_name)
        ok = module is not None and hasattr(module, cls)
        out.append(Check(dotted, "ok" if ok else "FAIL", "present" if ok else (error or f"{cls} missing"),
                         fix.format(distro=DISTRO)))
    return out


def check_numpy() -> Check:
    import numpy

    major = int(numpy.__version__.split(".")[0])
    return Check("numpy", "ok" if major < 2 else "FAIL", numpy.__version__,
                 'pip install "numpy<2"  (ROS 2 Humble/Jazzy cv_bridge and scipy are built against NumPy 1.x)')


def check_learned(device: str) -> list[Check]:
    """torch (detector2d), the configured device, and onnxruntime (backend:=onnx, optional)."""
    out = []
    torch, error = _import("torch")
    cpu = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    if torch is None:
        out.append(Check("torch", "FAIL", error, f"{cpu}  (CUDA build: see ros2_ws/README.md)"))
    else:
        cuda = torch.cuda.is_available()
        out.append(Check("torch", "ok", f"{torch.__version__}, CUDA {'available' if cuda else 'not available'}"))
        wants_cuda = device.startswith("cuda")
        index = int(device.split(":")[1]) if ":" in device else 0
        usable = not wants_cuda or (cuda and index < torch.cuda.device_count())
        out.append(Check(f"device {device}", "ok" if usable else "FAIL",
                         "usable" if usable else f"{torch.cuda.device_count() if cuda else 0} CUDA device(s)",
                         "set device:=cpu (or auto), or install the CUDA build of torch (ros2_ws/README.md)"))
    ort, error = _import("onnxruntime")
    out.append(Check("onnxruntime", "ok" if ort else "warn",
                     ", ".join(ort.get_available_providers()) if ort else f"{error} (needed only for backend:=onnx)",
                     "pip install onnxruntime  (onnxruntime-gpu for CUDA)"))
    return out


def check_parameter_file(path: Path) -> tuple[Check, dict]:
    """The parameter file against rcl's YAML rules and the schema; returns the check and every node's values."""
    from ..errors import ConfigError
    from ..nodes.params import load_parameters
    from .graph import implemented_definitions

    try:
        params = load_parameters(path, {n: d.parameters for n, d in implemented_definitions().items()})
    except ConfigError as exc:
        return Check(f"parameter file {path}", "FAIL", str(exc),
                     f"edit {path}, or start from the shipped one: perception3d params --yaml > {path}"), {}
    return Check(f"parameter file {path}", "ok", "valid for rcl and the schema"), params


def _shipped_models() -> dict[str, Path]:
    """node -> its shipped checkpoint (the node's model name is the node name)."""
    from ..core.models.shipped import (
        SHIPPED_CHECKPOINT,
        SHIPPED_DETECTION3D,
        SHIPPED_OCCUPANCY,
        SHIPPED_SEGMENTATION,
    )

    return {"detector2d": SHIPPED_CHECKPOINT, "segmentation": SHIPPED_SEGMENTATION, "occupancy": SHIPPED_OCCUPANCY,
            "detection3d": SHIPPED_DETECTION3D}


def check_checkpoint(node: str, params: dict) -> Check:
    """Whether the model a node will load at start loads (torch backend; an ONNX file is checked at node start)."""
    from ..core.models.checkpoint import load_checkpoint
    from ..errors import Perception3DError

    path = Path(params.get("model_path") or _shipped_models()[node])
    if params.get("backend", "torch") != "torch":
        return Check(f"{node} model", "ok", f"backend {params['backend']}: {path} (checked at node start)")
    try:
        load_checkpoint(path, expected_model=node)
    except Perception3DError as exc:
        return Check(f"{node} checkpoint", "FAIL", str(exc),
                     f"set {node} model_path to a checkpoint `perception3d train {node}` wrote, or '' for the "
                     "shipped one")
    return Check(f"{node} checkpoint", "ok", f"{path} loads")


def run_checks(config: Path) -> list[Check]:
    checks = [*check_ros(), check_numpy()]
    param_check, params = check_parameter_file(config)
    detector2d = params.get("detector2d", {})
    checks += [*check_learned(str(detector2d.get("device", "auto"))), param_check]
    if any(c.name == "torch" and c.level == "ok" for c in checks):
        checks += [check_checkpoint(node, params.get(node, {})) for node in _shipped_models()
                   if node == "detector2d" or params.get(node, {}).get("mode") == "learned"]
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("config/perception3d.yaml"),
                        help="parameter file the nodes will be started with (default: config/perception3d.yaml)")


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    checks = run_checks(args.config)
    for check in checks:
        out(check.line())
    failed = [c for c in checks if c.level == "FAIL"]
    out(f"{len(failed)} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0
