"""The topics the perception graph publishes its results on: runtime.graph maps the nodes' output ports to them, and
the readers of recorded graph bags (eval.report, viz.bag_frame, bench.robustness) find the results there."""

OBJECTS_TOPIC = "/perception/objects"  # vision_msgs/msg/Detection3DArray
OBJECT_MARKERS_TOPIC = "/perception/objects/markers"  # visualization_msgs/msg/MarkerArray: boxes for RViz
OBJECT_MOTION_TOPIC = "/perception/objects/motion"  # visualization_msgs/msg/MarkerArray: velocities and attributes
SEGMENTATION_TOPIC = "/perception/segmentation/pointcloud"  # sensor_msgs/msg/PointCloud2 with label and score
OCCUPANCY_GRID_TOPIC = "/perception/occupancy/grid"  # perception3d_msgs/msg/OccupancyGrid3D
OCCUPANCY_VOXELS_TOPIC = "/perception/occupancy/voxels"  # sensor_msgs/msg/PointCloud2: the occupied voxels
OCCUPANCY_MARKERS_TOPIC = "/perception/occupancy/markers"  # visualization_msgs/msg/MarkerArray
