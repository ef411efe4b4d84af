"""Install perception3d with pip (`pip install .`) or colcon (ament_python).

The perception3d_msgs definitions live once, in ros2_ws/src/perception3d_msgs/msg/; the build copies them into
the Python package so that a pip-installed perception3d can register them with rosbags.
"""
import shutil
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = "perception3d"
ROOT = Path(__file__).resolve().parent
MSG_SOURCE = ROOT / "ros2_ws" / "src" / "perception3d_msgs" / "msg"


class BuildPyWithMessages(build_py):
    """build_py that also places perception3d_msgs/*.msg inside the built package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / PACKAGE / "msgs" / "definitions" / "perception3d_msgs"
        target.mkdir(parents=True, exist_ok=True)
        for msg in MSG_SOURCE.glob("*.msg"):
            shutil.copy2(msg, target / msg.name)


NODE_EXECUTABLES = ["detector2d", "detection3d", "segmentation", "occupancy"]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="ROS 2 camera + LiDAR 3D perception: detection, segmentation, occupancy",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={
        f"{PACKAGE}.msgs": ["definitions/*/*.msg"],
        f"{PACKAGE}.core.models": ["weights/*.pt"],
        f"{PACKAGE}.data": ["*.json"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.json")),
        (f"share/{PACKAGE}/config/rviz", glob("config/rviz/*.rviz")),
    ],
    # Lower bounds no newer than Ubuntu 22.04's apt packages (numpy 1.21.5, scipy 1.8.0, pyyaml 5.4.1, jsonschema
    # 3.2.0, pillow 9.0.1, tqdm 4.57.0, threadpoolctl 3.1.0), which a ROS 2 Humble install uses: pip must not
    # replace them.
    install_requires=[
        "numpy>=1.21.5,<2",
        "scipy>=1.8",
        "rosbags>=0.11.9,<0.12",
        "pyyaml>=5.4",
        "jsonschema>=3.2",
        "pillow>=9.0",
        "tqdm>=4.57",
        "threadpoolctl>=3.1",
        # the MCAP reader (msgs.mcap_records) and its chunk decompression
        "mcap>=1.1",
        "lz4>=3.1",
        "zstandard>=0.15",
    ],
    extras_require={
        "data": ["nuscenes-devkit==1.2.0", "opencv-python-headless>=4.5"],  # cv2: the synthetic world's renderer
        # cv2: image preprocessing and augmentation; matplotlib: training curves
        "learned": ["torch>=2.1", "onnx>=1.15", "onnxruntime>=1.17", "opencv-python-headless>=4.5",
                    "matplotlib>=3.5"],
        "test": [
            "pytest>=7",
            "hypothesis>=6.80",
            "mcap-ros2-support>=0.5",
            "transforms3d>=0.4.2",
            "ruff>=0.5",
        ],
    },
    cmdclass={"build_py": BuildPyWithMessages},
    zip_safe=False,
    entry_points={
        "console_scripts": [f"{PACKAGE} = {PACKAGE}.cli:main"] + [
            f"{PACKAGE}_{node} = {PACKAGE}.runtime.ros:main_{node}" for node in NODE_EXECUTABLES] + [
            f"{PACKAGE}_graph = {PACKAGE}.runtime.ros:main_graph"],
    },
)
