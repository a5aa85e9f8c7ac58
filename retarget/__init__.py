"""Retargeting of canonical human joint positions onto humanoid robots with Pinocchio (no ROS)."""
