"""Shaping for a joint_trajectory_controller, judged by its rules (control/jtc_rules.py) on the real G1."""

from __future__ import annotations

import numpy as np
import pytest

from moscale_ros.control.jtc_rules import replay
from moscale_ros.control.shaping import (
    ease,
    finite_difference_speed,
    smooth_positions,
    spline_derivatives,
    within_speed_limits,
)
from moscale_ros.control.timeline import PATH_SLACK, ControllerTimeline, as_message
from moscale_ros.pipeline import BLEND_HEADROOM, validate_trajectory
from retarget.robot import load_robot
from retarget.trajectory import RobotTrajectory

RATE = 50.0


@pytest.fixture(scope="module")
def g1():
    return load_robot("g1")


def sway(robot, seconds: float, amplitude: float, hz: float = 0.5, phase: float = 0.0) -> RobotTrajectory:
    """Every joint sways around the middle of its range, ``q = m + a r sin(2 pi hz t + phase)``, moving at both ends."""
    times = np.arange(int(seconds * RATE) + 1) / RATE
    middle, half = (robot.lower + robot.upper) / 2, (robot.upper - robot.lower) / 2
    angle = 2 * np.pi * hz * times[:, None] + phase
    omega = 2 * np.pi * hz
    positions = middle + amplitude * half * np.sin(angle)
    base = np.tile([0.0, 0.0, 0.75, 0.0, 0.0, 0.0, 1.0], (len(times), 1))
    return RobotTrajectory(
        joint_names=list(robot.joint_names), times=times, base_poses=base, positions=positions,
        velocities=amplitude * half * omega * np.cos(angle), accelerations=-amplitude * half * omega**2 * np.sin(angle),
        control_rate=RATE, report=None, final_q=np.concatenate([base[-1], positions[-1]]), robot_name=robot.name,
    )  # fmt: skip


def test_ease_keeps_the_path_ends_at_rest_and_never_speeds_up(g1):
    motion = sway(g1, 3.0, 0.3)
    eased = ease(motion, 0.5, 0.5)
    assert eased.duration == pytest.approx(3.5)  # each ease plays half its length of motion
    np.testing.assert_array_equal(eased.velocities[[0, -1]], 0.0)
    np.testing.assert_array_equal(eased.accelerations[[0, -1]], 0.0)
    np.testing.assert_allclose(eased.positions[[0, -1]], motion.positions[[0, -1]], atol=1e-12)
    np.testing.assert_allclose(eased.positions[50], motion.positions[50 - 12], atol=0.02)  # cruising, 0.25 s behind
    assert np.all(finite_difference_speed(eased).max(axis=0) <= finite_difference_speed(motion).max(axis=0) + 1e-9)
    validate_trajectory(eased, g1)
    short = ease(sway(g1, 0.2, 0.3), 0.5, 0.5)  # shorter than the eases: they shrink
    assert short.duration == pytest.approx(0.4, abs=2 / RATE)
    validate_trajectory(short, g1)


def test_a_refinement_spliced_mid_motion_reaches_the_controller_without_a_jump(g1):
    coarse = ease(sway(g1, 4.0, 0.3), 0.5, 0.5)
    fine = ease(sway(g1, 4.0, 0.4, phase=0.4), 0.5, 0.5)  # a different plan of the same motion
    t0 = 100.0
    timeline = ControllerTimeline(g1.joint_names, g1.velocity_limits, RATE, blend_s=0.5, switch_lead=0.1)
    assert timeline.record(coarse, t0, now=t0 - 0.2) is None
    now = t0 + 1.234  # the refinement is ready mid-motion
    switch = timeline.switch_time(t0, now)
    assert switch == pytest.approx(t0 + 1.34)  # now + lead = 1.334 s, up to the 50 Hz grid
    spliced = timeline.splice(fine, t0, switch)
    q, v, a = timeline.commanded(np.array([switch]))
    np.testing.assert_allclose(spliced.positions[0], q[0], atol=1e-12)
    np.testing.assert_allclose(spliced.velocities[0], v[0], atol=1e-12)
    validate_trajectory(spliced, g1)
    np.testing.assert_allclose(spliced.positions[-1], fine.positions[-1], atol=1e-12)  # ends on the refined plan
    step, step_ratio = timeline.predicted_step(spliced, switch, now)
    assert step_ratio <= 1.0 and step <= g1.velocity_limits.min() / RATE
    received = [(t0 - 0.2, as_message(coarse, t0)), (now + 0.003, as_message(spliced, switch))]
    result = replay(received, timeline.settings, coarse.positions[0])
    assert result.rejections == []
    assert result.max_step_fraction(g1.velocity_limits) <= 1.0
    assert result.max_speed_fraction(g1.velocity_limits) <= 1.0 + 1e-6
    # The same refinement, unspliced and on the motion's own start time, is sampled at "now": a jump.
    naive = replay([(t0 - 0.2, as_message(coarse, t0)), (now, as_message(fine, t0))], timeline.settings,
                   coarse.positions[0])  # fmt: skip
    assert naive.max_step_fraction(g1.velocity_limits) > 1.0


def test_the_blend_lengthens_until_the_speeds_are_inside_the_limits(g1):
    rest = ease(sway(g1, 1.0, 0.0), 0.0, 0.5)  # holding the middle of every range
    far = ease(sway(g1, 4.0, 0.9, hz=0.05, phase=np.pi / 2), 0.5, 0.5)  # starts near the ends of the ranges
    timeline = ControllerTimeline(g1.joint_names, g1.velocity_limits, RATE, blend_s=0.04, switch_lead=0.1)
    timeline.record(rest, 10.0, now=10.0)
    spliced = timeline.splice(far, 12.0, 12.0)
    assert within_speed_limits(spliced, g1.velocity_limits)
    np.testing.assert_allclose(spliced.positions[0], rest.positions[-1], atol=1e-12)
    validate_trajectory(spliced, g1)


def test_stop_brings_the_command_to_rest_along_its_path(g1):
    motion = ease(sway(g1, 4.0, 0.4, hz=0.4), 0.5, 0.5)
    validate_trajectory(motion, g1)
    timeline = ControllerTimeline(g1.joint_names, g1.velocity_limits, RATE, switch_lead=0.1)
    timeline.record(motion, 50.0, now=49.9)
    stopping, switch = timeline.stop_trajectory(now=51.0, stop_s=0.6)
    assert switch == pytest.approx(51.0)  # stamped at sending: 0.1 s on the commanded path, then slowing down
    assert stopping.duration == pytest.approx(0.1 + 0.6, abs=2 / RATE)
    validate_trajectory(stopping, g1)
    received = [(49.9, as_message(motion, 50.0)), (51.0, as_message(stopping, switch))]
    result = replay(received, timeline.settings, motion.positions[0], until=53.0)
    assert result.rejections == []
    assert result.max_step_fraction(g1.velocity_limits) <= 1.0
    assert result.max_speed_fraction(g1.velocity_limits) <= 1.0 + 1e-6
    after = result.times_T >= switch + stopping.duration
    np.testing.assert_allclose(result.velocities_TJ[after], 0.0, atol=1e-12)  # at rest, well before 54 s
    assert np.ptp(result.positions_TJ[after], axis=0).max() < 1e-12
    timeline.record(stopping, switch, now=51.0)
    assert timeline.stop_trajectory(now=53.0, stop_s=0.6) is None  # nothing moves any more


def test_smoothing_keeps_ends_limits_and_steps_and_rounds_clipped_corners(g1):
    """A joint clipped at the retargeter's speed (a ramp at 85 % of the limit, then holding) has
    corners where a spline through the points overshoots that speed by far more than the 15 %
    headroom; smoothed, the eased motion's velocities stay close to it, and the ends, the position
    range and the largest step are unchanged."""
    elbow = g1.joint_names.index("left_elbow_joint")
    limit = g1.velocity_limits[elbow]
    speed = (1 - BLEND_HEADROOM) * limit
    times = np.arange(101) / RATE
    ramp = np.clip(times - 0.5, 0.0, 0.4) * speed + g1.lower[elbow] + 0.1  # clipped speed for 0.4 s, else still
    positions = np.tile((g1.lower + g1.upper) / 2, (len(times), 1))
    positions[:, elbow] = ramp
    base = np.tile([0.0, 0.0, 0.75, 0.0, 0.0, 0.0, 1.0], (len(times), 1))
    clipped = RobotTrajectory(
        joint_names=list(g1.joint_names), times=times, base_poses=base, positions=positions,
        velocities=np.gradient(positions, times, axis=0), accelerations=np.zeros_like(positions), control_rate=RATE,
        report=None, final_q=np.concatenate([base[-1], positions[-1]]), robot_name=g1.name,
    )  # fmt: skip
    smoothed = smooth_positions(positions)
    np.testing.assert_allclose(smoothed[[0, -1]], positions[[0, -1]], atol=1e-12)
    assert smoothed.min() >= positions.min() - 1e-12 and smoothed.max() <= positions.max() + 1e-12
    assert np.abs(np.diff(smoothed, axis=0)).max() <= np.abs(np.diff(positions, axis=0)).max() + 1e-12
    unsmoothed_v, _ = spline_derivatives(times, positions, rest_start=True)
    assert np.abs(unsmoothed_v[:, elbow]).max() > 1.1 * speed  # the corner overshoot the smoothing removes
    eased = ease(clipped, 0.5, 0.5)
    assert np.abs(eased.velocities[:, elbow]).max() <= 1.01 * speed
    validate_trajectory(eased, g1)


def _two_joints(t_N: np.ndarray, positions_NJ: np.ndarray) -> RobotTrajectory:
    """Joints ``a`` and ``b`` (limits 1 rad/s in the tests below) on ``positions_NJ``, at rest at the end."""
    velocities_NJ = np.gradient(positions_NJ, t_N, axis=0)
    velocities_NJ[-1] = 0.0
    return RobotTrajectory(
        joint_names=["a", "b"], times=t_N, base_poses=np.tile([0, 0, 0, 0, 0, 0, 1.0], (len(t_N), 1)),
        positions=positions_NJ, velocities=velocities_NJ, accelerations=np.zeros_like(positions_NJ),
        control_rate=50.0, report=None, final_q=np.r_[0, 0, 0, 0, 0, 0, 1.0, positions_NJ[-1]],
    )  # fmt: skip


def test_a_commanded_path_faster_than_the_margin_is_still_spliced():
    """The commanded path runs at 99.9 % of joint a's limit at the switch, above the blends' usual
    98 % bound. At the switch a blend is that path: a fixed bound failed every blend length ("no
    blend of up to ..."); the bound is the path's own speed there, so the splice keeps the limit."""
    t_N = np.arange(0, 2.0, 0.02)
    timeline = ControllerTimeline(["a", "b"], np.array([1.0, 1.0]), 50.0, None, 0.5, 0.1)
    assert timeline.record(_two_joints(t_N, np.stack([0.999 * t_N, 0 * t_N], axis=1)), 10.0, 10.0) is None
    slower = _two_joints(t_N, np.stack([0.9 * t_N, 0 * t_N], axis=1))  # the same motion, refined slower
    spliced = timeline.splice(slower, 10.0, 10.5)
    q, v, _ = timeline.commanded(np.array([10.5]))
    np.testing.assert_allclose(spliced.positions[0], q[0], atol=1e-12)
    np.testing.assert_allclose(spliced.velocities[0], v[0], atol=1e-12)
    assert abs(spliced.velocities[0, 0]) > 0.98  # above the usual margin: the commanded path's speed
    assert within_speed_limits(spliced, np.array([1.0, 1.0]))


def test_a_plan_a_little_ahead_of_a_path_at_its_bound_is_still_spliced():
    """The commanded path runs at exactly 98 % of joint a's limit (a blend at its bound) and the plan
    is 2 mrad ahead of it: the blend's pull towards the plan adds a little speed wherever the path is
    at its bound, and every blend length failed ("7.840 rad/s against 7.840; the commanded path
    there 7.839", `moscale bench node`). With the slack over the path's speed it is spliced, at no
    point faster than the path by more than that slack."""
    t_N = np.arange(0, 2.0, 0.02)
    timeline = ControllerTimeline(["a", "b"], np.array([1.0, 1.0]), 50.0, None, 0.5, 0.1)
    assert timeline.record(_two_joints(t_N, np.stack([0.98 * t_N, 0 * t_N], axis=1)), 10.0, 10.0) is None
    ahead = _two_joints(t_N, np.stack([0.98 * t_N + 0.002, 0 * t_N], axis=1))
    spliced = timeline.splice(ahead, 10.0, 10.5)
    assert within_speed_limits(spliced, np.array([(1 + PATH_SLACK) * 0.98, 1.0]))
    assert np.abs(spliced.velocities[:, 0]).max() > 0.98 * (1 + 1e-6)  # above the old fixed bound


def test_a_splice_no_blend_can_keep_names_where_and_how_fast():
    """When the plan itself runs at the limit where the commanded path is slow (above the blend's
    bound, the limits less the spline margin), no blend length helps: the error says which joint,
    when, and how fast the commanded path is there (the node logs it with the failed command)."""
    t_N = np.arange(0, 2.0, 0.02)
    timeline = ControllerTimeline(["a", "b"], np.array([1.0, 1.0]), 50.0, None, 0.5, 0.1)
    assert timeline.record(_two_joints(t_N, np.stack([0.5 * t_N, 0 * t_N], axis=1)), 10.0, 10.0) is None
    with pytest.raises(ValueError, match=r"fastest: a at [\d.]+ s, [\d.]+ rad/s against 0\.980; the commanded path"):
        timeline.splice(_two_joints(t_N, np.stack([1.0 * t_N, 0 * t_N], axis=1)), 10.0, 10.5)
