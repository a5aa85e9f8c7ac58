"""config/controllers/g1_gazebo_controllers.yaml, the worked ros2_control setup of docs/ROS.md: it
parses, names exactly the G1's joints, and has the settings the node's output is shaped for.

ros2_control is C++ and not installable here, so the file is checked as data, and through the
model of the joint_trajectory_controller's acceptance rules (:mod:`moscale_ros.control.jtc_rules`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from moscale_ros.control.jtc_rules import ControllerSettings, TrajectoryMessage, rejection_reason
from moscale_ros.node.parameters import DEFAULT_CONTROLLER_TOPIC
from moscale_ros.pipeline import PipelineConfig
from retarget.robot import load_robot

ROOT = Path(__file__).resolve().parents[1]
CONTROLLERS_FILE = ROOT / "config" / "controllers" / "g1_gazebo_controllers.yaml"
JTC_TYPE = "joint_trajectory_controller/JointTrajectoryController"


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(CONTROLLERS_FILE.read_text())


@pytest.fixture(scope="module")
def jtc(document) -> dict:
    return document["joint_trajectory_controller"]["ros__parameters"]


def test_the_controller_manager_loads_a_trajectory_controller_on_the_nodes_default_topic(document):
    manager = document["controller_manager"]["ros__parameters"]
    controllers = {name: value["type"] for name, value in manager.items() if isinstance(value, dict)}
    assert controllers == {
        "joint_state_broadcaster": "joint_state_broadcaster/JointStateBroadcaster",
        "joint_trajectory_controller": JTC_TYPE,
    }
    assert DEFAULT_CONTROLLER_TOPIC == "/joint_trajectory_controller/joint_trajectory"  # /<name>/joint_trajectory
    # It samples at least as often as the node's trajectory points come (control_rate).
    assert manager["update_rate"] >= PipelineConfig().control_rate
    assert manager["use_sim_time"] is True


def test_it_names_exactly_the_g1_joints(jtc):
    joints = jtc["joints"]
    robot = load_robot("g1")
    assert len(joints) == len(set(joints)) == 29
    assert joints == robot.joint_names  # same set; the robot's order too, for readability


def test_it_has_the_settings_the_node_output_is_shaped_for(jtc):
    assert jtc["command_interfaces"] == ["position"]
    assert jtc["state_interfaces"] == ["position", "velocity"]
    assert jtc["interpolation_method"] == "splines"
    assert jtc["allow_partial_joints_goal"] is False
    assert jtc["allow_nonzero_velocity_at_trajectory_end"] is False
    assert jtc["open_loop_control"] is True and jtc["interpolate_from_desired_state"] is True
    assert jtc["cmd_timeout"] == 0.0


def test_the_controller_accepts_a_trajectory_at_rest_and_refuses_one_still_moving(jtc):
    """Through the controller model, with this file's settings: a node-shaped message (all joints,
    in the robot's order, ending at rest) is accepted; one ending in motion, or naming fewer joints, is not."""
    settings = ControllerSettings(
        list(jtc["joints"]),
        allow_partial_joints_goal=jtc["allow_partial_joints_goal"],
        allow_nonzero_velocity_at_trajectory_end=jtc["allow_nonzero_velocity_at_trajectory_end"],
    )
    robot = load_robot("g1")
    times_N = np.arange(4) * 0.02
    positions_NJ = np.zeros((4, 29))
    velocities_NJ = np.zeros((4, 29))
    at_rest = TrajectoryMessage(robot.joint_names, 0.0, times_N, positions_NJ, velocities_NJ, np.zeros((4, 29)))
    assert rejection_reason(at_rest, settings, now=0.0) is None
    velocities_NJ[-1, 3] = 0.01
    moving = TrajectoryMessage(robot.joint_names, 0.0, times_N, positions_NJ, velocities_NJ, None)
    assert "(R3)" in rejection_reason(moving, settings, now=0.0)
    partial = TrajectoryMessage(robot.joint_names[:12], 0.0, times_N, positions_NJ[:, :12], None, None)
    assert "(R2)" in rejection_reason(partial, settings, now=0.0)


def test_the_ros_guide_points_to_it():
    guide = (ROOT / "docs" / "ROS.md").read_text()
    assert "config/controllers/g1_gazebo_controllers.yaml" in guide
