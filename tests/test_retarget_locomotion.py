"""Base velocity commands of a travelling motion (ROS-free core of cmd_vel locomotion), on real clips."""

from __future__ import annotations

import numpy as np
import pytest

from moscale_common.errors import InputError
from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from moscale_ros.control.base_velocity import BaseVelocityPlan, BaseVelocitySchedule
from retarget import Retargeter, load_robot
from retarget.balance import is_standing
from retarget.locomotion import (
    TravelRule,
    base_velocity_commands,
    heading_from_quaternions,
    heading_from_rotations,
    integrate_commands,
    is_travelling,
)

MAX_VELOCITY = np.array([4.0, 1.0, 3.0])  # m/s, m/s, rad/s: above what the walk and the run (2.9 m/s) need


@pytest.mark.parametrize("clip", ["walk", "run"])
def test_integrated_commands_retrace_the_root_path_and_stop(clip: str) -> None:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    joints, fps = real_clips((clip,))[clip]
    retargeter = Retargeter(load_robot("g1"))
    targets, _, rate = retargeter.targets(joints, fps)
    heading_T = heading_from_rotations(targets.pelvis_R_T33, retargeter.proportions.neutral_R["pelvis"])
    commands_T3 = base_velocity_commands(targets.root_T3, heading_T, rate, MAX_VELOCITY)
    path_T3 = integrate_commands(commands_T3, rate, targets.root_T3[0, :2], heading_T[0])
    travelled = np.linalg.norm(np.diff(targets.root_T3[:, :2], axis=0), axis=1).sum()
    assert travelled > 1.0  # it travels
    error = np.linalg.norm(path_T3[:, :2] - targets.root_T3[:, :2], axis=1).max()
    assert error <= 0.1 * travelled, (error, travelled)
    np.testing.assert_array_equal(commands_T3[-1], 0.0)
    assert np.all(np.abs(commands_T3) <= MAX_VELOCITY)
    assert commands_T3[len(commands_T3) // 2, 0] > 0.3  # forward, in the body frame


def test_commands_are_limited_and_bad_input_fails() -> None:
    t = np.arange(50) / 50.0
    root = np.stack([3.0 * t, 0 * t, 0 * t + 0.7], axis=1)  # 3 m/s straight ahead
    commands = base_velocity_commands(root, np.zeros(50), 50.0, np.array([1.0, 0.5, 1.0]))
    assert commands[:-1, 0].max() == 1.0 and commands[-1, 0] == 0.0
    with pytest.raises(InputError):
        base_velocity_commands(root[:1], np.zeros(1), 50.0, MAX_VELOCITY)


@pytest.mark.parametrize(("clip", "travels"), [("walk", True), ("run", True), ("wave", False), ("bow", False),
                                               ("kick", True)])  # fmt: skip
def test_travelling_is_detected_from_the_root_path_of_real_clips(clip: str, travels: bool) -> None:
    """Walk and run travel; a wave and a bow stand (the balance module's class) and do not. The kick
    clip is a spinning kick: its pelvis turns 16.6 rad (2.6 turns) on 0.36 m, a turn by the rule."""
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    joints, fps = real_clips((clip,))[clip]
    retargeter = Retargeter(load_robot("g1"))
    targets, scale, _ = retargeter.targets(joints, fps)
    heading_T = heading_from_rotations(targets.pelvis_R_T33, retargeter.proportions.neutral_R["pelvis"])
    standing = is_standing(targets.root_T3, targets.ankle_T23, scale.robot_ankle_height, retargeter.config.balance)
    assert is_travelling(targets.root_T3, heading_T, standing) is travels


def test_travel_rule_on_paths_turns_and_sidesteps() -> None:
    t_T = np.linspace(0.0, 1.0, 51)
    still_T3 = np.zeros((51, 3))
    sidestep_T3 = np.stack([0 * t_T, 0.4 * t_T, 0 * t_T], axis=1)  # 0.4 m to the left
    rule = TravelRule(min_travel_m=0.3, min_turn_rad=0.5)
    assert is_travelling(sidestep_T3, np.zeros(51), standing=False, rule=rule)
    assert not is_travelling(sidestep_T3, np.zeros(51), standing=True, rule=rule)  # standing wins
    assert not is_travelling(0.25 * sidestep_T3 / 0.4, np.zeros(51), standing=False, rule=rule)  # 0.25 m: sway
    assert is_travelling(still_T3, 1.6 * t_T, standing=False, rule=rule)  # a turn on the spot
    assert not is_travelling(still_T3, 0.3 * t_T, standing=False, rule=rule)


def test_heading_from_quaternions_unwraps_a_full_turn() -> None:
    yaw_T = np.linspace(0.0, 2 * np.pi + 1.0, 40)
    quaternions_T4 = np.stack([0 * yaw_T, 0 * yaw_T, np.sin(yaw_T / 2), np.cos(yaw_T / 2)], axis=1)
    np.testing.assert_allclose(heading_from_quaternions(quaternions_T4), yaw_T, atol=1e-9)


def test_schedule_switches_plans_at_their_time_and_ends_with_zero() -> None:
    coarse = BaseVelocityPlan(10.0, 50.0, np.tile([0.5, 0.0, 0.0], (100, 1)))  # 2 s from t = 10
    final = BaseVelocityPlan(10.6, 50.0, np.vstack([np.tile([0.8, 0.1, 0.2], (49, 1)), np.zeros((1, 3))]))
    schedule = BaseVelocitySchedule()
    schedule.replace(coarse, 10.0)
    schedule.replace(final, 10.6)
    np.testing.assert_array_equal(schedule.command_at(9.9)[0], 0.0)  # before the motion starts
    np.testing.assert_array_equal(schedule.command_at(10.3)[0], [0.5, 0.0, 0.0])  # coarse until the switch
    command, finished = schedule.command_at(10.7)
    np.testing.assert_array_equal(command, [0.8, 0.1, 0.2])  # the final plan from its switch time
    assert not finished
    command, finished = schedule.command_at(11.7)  # past the final plan's end (1 s): zero, finished
    np.testing.assert_array_equal(command, 0.0)
    assert finished and schedule.empty


def test_schedule_stop_commands_zero_from_its_time() -> None:
    schedule = BaseVelocitySchedule()
    schedule.replace(BaseVelocityPlan(0.0, 50.0, np.tile([1.0, 0.0, 0.0], (500, 1))), 0.0)
    schedule.stop(2.0)
    np.testing.assert_array_equal(schedule.command_at(1.0)[0], [1.0, 0.0, 0.0])
    command, finished = schedule.command_at(2.0)
    np.testing.assert_array_equal(command, 0.0)
    assert finished
