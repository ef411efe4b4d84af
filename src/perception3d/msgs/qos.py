"""QoS profiles of perception3d topics, ROS-free; runtimes turn them into rosbags or rclpy profiles."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QosSpec:
    """The parts of a ROS 2 QoS profile we set.

    Attributes:
        reliable: RELIABLE when True, BEST_EFFORT otherwise.
        transient_local: TRANSIENT_LOCAL durability when True, VOLATILE otherwise.
        depth: KEEP_LAST history depth.
    """

    reliable: bool
    transient_local: bool
    depth: int


# Sensor inputs: best effort, shallow queue (SensorDataQoS semantics with depth 5).
SENSOR = QosSpec(reliable=False, transient_local=False, depth=5)
# Node outputs: reliable so RViz (reliable by default) and recorders get every message.
OUTPUT = QosSpec(reliable=True, transient_local=False, depth=5)
# LabelInfo and /tf_static: latched for late joiners.
LATCHED = QosSpec(reliable=True, transient_local=True, depth=1)
# /tf as tf2_ros broadcasts it.
TF = QosSpec(reliable=True, transient_local=False, depth=100)
