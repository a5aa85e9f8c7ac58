"""config/controllers/g1_gazebo_controllers.yaml, the worked ros2_control setup of docs/ROS.md: it
parses, names exactly the G1's joints, and has the settings the node's output is shaped for; the
split setup (g1_gazebo_split_controllers.yaml, legs + waist and arms) and the node's side of it
(moscale_g1_split.yaml, the ``controllers`` parameter) agree.

ros2_control is C++ and not installable here, so the file is checked as data, and through the
model of the joint_trajectory_controller's acceptance rules (:mod:`moscale_ros.control.jtc_rules`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from moscale_common.errors import ConfigError
from moscale_ros.control.jtc_rules import ControllerSettings, TrajectoryMessage, rejection_reason
from moscale_ros.node.controllers import assign_joints, parse_controllers
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


# --------------------------------------------------------------- the split: legs + waist, and arms

SPLIT_FILE = ROOT / "config" / "controllers" / "g1_gazebo_split_controllers.yaml"
NODE_SPLIT_FILE = ROOT / "config" / "controllers" / "moscale_g1_split.yaml"


def test_the_split_setup_covers_every_g1_joint_once_and_the_node_file_matches_it():
    """Two controllers, legs + waist and arms: every G1 joint in exactly one; the node's
    ``controllers`` names the same joints, in the same order, on each controller's topic."""
    document = yaml.safe_load(SPLIT_FILE.read_text())
    manager = document["controller_manager"]["ros__parameters"]
    trajectory_controllers = [
        name for name, value in manager.items() if isinstance(value, dict) and value["type"] == JTC_TYPE
    ]
    assert trajectory_controllers == ["legs_waist_controller", "arms_controller"]
    joints = {name: document[name]["ros__parameters"]["joints"] for name in trajectory_controllers}
    robot = load_robot("g1")
    assert sorted(joints["legs_waist_controller"] + joints["arms_controller"]) == sorted(robot.joint_names)
    assert all(("hip" in j or "knee" in j or "ankle" in j or "waist" in j) for j in joints["legs_waist_controller"])
    assert all(("shoulder" in j or "elbow" in j or "wrist" in j) for j in joints["arms_controller"])
    node_parameters = yaml.safe_load(NODE_SPLIT_FILE.read_text())["/**"]["ros__parameters"]
    assert parse_controllers(node_parameters["controllers"]) == {
        f"/{name}/joint_trajectory": joints[name] for name in trajectory_controllers
    }
    for name in trajectory_controllers:  # the same strict settings as the whole-body file
        settings = document[name]["ros__parameters"]
        assert settings["allow_partial_joints_goal"] is False
        assert settings["allow_nonzero_velocity_at_trajectory_end"] is False
        assert settings["interpolation_method"] == "splines"


def test_a_split_message_is_accepted_by_its_controller_and_refused_by_the_other():
    """Through the controller model: each controller accepts the message carrying exactly its joints
    and refuses the other one's (and the whole-body message)."""
    document = yaml.safe_load(SPLIT_FILE.read_text())
    names = ["legs_waist_controller", "arms_controller"]
    settings = {n: ControllerSettings(list(document[n]["ros__parameters"]["joints"])) for n in names}
    times_N = np.arange(3) * 0.02

    def message(joints: list[str]) -> TrajectoryMessage:
        zeros_NJ = np.zeros((3, len(joints)))
        return TrajectoryMessage(joints, 0.0, times_N, zeros_NJ, zeros_NJ, zeros_NJ)

    for own, other in (names, names[::-1]):
        assert rejection_reason(message(settings[own].joints), settings[own], now=0.0) is None
        assert "(R2)" in rejection_reason(message(settings[other].joints), settings[own], now=0.0)
        assert "(R2)" in rejection_reason(message(load_robot("g1").joint_names), settings[own], now=0.0)


def test_controllers_parameter_errors_name_the_problem():
    assert parse_controllers("") == {}
    with pytest.raises(ConfigError, match="listed under both /a and /b"):
        parse_controllers("{/a: [x, y], /b: [y]}")
    with pytest.raises(ConfigError, match="expected a non-empty list of joint names"):
        parse_controllers("{/a: []}")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_controllers("[a, b]")
    with pytest.raises(ConfigError, match=r"not joints of the robot"):
        assign_joints({"/a": ["left_knee_joint", "tail_joint"]}, "/default", load_robot("g1").joint_names)
    assignment = assign_joints(
        {"/legs": ["left_knee_joint", "right_knee_joint"]}, "/default", load_robot("g1").joint_names
    )
    assert assignment.columns == {"/legs": [3, 9]} and len(assignment.unlisted) == 27 and not assignment.whole_body
    assert assign_joints({}, "/default", load_robot("g1").joint_names).whole_body


def test_under_cmd_vel_only_controllers_without_leg_joints_get_the_upper_body():
    """locomotion: cmd_vel, a travelling motion: in the split setup the arms controller gets its joints
    (accepted by its controller model) and legs + waist gets nothing (the walking controller owns the
    legs, and a partial message would be refused); a single controller gets the non-leg joints."""
    robot = load_robot("g1")
    node_parameters = yaml.safe_load(NODE_SPLIT_FILE.read_text())["/**"]["ros__parameters"]
    split = assign_joints(parse_controllers(node_parameters["controllers"]), "/default", robot.joint_names)
    upper = split.upper_body(robot.upper_body_columns)
    assert list(upper) == ["/arms_controller/joint_trajectory"]
    arms = [robot.joint_names[c] for c in upper["/arms_controller/joint_trajectory"]]
    assert arms == split.joint_names["/arms_controller/joint_trajectory"]
    zeros_NJ = np.zeros((3, len(arms)))
    message = TrajectoryMessage(arms, 0.0, np.arange(3) * 0.02, zeros_NJ, zeros_NJ, zeros_NJ)
    assert rejection_reason(message, ControllerSettings(arms), now=0.0) is None
    single = assign_joints({}, "/default", robot.joint_names).upper_body(robot.upper_body_columns)
    names = [robot.joint_names[c] for c in single["/default"]]
    assert len(names) == 17 and not [n for n in names if "hip" in n or "knee" in n or "ankle" in n]
