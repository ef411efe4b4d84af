"""Start the whole perception graph (runtime/graph.py); see `ros2 launch perception3d full.launch.py --show-args`."""
from perception3d.runtime.graph import FULL_GRAPH
from perception3d.runtime.launch_plan import launch_description


def generate_launch_description():
    return launch_description([node.name for node in FULL_GRAPH.nodes])
