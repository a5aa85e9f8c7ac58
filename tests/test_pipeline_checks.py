"""Request validation, trajectory validation and the continuation blend of the pipeline (no ROS).

Trajectories here are built for the real Unitree G1 model (example-robot-data) from its own start
pose and limits; the end-to-end pipeline with the real generator is in test_pipeline_stream.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moscale_common.errors import ConfigError, InputError
from moscale_ros.pipeline import (
    CommandedMotion,
    PipelineConfig,
    TrajectoryError,
    blend_from_pose,
    blend_within_limits,
    validate_request,
    validate_trajectory,
)
from retarget.robot import load_robot
from retarget.trajectory import RobotTrajectory


@pytest.fixture(scope="module")
def g1():
    return load_robot("g1")


def sway(robot, seconds: float = 2.0, rate: float = 50.0, amplitude: float = 0.3) -> RobotTrajectory:
    """A smooth in-limit motion: every joint sways around the middle of its range, ``q = m + a r sin(wt)``."""
    times = np.arange(int(seconds * rate) + 1) / rate
    middle, half = (robot.lower + robot.upper) / 2, (robot.upper - robot.lower) / 2
    omega = 2 * np.pi * 0.5
    phase = np.sin(omega * times)[:, None]
    positions = middle + amplitude * half * phase
    velocities = amplitude * half * omega * np.cos(omega * times)[:, None]
    accelerations = -amplitude * half * omega**2 * phase
    base = np.tile([0.0, 0.0, 0.75, 0.0, 0.0, 0.0, 1.0], (len(times), 1))
    return RobotTrajectory(
        joint_names=list(robot.joint_names), times=times, base_poses=base, positions=positions,
        velocities=velocities, accelerations=accelerations, control_rate=rate, report=None,
        final_q=np.concatenate([base[-1], positions[-1]]), robot_name=robot.name,
    )  # fmt: skip


# ------------------------------------------------------------------------------------- requests


def test_validate_request_accepts_and_normalises():
    config = PipelineConfig()
    request = validate_request("  wave the right hand \n", 0.0, -1, config, received_at=12.5, request_id="r1")
    assert request.text == "wave the right hand"
    assert request.duration == config.default_duration
    assert request.seed is None
    assert (request.received_at, request.request_id) == (12.5, "r1")
    assert validate_request("bow", 3.0, 7, config, 0.0).seed == 7


@pytest.mark.parametrize(
    ("text", "duration", "needle"),
    [
        ("", 0.0, "empty"),
        ("   \t\n", 0.0, "empty"),
        ("x" * 201, 0.0, "201 characters"),
        ("walk", -1.0, "-1.0"),
        ("walk", float("nan"), "nan"),
        ("walk", float("inf"), "inf"),
        ("walk", 0.2, "0.2 s is outside"),
        ("walk", 60.0, "60 s is outside"),
    ],
)
def test_validate_request_rejects_bad_input_with_a_clear_message(text, duration, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        validate_request(text, duration, -1, PipelineConfig(), 0.0)


def test_pipeline_config_rejects_inconsistent_values():
    with pytest.raises(ConfigError, match="default_duration 12"):
        PipelineConfig(default_duration=12.0)
    with pytest.raises(ConfigError, match="device"):
        PipelineConfig(device="tpu")
    with pytest.raises(ConfigError, match="start_lead"):
        PipelineConfig(start_lead=-0.1)


# --------------------------------------------------------------------------------- trajectories


def test_valid_trajectory_passes(g1):
    validate_trajectory(sway(g1), g1)


@pytest.mark.parametrize(
    ("spoil", "needle"),
    [
        (lambda t, r: dataclasses.replace(t, joint_names=t.joint_names[::-1]), "joint names do not match"),
        (lambda t, r: dataclasses.replace(t, joint_names=["nope", *t.joint_names[1:]]), "unknown \\['nope'\\]"),
        (lambda t, r: _set(t, "times", 3, t.times[2]), "increase strictly: point 3"),
        (lambda t, r: _set(t, "times", 5, t.times[4] + 1e-10), "increase strictly: point 5"),
        (lambda t, r: dataclasses.replace(t, times=t.times + 0.1), "start at 0"),
        (lambda t, r: _set(t, "positions", (7, 2), np.nan), r"positions has a non-finite value at index \(7, 2\)"),
        (lambda t, r: _set(t, "velocities", (1, 1), np.inf), "velocities has a non-finite"),
        (lambda t, r: _set(t, "positions", (9, 3), r.upper[3] + 0.01), "joint {r.joint_names[3]} at 0.180 s"),
        (lambda t, r: _set(t, "velocities", (4, 0), 1.5 * r.velocity_limits[0]), "over its limit"),
        (lambda t, r: dataclasses.replace(t, positions=t.positions[:, :5]), "shape"),
        (lambda t, r: dataclasses.replace(t, times=t.times[:1], positions=t.positions[:1],
                                          velocities=t.velocities[:1], accelerations=t.accelerations[:1]),
         "1 point"),
    ],
)  # fmt: skip
def test_invalid_trajectories_are_rejected_naming_the_problem(g1, spoil, needle):
    bad = spoil(sway(g1), g1)
    with pytest.raises(TrajectoryError, match=needle.format(r=g1)):
        validate_trajectory(bad, g1)


def _set(trajectory: RobotTrajectory, field: str, index, value) -> RobotTrajectory:
    values = np.array(getattr(trajectory, field), dtype=np.float64, copy=True)
    values[index] = value
    return dataclasses.replace(trajectory, **{field: values})


# ---------------------------------------------------------------------------------------- blend


def test_blend_starts_at_the_given_pose_and_ends_on_the_new_motion(g1):
    motion = sway(g1)
    q0 = g1.q_initial[7:]
    blended = blend_from_pose(motion, q0, 0.5)
    np.testing.assert_allclose(blended.positions[0], q0, atol=1e-12)
    np.testing.assert_allclose(blended.velocities[0], 0.0, atol=1e-12)  # w'(0) = 0 and 1 - w(0) = 0
    after = motion.times >= 0.5
    np.testing.assert_allclose(blended.positions[after], motion.positions[after])
    np.testing.assert_allclose(blended.velocities[after], motion.velocities[after])
    np.testing.assert_allclose(blended.final_q[7:], blended.positions[-1])
    # Convex combination of two in-limit poses: inside the limits everywhere.
    assert np.all(blended.positions >= g1.lower - 1e-12) and np.all(blended.positions <= g1.upper + 1e-12)
    # Published velocities and accelerations are the derivatives of the published positions
    # (checked by central differences on a 1 kHz grid, where their error is ~1e-4).
    fine = sway(g1, rate=1000.0)
    fine_blend = blend_from_pose(fine, q0, 0.5)
    dt = 1e-3
    velocity_fd = np.gradient(fine_blend.positions, dt, axis=0)
    acceleration_fd = np.gradient(fine_blend.velocities, dt, axis=0)
    np.testing.assert_allclose(velocity_fd[1:-1], fine_blend.velocities[1:-1], atol=1e-3)
    np.testing.assert_allclose(acceleration_fd[1:-1], fine_blend.accelerations[1:-1], atol=0.5)  # jerk jumps at T


def test_blend_lengthens_until_speeds_respect_the_limits(g1):
    motion = sway(g1, seconds=4.0)
    far = np.where(motion.positions[0] > (g1.lower + g1.upper) / 2, g1.lower, g1.upper) * 0.95
    short = blend_from_pose(motion, far, 0.05)
    assert np.any(np.abs(short.velocities) > g1.velocity_limits), "the test needs a gap too big for 50 ms"
    safe = blend_within_limits(motion, far, 0.05, g1.velocity_limits)
    np.testing.assert_allclose(safe.positions[0], far)
    validate_trajectory(safe, g1)


def test_blend_onto_a_motion_already_at_its_speed_limits_holds_them(g1):
    """A new motion that itself runs at the joint speed limits leaves no room for a cross-fade: the
    blended trajectory is slowed to the limits (and still starts exactly at the given pose)."""
    rate, omega = 50.0, 2 * np.pi * 0.5
    times = np.arange(int(3.0 * rate) + 1) / rate
    middle, half = (g1.lower + g1.upper) / 2, (g1.upper - g1.lower) / 2
    amplitude = np.minimum(0.9 * half, 0.999 * g1.velocity_limits / omega)  # peak speed at the limit
    positions = middle + amplitude * np.sin(omega * times)[:, None]
    velocities = amplitude * omega * np.cos(omega * times)[:, None]
    fast = dataclasses.replace(
        sway(g1, seconds=3.0), positions=positions, velocities=velocities,
        accelerations=-amplitude * omega**2 * np.sin(omega * times)[:, None],
    )  # fmt: skip
    validate_trajectory(fast, g1)
    far = np.where(positions[0] > middle, g1.lower, g1.upper) * 0.9
    assert np.any(np.abs(blend_from_pose(fast, far, 2.0).velocities) > g1.velocity_limits)
    held = blend_within_limits(fast, far, 0.5, g1.velocity_limits)
    np.testing.assert_allclose(held.positions[0], far)
    validate_trajectory(held, g1)
    assert np.all(np.abs(np.diff(held.positions, axis=0)) <= g1.velocity_limits / rate + 1e-12)


def test_commanded_motion_samples_on_the_absolute_clock(g1):
    motion = sway(g1)
    human = np.random.default_rng(0).normal(size=(41, 22, 3)).astype(np.float32)
    commanded = CommandedMotion(start_time=100.0, trajectory=motion, human_joints_T223=human, human_fps=20.0)
    assert commanded.end_time == pytest.approx(102.0)
    np.testing.assert_allclose(commanded.pose_at(99.0), motion.positions[0])
    np.testing.assert_allclose(commanded.pose_at(100.5), motion.positions[25], atol=1e-9)
    np.testing.assert_allclose(commanded.pose_at(150.0), motion.positions[-1])
    prefix = commanded.human_prefix(101.0, 0.5)
    assert prefix.shape == (10, 22, 3)
    np.testing.assert_array_equal(prefix[-1], human[20])
    assert commanded.human_prefix(90.0, 1.0).shape == (1, 22, 3)
