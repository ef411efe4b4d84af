"""`perception3d doctor`: each problem is reported with the command that fixes it."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

import ros_double
from perception3d.runtime import doctor_command

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "perception3d.yaml"


def doctor(config):
    lines = []
    code = doctor_command.run(argparse.Namespace(config=config), out=lines.append)
    return code, "\n".join(lines)


def test_a_ros_machine_with_the_shipped_config_passes(monkeypatch):
    ros_double.install(monkeypatch)  # stands in for a sourced ROS 2 install
    code, report = doctor(CONFIG)
    assert code == 0, report
    assert "[  ok] vision_msgs.msg.LabelInfo" in report and "[  ok] detector2d checkpoint" in report


def test_problems_name_their_fix(monkeypatch, tmp_path):
    doc = yaml.safe_load(CONFIG.read_text())
    doc["detector2d"]["ros__parameters"]["device"] = "cuda:3"
    config = tmp_path / "robot.yaml"
    config.write_text(yaml.safe_dump(doc) + "extra:\n  ros__parameters:\n    a: &x 1\n    b: *x\n")
    code, report = doctor(config)  # no ROS 2 here: rclpy is missing too
    assert code == 1
    assert "[FAIL] rclpy" in report and "fix: source /opt/ros/" in report
    assert f"[FAIL] parameter file {config}" in report and "alias *x" in report
    config.write_text(yaml.safe_dump(doc))
    _, report = doctor(config)
    assert "[FAIL] device cuda:3" in report and "fix: set device:=cpu" in report


def test_a_learned_lidar_node_with_another_models_checkpoint_fails_with_its_fix(tmp_path):
    from perception3d.core.models.shipped import SHIPPED_CHECKPOINT

    doc = yaml.safe_load(CONFIG.read_text())
    doc["segmentation"]["ros__parameters"].update(mode="learned", model_path=str(SHIPPED_CHECKPOINT))
    config = tmp_path / "robot.yaml"
    config.write_text(yaml.safe_dump(doc))
    _, report = doctor(config)
    assert "[FAIL] segmentation checkpoint" in report and "a segmentation checkpoint" in report
    assert "fix: set segmentation model_path to a checkpoint `perception3d train segmentation` wrote" in report
    doc["segmentation"]["ros__parameters"]["mode"] = "geometric"  # geometric mode loads no model
    config.write_text(yaml.safe_dump(doc))
    assert "segmentation checkpoint" not in doctor(config)[1]
