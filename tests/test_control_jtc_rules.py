"""The controller model against the joint_trajectory_controller's documented behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from moscale_ros.control.jtc_rules import (
    ControllerSettings,
    JointTrajectoryControllerModel,
    TrajectoryMessage,
    rejection_reason,
    replay,
)

JOINTS = ["a", "b"]
SETTINGS = ControllerSettings(JOINTS, update_rate=100.0)


def ramp(stamp: float, q0: float = 0.0, q1: float = 1.0, end_velocity: float = 0.0) -> TrajectoryMessage:
    """Two joints moving from ``q0`` to ``q1`` over 1 s in 11 points (quintic, at rest at both ends)."""
    t_N = np.linspace(0.0, 1.0, 11)
    u = t_N
    s = u**3 * (10 - 15 * u + 6 * u**2)
    ds = 30 * u**2 * (1 - u) ** 2
    dds = 60 * u * (1 - u) * (1 - 2 * u)
    q_N2 = np.stack([q0 + (q1 - q0) * s, q0 - (q1 - q0) * s], axis=1)
    v_N2 = np.stack([(q1 - q0) * ds, -(q1 - q0) * ds], axis=1)
    v_N2[-1] += end_velocity
    a_N2 = np.stack([(q1 - q0) * dds, -(q1 - q0) * dds], axis=1)
    return TrajectoryMessage(JOINTS, stamp, t_N, q_N2, v_N2, a_N2)


def test_nonzero_end_velocity_is_rejected_unless_allowed() -> None:
    message = ramp(10.0, end_velocity=1e-3)
    assert "not zero" in rejection_reason(message, SETTINGS, now=9.0)
    allowed = ControllerSettings(JOINTS, allow_nonzero_velocity_at_trajectory_end=True)
    assert rejection_reason(message, allowed, now=9.0) is None
    assert rejection_reason(ramp(10.0, end_velocity=1e-8), SETTINGS, now=9.0) is None  # below FLT_EPSILON


def test_joint_set_must_match_and_order_is_free() -> None:
    m = ramp(10.0)
    partial = TrajectoryMessage(["a"], 10.0, m.times_N, m.positions_NJ[:, :1], m.velocities_NJ[:, :1])
    assert "missing" in rejection_reason(partial, SETTINGS, now=9.0)
    foreign = TrajectoryMessage(["a", "c"], 10.0, m.times_N, m.positions_NJ, m.velocities_NJ)
    assert "'c'" in rejection_reason(foreign, SETTINGS, now=9.0)
    swapped = TrajectoryMessage(["b", "a"], 10.0, m.times_N, m.positions_NJ[:, ::-1], m.velocities_NJ[:, ::-1])
    controller = JointTrajectoryControllerModel(SETTINGS, np.zeros(2), 9.0)
    assert controller.receive(swapped, 9.0) is None
    assert controller.update(12.0).positions_J == pytest.approx([1.0, -1.0])  # sorted back to a, b


def test_times_must_increase_and_trajectories_ending_in_the_past_are_rejected() -> None:
    m = ramp(10.0)
    times = m.times_N.copy()
    times[3] = times[2]
    bad = TrajectoryMessage(JOINTS, 10.0, times, m.positions_NJ, m.velocities_NJ, m.accelerations_NJ)
    assert "strictly" in rejection_reason(bad, SETTINGS, now=9.0)
    assert "past" in rejection_reason(m, SETTINGS, now=11.5)
    assert rejection_reason(ramp(0.0), SETTINGS, now=11.5) is None  # stamp 0: "now", never in the past
    nan = m.positions_NJ.copy()
    nan[4, 1] = np.nan
    assert "non-finite" in rejection_reason(TrajectoryMessage(JOINTS, 10.0, m.times_N, nan), SETTINGS, now=9.0)


def test_a_future_start_is_interpolated_from_the_state_at_receipt() -> None:
    controller = JointTrajectoryControllerModel(SETTINGS, np.array([0.5, 0.5]), 9.0)
    assert controller.receive(ramp(10.0), 9.0) is None
    first = controller.update(9.0)
    assert first.positions_J == pytest.approx([0.5, 0.5])  # no jump at receipt
    halfway = controller.update(9.5)
    assert 0.0 < halfway.positions_J[0] < 0.5  # on its way to the first point
    assert controller.update(10.0).positions_J == pytest.approx([0.0, 0.0])  # at the first point on time
    assert controller.update(10.5).positions_J == pytest.approx([0.5, -0.5])


def test_a_past_start_is_sampled_at_now_so_the_command_jumps() -> None:
    received = [(10.0, ramp(10.0)), (10.5, ramp(9.8, q0=2.0, q1=3.0))]
    result = replay(received, SETTINGS, np.zeros(2), until=11.0)
    assert result.rejections == []
    assert len(result.replacements) == 2
    jump = result.replacements[1]
    # At 10.5 the first motion commands 0.5; the second, started 0.7 s earlier, commands 2 + s(0.7)
    expected = 2.0 + 0.7**3 * (10 - 15 * 0.7 + 6 * 0.7**2)
    assert jump.step_J[0] == pytest.approx(expected - 0.5, abs=0.02)
    assert result.max_step_fraction(np.array([5.0, 5.0])) > 10  # far more than one cycle allows


def test_stamp_zero_starts_at_the_first_update_and_quintic_segments_are_exact() -> None:
    controller = JointTrajectoryControllerModel(SETTINGS, np.zeros(2), 0.0)
    assert controller.receive(ramp(0.0), 3.0) is None
    controller.update(3.0)
    state = controller.update(3.37)
    u = 0.37
    assert state.positions_J[0] == pytest.approx(u**3 * (10 - 15 * u + 6 * u**2), abs=1e-9)
    assert state.velocities_J[0] == pytest.approx(30 * u**2 * (1 - u) ** 2, abs=1e-9)
    after = controller.update(5.0)  # past the end: the last point is held
    assert after.positions_J == pytest.approx([1.0, -1.0]) and after.velocities_J == pytest.approx([0.0, 0.0])


def test_a_rejected_message_changes_nothing() -> None:
    received = [(10.0, ramp(10.0)), (10.5, ramp(10.6, q0=0.5, q1=2.0, end_velocity=0.1))]
    result = replay(received, SETTINGS, np.zeros(2), until=11.2)
    assert len(result.rejections) == 1 and "not zero" in result.rejections[0][1]
    assert result.positions_TJ[-1] == pytest.approx([1.0, -1.0])
    assert result.max_speed_fraction(np.array([2.0, 2.0])) < 1.0  # the first ramp peaks at 1.875 rad/s
