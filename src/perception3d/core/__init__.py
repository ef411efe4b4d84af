"""ROS-free perception logic: numpy/torch only. Nothing here imports rosbags or rclpy."""
