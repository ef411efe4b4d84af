"""Start the occupancy node alone (wiring from runtime/graph.py); arguments as in full.launch.py."""
from perception3d.runtime.launch_plan import launch_description


def generate_launch_description():
    return launch_description(["occupancy"])
