"""What a ROS 2 trajectory controller does with the node's output, and shaping that respects it (ROS-free)."""
