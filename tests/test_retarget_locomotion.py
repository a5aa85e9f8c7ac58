"""Base velocity commands of a travelling motion (ROS-free core of cmd_vel locomotion), on real clips."""

from __future__ import annotations

import numpy as np
import pytest

from moscale_common.errors import InputError
from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from retarget import Retargeter, load_robot
from retarget.locomotion import base_velocity_commands, heading_from_rotations, integrate_commands

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
