"""Robot configs: G1 and TALOS load from their YAML; bad names, URDFs and maps raise clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moscale_common.errors import ConfigError
from moscale_ros.pipeline import PipelineConfig, build_pipeline
from retarget import Retargeter, available_robots, load_robot
from retarget.ik import _solve_daqp, solve_box_qp
from retarget.robot import REQUIRED_FRAMES


@pytest.mark.parametrize("name, joints", [("g1", 29), ("talos", 28)])
def test_shipped_robots_load_with_limits(name: str, joints: int) -> None:
    robot = load_robot(name)
    assert robot.num_joints == joints and robot.model.nq == 7 + joints
    assert np.all(robot.lower < robot.upper)
    assert np.all(robot.velocity_limits > 0)
    assert np.all(robot.velocity_limits <= robot.model.velocityLimit[6:] + 1e-12)
    assert np.all((robot.q_initial[7:] >= robot.lower) & (robot.q_initial[7:] <= robot.upper))
    assert set(REQUIRED_FRAMES) <= set(robot.frame_ids)


def test_g1_velocity_limits_come_from_the_yaml_not_the_urdf() -> None:
    robot = load_robot("g1")
    limit = dict(zip(robot.joint_names, robot.velocity_limits))
    assert limit["left_knee_joint"] == 10.0 and limit["waist_yaw_joint"] == 4.0
    assert limit["left_wrist_roll_joint"] == 6.0


def test_unknown_robot_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="unknown robot 'h7'.*g1.*talos"):
        load_robot("h7")
    assert {"g1", "talos"} <= set(available_robots())


def test_robot_description_string_replaces_the_urdf_source() -> None:
    urdf = Path(load_robot("g1").source).read_text()
    robot = load_robot("g1", urdf_string=urdf)
    assert robot.source == "robot_description" and robot.num_joints == 29
    retargeter = Retargeter(robot)  # its meshes are not files: self-collision off, said in every report
    assert retargeter.collision is None and "self-collision off" in retargeter.collision_off


def test_urdf_missing_a_mapped_frame_is_named() -> None:
    urdf = Path(load_robot("g1").source).read_text().replace("left_elbow_link", "left_forearm_link")
    with pytest.raises(ConfigError, match="left_elbow_link"):
        load_robot("g1", urdf_string=urdf)


def test_broken_urdf_and_yaml_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot build a model"):
        load_robot("g1", urdf_string="<robot name='x'><link name=")
    text = (Path(__file__).parents[1] / "config/robots/g1.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  spine3: torso_link\n", ""))
    with pytest.raises(ConfigError, match=r"bad\.yaml: frames is missing entries for spine3"):
        load_robot(bad)
    bad.write_text(text.replace("left_knee_joint: 0.6", "left_kneee_joint: 0.6"))
    with pytest.raises(ConfigError, match="joint 'left_kneee_joint' is not in the URDF"):
        load_robot(bad)


def test_box_qp_matches_daqp_on_random_problems() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = 12
        A = rng.normal(size=(20, n))
        H = A.T @ A + 1e-3 * np.eye(n)
        g = rng.normal(size=n) * 3
        lb, ub = -rng.uniform(0.01, 0.5, n), rng.uniform(0.01, 0.5, n)
        x_own, x_ref = solve_box_qp(H, g, lb, ub), _solve_daqp(H, g, lb, ub)
        cost_own, cost_ref = (0.5 * x @ H @ x - g @ x for x in (x_own, x_ref))
        assert np.all(x_own >= lb) and np.all(x_own <= ub)
        assert cost_own <= cost_ref + 1e-6 * (1 + abs(cost_ref))


def test_walking_controller_settings_are_checked(tmp_path: Path) -> None:
    """max_base_velocity and leg_joints (locomotion: cmd_vel): bad values name the problem; a robot
    YAML without them cannot run cmd_vel, and the pipeline says so before loading any model."""
    g1, talos = load_robot("g1"), load_robot("talos")
    assert g1.config.max_base_velocity == [2.0, 0.6, 1.5] and len(g1.upper_body_columns) == 17
    assert talos.config.max_base_velocity == [0.5, 0.2, 0.5] and len(talos.upper_body_columns) == 16
    text = (Path(__file__).parents[1] / "config/robots/g1.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("max_base_velocity: [2.0, 0.6, 1.5]", "max_base_velocity: [2.0, 0.0, 1.5]"))
    with pytest.raises(ConfigError, match=r"max_base_velocity must be 3 values > 0"):
        load_robot(bad)
    bad.write_text(text.replace('"*_knee_joint"', '"*_kne_joint"'))
    with pytest.raises(ConfigError, match=r"leg_joints \['\*_kne_joint'\] match no joint"):
        load_robot(bad)
    bad.write_text(text.replace("max_base_velocity: [2.0, 0.6, 1.5]", ""))
    with pytest.raises(ConfigError, match="locomotion: cmd_vel needs max_base_velocity in the robot YAML of g1"):
        build_pipeline(PipelineConfig(robot=str(bad), locomotion="cmd_vel", device="cpu"))
