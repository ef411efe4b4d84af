"""Hosts of the node definitions: the graph, the ROS-free bag runtime, the rclpy host."""
