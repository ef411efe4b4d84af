"""perception3d: camera + LiDAR 3D perception for ROS 2 (detection, segmentation, occupancy)."""

__version__ = "0.1.0"
