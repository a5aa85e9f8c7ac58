"""Retargeting of canonical human joint positions onto humanoid robots with Pinocchio (no ROS).

>>> from retarget import load_robot, Retargeter
>>> trajectory = Retargeter(load_robot("g1")).retarget(joints_T223, fps=20)
>>> trajectory.positions.shape, trajectory.report.format()
"""

from retarget.report import QualityReport
from retarget.retargeter import RetargetConfig, Retargeter
from retarget.robot import Robot, RobotConfig, available_robots, load_robot
from retarget.trajectory import RobotTrajectory

__all__ = [
    "QualityReport",
    "RetargetConfig",
    "Retargeter",
    "Robot",
    "RobotConfig",
    "RobotTrajectory",
    "available_robots",
    "load_robot",
]
