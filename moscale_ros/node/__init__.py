"""The ROS 2 adapter: the only part of the project that imports rclpy."""
