"""Request validation, trajectory validation and the commanded motion of the pipeline (no ROS).

Trajectories here are built for the real Unitree G1 model (example-robot-data) from its own start
pose and limits; the end-to-end pipeline with the real generator is in test_pipeline_stream.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moscale_common.errors import ConfigError, InputError
from moscale_ros.control.shaping import ease
from moscale_ros.pipeline import (
    CommandedMotion,
    PipelineConfig,
    TrajectoryError,
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
    motion = RobotTrajectory(
        joint_names=list(robot.joint_names), times=times, base_poses=base, positions=positions,
        velocities=velocities, accelerations=accelerations, control_rate=rate, report=None,
        final_q=np.concatenate([base[-1], positions[-1]]), robot_name=robot.name,
    )  # fmt: skip
    return ease(motion, 0.5, 0.5)  # at rest at both ends, as every trajectory the node sends


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
    with pytest.raises(ConfigError, match="late_guard 0.1 must be below switch_lead 0.1"):
        PipelineConfig(late_guard=0.1, switch_lead=0.1)  # every plan would be spliced twice


# --------------------------------------------------------------------------------- trajectories


def test_valid_trajectory_passes(g1):
    validate_trajectory(sway(g1), g1)


def test_a_trajectory_ending_in_motion_is_refused(g1):
    moving = _set(sway(g1), "velocities", (-1, 4), 1e-3)
    with pytest.raises(TrajectoryError, match="last point is not at rest"):
        validate_trajectory(moving, g1)


def test_positions_that_imply_speeds_over_the_limit_are_refused(g1):
    """Chatter: positions zig-zag by 1.2 x what the limit allows per step, while the velocity
    field says the joint barely moves. Only the finite differences see it."""
    motion = sway(g1)
    elbow = g1.joint_names.index("left_elbow_joint")
    zigzag = motion.positions.copy()
    zigzag[40:60:2, elbow] += 1.2 * g1.velocity_limits[elbow] / motion.control_rate
    chatter = dataclasses.replace(motion, positions=zigzag)
    assert np.all(np.abs(chatter.velocities) <= g1.velocity_limits)
    with pytest.raises(TrajectoryError, match="left_elbow_joint moves .*finite difference"):
        validate_trajectory(chatter, g1)


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


def test_commanded_motion_samples_on_the_absolute_clock(g1):
    motion = sway(g1)
    assert motion.duration == pytest.approx(2.5)  # 2 s of sway, eased at both ends
    human = np.random.default_rng(0).normal(size=(41, 22, 3)).astype(np.float32)
    commanded = CommandedMotion(start_time=100.0, trajectory=motion, human_joints_T223=human, human_fps=20.0)
    assert commanded.end_time == pytest.approx(102.5)
    np.testing.assert_allclose(commanded.pose_at(99.0), motion.positions[0])
    np.testing.assert_allclose(commanded.pose_at(100.5), motion.positions[25], atol=1e-9)
    np.testing.assert_allclose(commanded.pose_at(150.0), motion.positions[-1])
    prefix = commanded.human_prefix(101.0, 0.5)
    assert prefix.shape == (10, 22, 3)
    np.testing.assert_array_equal(prefix[-1], human[20])
    assert commanded.human_prefix(90.0, 1.0).shape == (1, 22, 3)
