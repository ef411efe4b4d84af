"""ROS 2 messages without ROS: typestore, message factory, conversions and rosbag2 I/O."""
