"""Retargeting real Bandai clips onto G1 and TALOS: the judged figures, chaining, streaming, bad input.

Clips come from the shared Bandai-Namco archive (moscale_common.paths.shared_data_archive()); these
tests skip only when that archive is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from moscale_common.errors import InputError
from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from retarget import Retargeter, RobotTrajectory, load_robot
from retarget.human import JOINT


@pytest.fixture(scope="module")
def clips() -> dict:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    return real_clips()


@pytest.fixture(scope="module")
def g1():
    return Retargeter(load_robot("g1"))


@pytest.mark.parametrize("clip", ["walk", "run", "wave", "kick", "bow"])
def test_g1_judged_figures_on_real_clips(clips: dict, g1: Retargeter, clip: str) -> None:
    joints, fps = clips[clip]
    traj = g1.retarget(joints, fps)
    rep = traj.report
    robot = g1.robot
    assert rep.max_joint_limit_violation_rad == 0.0
    assert np.all(traj.positions >= robot.lower) and np.all(traj.positions <= robot.upper)
    assert rep.max_speed_ratio <= 1.0 + 1e-9
    assert np.all(np.abs(traj.velocities) <= robot.velocity_limits * (1 + 1e-9))
    assert rep.foot_slide_max_cm < 2.0, rep.format()
    for part in ("left_hand", "right_hand", "left_foot", "right_foot"):
        assert rep.tracking_median_cm[part] < 3.0, rep.format()
    assert rep.ground_penetration_max_cm < 2.5, rep.format()
    if clip in ("walk", "wave", "bow"):
        assert min(rep.contact_fraction.values()) > 0.2  # contacts are found, so slide was measured


def test_trajectory_contract(clips: dict, g1: Retargeter, tmp_path) -> None:
    joints, fps = clips["wave"]
    traj = g1.retarget(joints, fps)
    n, nj = len(traj), g1.robot.num_joints
    assert traj.joint_names == g1.robot.joint_names
    assert traj.times[0] == 0.0 and np.all(np.diff(traj.times) > 0)
    assert np.allclose(np.diff(traj.times), 1 / 50)
    assert abs(traj.duration - (len(joints) - 1) / fps) < 1 / 50
    assert traj.base_poses.shape == (n, 7) and traj.positions.shape == traj.velocities.shape == (n, nj)
    assert np.allclose(np.linalg.norm(traj.base_poses[:, 3:], axis=1), 1.0)
    assert np.allclose(traj.velocities, np.gradient(traj.positions, 1 / 50, axis=0))
    assert np.allclose(traj.accelerations, np.gradient(traj.velocities, 1 / 50, axis=0))
    assert np.allclose(traj.final_q, np.concatenate([traj.base_poses[-1], traj.positions[-1]]))
    # the wave: right wrist above the right shoulder for a good part of the clip, on the robot too
    assert traj.report.tracking_median_cm["right_hand"] < 3.0
    assert set(traj.report.as_dict()) >= {"foot_slide_max_cm", "tracking_median_cm", "com_over_support_fraction"}
    back = RobotTrajectory.load(traj.save(tmp_path / "t.npz"))
    assert np.array_equal(back.positions, traj.positions) and back.joint_names == traj.joint_names
    header = (tmp_path / "t.csv").open().readline() if traj.save(tmp_path / "t.csv") else ""
    assert header.startswith("time,base_x") and "right_elbow_joint.velocity" in header


def test_talos_retargets_the_same_clips(clips: dict) -> None:
    talos = Retargeter(load_robot("talos"))
    for clip in ("walk", "wave"):
        joints, fps = clips[clip]
        rep = talos.retarget(joints, fps).report
        assert rep.robot == "talos"
        assert rep.max_joint_limit_violation_rad == 0.0 and rep.max_speed_ratio <= 1.0 + 1e-9
        assert rep.foot_slide_max_cm < 2.0, rep.format()
        assert max(rep.tracking_median_cm["left_foot"], rep.tracking_median_cm["right_foot"]) < 3.0


def test_chaining_starts_where_the_robot_was(clips: dict, g1: Retargeter) -> None:
    first = g1.retarget(*clips["walk"])
    second = g1.retarget(*clips["wave"], initial_q=first.final_q)
    robot = g1.robot
    step = robot.velocity_limits / 50
    assert np.all(np.abs(second.positions[0] - first.final_q[7:]) <= step + 1e-9)
    assert np.linalg.norm(second.base_poses[0, :2] - first.final_q[:2]) < 0.1  # walked ~2 m, continues there
    assert np.linalg.norm(first.final_q[:2]) > 1.0
    assert second.report.max_speed_ratio <= 1.0 + 1e-9


def test_coarse_plan_then_warm_started_refinement(clips: dict, g1: Retargeter) -> None:
    joints, fps = clips["walk"]
    coarse = g1.retarget(joints, fps, ik_fps=5.0)
    refined = g1.retarget(joints, fps, warm_start=coarse)
    assert len(coarse) == len(refined)  # same timeline, so a refinement replaces the plan point for point
    assert coarse.report.max_joint_limit_violation_rad == 0.0 and coarse.report.max_speed_ratio <= 1 + 1e-9
    assert refined.report.foot_slide_max_cm < 2.0
    assert refined.report.tracking_median_cm["left_foot"] < coarse.report.tracking_median_cm["left_foot"] + 1.0
    assert not np.allclose(coarse.positions, refined.positions)


def test_bad_input_raises_clear_errors(clips: dict, g1: Retargeter) -> None:
    joints, fps = clips["wave"]
    broken = joints.copy()
    broken[7, JOINT["left_wrist"], 1] = np.nan
    with pytest.raises(InputError, match="NaN or infinite.*frame 7, joint left_wrist"):
        g1.retarget(broken, fps)
    with pytest.raises(InputError, match=r"shape \(T, 22, 3\)"):
        g1.retarget(joints[:, :21], fps)
    with pytest.raises(InputError, match="expected metres"):
        g1.retarget(joints * 1000, fps)
    with pytest.raises(InputError, match="fps must be a positive number"):
        g1.retarget(joints, 0.0)
    with pytest.raises(InputError, match="initial_q: expected 36 finite values"):
        g1.retarget(joints, fps, initial_q=np.zeros(30))


def test_impossible_motion_is_clamped_and_reported(clips: dict, g1: Retargeter) -> None:
    joints, fps = clips["wave"]
    stretched = joints.copy()
    shoulder = stretched[:, JOINT["right_shoulder"]]
    # the wrist flies 2 m out and back in a fraction of a second: out of reach and too fast
    stretched[20:26, JOINT["right_wrist"]] = shoulder[20:26] + np.array([-2.0, 0.5, 0.0])
    traj = g1.retarget(stretched, fps)
    rep = traj.report
    assert rep.max_joint_limit_violation_rad == 0.0 and rep.max_speed_ratio <= 1.0 + 1e-9
    assert any(w.startswith("right_hand:") and "miss their target" in w for w in rep.warnings), rep.warnings
    assert any(c["velocity_limit"] > 0 for name, c in rep.clamped.items() if name.startswith("right_"))
