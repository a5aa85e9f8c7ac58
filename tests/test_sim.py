"""The physics simulation (moscale_ros.sim) with real MuJoCo and the real G1 (and TALOS) models:
standing holds, an unbalanced pose falls and is reported, a fixed base tracks, the controller rules
gate what runs, self-collisions are seen, the ``sim:`` settings are schema-checked."""

from __future__ import annotations

import json

import numpy as np
import pinocchio as pin
import pytest

from moscale_common.errors import ConfigError
from moscale_ros.sim.config import sim_config
from moscale_ros.sim.model import build_model
from moscale_ros.sim.run import simulate_received, simulate_trajectory, trajectory_message
from retarget.robot import load_robot
from retarget.trajectory import RobotTrajectory

UPRIGHT = np.array([0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def g1():
    return load_robot("g1")


@pytest.fixture(scope="module")
def g1_floating(g1):
    return build_model(g1)


def hold(robot, positions_J: np.ndarray, seconds: float, base_pose_7: np.ndarray = UPRIGHT) -> RobotTrajectory:
    """A trajectory that holds one pose (every point equal, at rest)."""
    times_N = np.linspace(0.0, seconds, int(seconds * 50) + 1)
    positions_NJ = np.repeat(np.asarray(positions_J, dtype=float)[None], len(times_N), axis=0)
    return RobotTrajectory(
        joint_names=list(robot.joint_names), times=times_N, base_poses=np.repeat(base_pose_7[None], len(times_N), 0),
        positions=positions_NJ, velocities=np.zeros_like(positions_NJ), accelerations=np.zeros_like(positions_NJ),
        control_rate=50.0, report=None, final_q=np.concatenate([base_pose_7, positions_J]), robot_name=robot.name,
    )  # fmt: skip


def swing(robot, amplitude: float, seconds: float, joints: dict[str, float]) -> RobotTrajectory:
    """From the start pose, ``q_j(t) = q0_j + a_j A sin^2(pi t / T)``: at rest at both ends, peak mid-way."""
    trajectory = hold(robot, robot.q_initial[7:], seconds)
    t_N = trajectory.times
    shape_N, rate_N = np.sin(np.pi * t_N / seconds) ** 2, np.pi / seconds * np.sin(2 * np.pi * t_N / seconds)
    accel_N = 2 * (np.pi / seconds) ** 2 * np.cos(2 * np.pi * t_N / seconds)
    for name, sign in joints.items():
        j = robot.joint_names.index(name)
        trajectory.positions[:, j] += sign * amplitude * shape_N
        trajectory.velocities[:, j] = sign * amplitude * rate_N
        trajectory.accelerations[:, j] = sign * amplitude * accel_N
    trajectory.velocities[-1] = 0.0
    return trajectory


def test_holding_the_standing_pose_stays_up_for_5_s(g1, g1_floating) -> None:
    report = simulate_trajectory(g1_floating, hold(g1, g1.q_initial[7:], 5.0), settle_s=0.0)
    assert report.executed and report.simulated_s >= 5.0
    assert report.stayed_up and report.fell_at_s is None, report.format()
    assert report.min_pelvis_height_m > 0.95 * report.start_pelvis_height_m and report.max_tilt_deg < 10
    assert report.overall_tracking_rms_rad < np.radians(1.0)
    assert report.overall_peak_effort_fraction < 0.5
    assert max(report.foot_slip_m.values()) < 0.01 and report.self_collisions == 0
    assert report.real_time_factor > 1.0


def _com_and_support(robot, base_pose_7: np.ndarray, positions_J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal centre of mass and the sole corners (world) of the robot at rest on the floor."""
    data = robot.model.createData()
    q = robot.configuration(base_pose_7, positions_J)
    pin.framesForwardKinematics(robot.model, data, q)
    corners = [
        data.oMf[robot.foot_frame_ids[side]].act(c) for side in ("left", "right") for c in robot.sole_corners[side]
    ]
    return pin.centerOfMass(robot.model, robot.model.createData(), q)[:2], np.stack(corners)


def test_a_pose_with_the_centre_of_mass_far_outside_the_feet_falls(g1, g1_floating) -> None:
    # The standing pose leaning 35 degrees forward about the toes: only the toes touch the floor and
    # the centre of mass is well in front of them.
    lean = pin.Quaternion(pin.utils.rpyToMatrix(0.0, np.radians(35.0), 0.0)).coeffs()
    base = np.concatenate([UPRIGHT[:3], lean])
    com_2, corners_K3 = _com_and_support(g1, base, g1.q_initial[7:])
    assert com_2[0] > corners_K3[:, 0].max() + 0.15  # precondition: 15 cm beyond the toes
    report = simulate_trajectory(g1_floating, hold(g1, g1.q_initial[7:], 3.0, base), settle_s=0.0)
    assert report.executed and not report.stayed_up
    assert report.fell_at_s is not None and 0.0 < report.fell_at_s < 2.0
    figures = report.as_dict()
    assert figures["stayed_up"] is False and figures["fell_at_s"] == pytest.approx(report.fell_at_s)
    assert "FELL at" in report.verdict()


def test_fixed_base_run_tracks_a_trajectory(g1) -> None:
    # Tolerance: RMS under 1 degree and max under 2 degrees on every joint, for a 0.6 rad swing of
    # arms, hips and knees in 2 s (peak joint speed 0.94 rad/s).
    moving = {"left_shoulder_pitch_joint": -1, "right_shoulder_pitch_joint": -1, "left_elbow_joint": 1,
              "left_hip_pitch_joint": -1, "left_knee_joint": 1, "waist_yaw_joint": 1}  # fmt: skip
    trajectory = swing(g1, 0.6, 2.0, moving)
    sim = build_model(g1, fixed_base=True, base_pose_7=UPRIGHT)
    report = simulate_trajectory(sim, trajectory, settle_s=0.5)
    assert report.executed and report.fixed_base
    rms_J, max_J = np.degrees(report.tracking_rms_rad), np.degrees(report.tracking_max_rad)
    assert np.all(rms_J < 1.0), dict(zip(g1.joint_names, rms_J.round(2)))
    assert np.all(max_J < 2.0), dict(zip(g1.joint_names, max_J.round(2)))
    moved = [g1.joint_names.index(n) for n in moving]
    assert np.all(max_J[moved] > 0.01)  # the moving joints lag a little: the error is measured, not zero
    assert report.as_dict()["stayed_up"] is None


def test_the_simulation_follows_the_controller_not_the_file(g1) -> None:
    # Same swing, but the file's positions are what the controller commands: an actuator-less
    # comparison with a frozen robot would show the full 0.6 rad as error.
    sim = build_model(g1, fixed_base=True, base_pose_7=UPRIGHT)
    trajectory = swing(g1, 0.6, 2.0, {"left_elbow_joint": 1})
    from moscale_ros.sim.loop import ControlLoop
    from moscale_ros.sim.run import trajectory_message

    loop = ControlLoop(sim, trajectory.positions[0])
    assert loop.receive(trajectory_message(trajectory)) is None
    j = g1.joint_names.index("left_elbow_joint")
    while loop.time < 1.0:
        loop.cycle()
    assert loop.simulator.joint_positions()[j] == pytest.approx(g1.q_initial[7 + j] + 0.6, abs=0.02)


def test_a_trajectory_the_controller_rejects_is_not_executed(g1, g1_floating) -> None:
    trajectory = swing(g1, 0.3, 1.0, {"left_elbow_joint": 1})
    trajectory.velocities[-1, 3] = 0.2  # the last point still moving: rule R3
    report = simulate_trajectory(g1_floating, trajectory)
    assert not report.executed and report.simulated_s == 0.0
    assert "R3" in report.rejection and "not zero" in report.rejection
    assert report.as_dict()["executed"] is False and "rejected" in report.verdict()
    allowed = simulate_trajectory(g1_floating, trajectory, allow_nonzero_end_velocity=True)
    assert allowed.executed and allowed.simulated_s >= 1.0


def test_messages_replayed_as_received_replace_each_other_at_their_receipt_time(g1) -> None:
    # What the demo does: controller messages stamped and received on the sender's clock (here ~1000 s)
    # run from the first receipt (t = 0): a hold, replaced 0.5 s later by a 1 s elbow swing of 0.6 rad
    # stamped when sent; a message the rules reject (its last point still moves) is counted, not run.
    sim = build_model(g1, fixed_base=True, base_pose_7=UPRIGHT)
    j = g1.joint_names.index("left_elbow_joint")
    hold_msg = trajectory_message(hold(g1, g1.q_initial[7:], 2.0), stamp=1000.0)
    swing_msg = trajectory_message(swing(g1, 0.6, 1.0, {"left_elbow_joint": 1}), stamp=1000.5)
    moving = swing(g1, 0.3, 1.0, {"left_elbow_joint": 1})
    moving.velocities[-1, j] = 0.2
    bad_msg = trajectory_message(moving, stamp=1000.7)
    report = simulate_received(
        sim, [(1000.0, hold_msg), (1000.5, swing_msg), (1000.7, bad_msg)], g1.q_initial[7:], settle_s=0.5,
        record_fps=10.0,
    )  # fmt: skip
    assert report.executed and report.accepted_messages == 2
    assert len(report.rejected_messages) == 1 and "R3" in report.rejected_messages[0][1]
    assert report.rejected_messages[0][0] == pytest.approx(0.7, abs=0.02)
    assert report.trajectory_s == pytest.approx(2.0) and report.simulated_s == pytest.approx(2.5, abs=0.02)
    elbow = report.frames_qpos[:, sim.qpos_J[j]] - g1.q_initial[7 + j]
    assert abs(elbow[4]) < 0.01 and elbow[10] == pytest.approx(0.6, abs=0.05)  # at 0.4 s held; at 1.0 s swung
    assert np.degrees(report.overall_tracking_max_rad) < 2.0


def test_self_collision_is_detected(g1) -> None:
    # Left arm swung across the chest (shoulder roll inward, yaw and elbow folded): it hits the torso.
    sim = build_model(g1, fixed_base=True, base_pose_7=UPRIGHT)
    across = swing(g1, 1.4, 2.0, {"left_shoulder_roll_joint": -1, "left_shoulder_pitch_joint": -1})
    report = simulate_trajectory(sim, across, settle_s=0.0)
    assert report.self_collisions >= 1, report.format()
    assert any("left" in a or "left" in b for a, b in report.self_collision_pairs)


def test_talos_stands_with_its_yaml_gains() -> None:
    talos = load_robot("talos")
    report = simulate_trajectory(build_model(talos), hold(talos, talos.q_initial[7:], 3.0, UPRIGHT), settle_s=0.0)
    assert report.executed and report.stayed_up, report.format()


def test_sim_settings_are_schema_checked(g1) -> None:
    assert sim_config(g1.config.sim).kp == 1000.0
    with pytest.raises(ConfigError, match="unknown key.*stiffness"):
        sim_config({"stiffness": 3})
    with pytest.raises(ConfigError, match="sim.kp: expected float"):
        sim_config({"kp": "stiff"})
    with pytest.raises(ConfigError, match="sim.timestep: must be a positive number"):
        sim_config({"timestep": 0})
    with pytest.raises(ConfigError, match="controller_rate"):
        sim_config({"timestep": 0.01, "controller_rate": 500.0})
    gains = sim_config({"joint_gains": {"*_knee_*": {"kp": 3000.0, "kv": 90.0}}})
    assert gains.gains("left_knee_joint") == (3000.0, 90.0) and gains.gains("left_elbow_joint") == (1000.0, 50.0)


def test_actuators_have_the_urdf_effort_limits(g1_floating, g1) -> None:
    assert g1_floating.num_joints == g1.num_joints == 29
    np.testing.assert_allclose(g1_floating.effort_limits_J, g1.model.effortLimit[6:])
    assert g1_floating.model.nu == 29 and not g1_floating.fixed_base


def test_simulate_command_json_and_rejection(g1, tmp_path, capsys) -> None:
    from moscale_ros.cli import main

    good = swing(g1, 0.3, 1.0, {"left_elbow_joint": 1})
    good.save(tmp_path / "good.npz")
    assert main(["simulate", str(tmp_path / "good.npz"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in ("tracking_rms_rad", "tracking_max_rad", "peak_effort_fraction", "stayed_up", "fell_at_s",
                "foot_slip_m", "self_collisions", "real_time_factor", "joints"):  # fmt: skip
        assert key in figures
    assert figures["stayed_up"] is True and figures["joints"]["left_elbow_joint"]["tracking_max_rad"] > 0
    bad = swing(g1, 0.3, 1.0, {"left_elbow_joint": 1})
    bad.velocities[-1, 3] = 0.2
    bad.save(tmp_path / "bad.npz")
    assert main(["simulate", str(tmp_path / "bad.npz")]) == 1
    out = capsys.readouterr().out
    assert "rejected" in out and "R3" in out and "--allow-nonzero-end-velocity" in out
    assert main(["simulate", str(tmp_path / "bad.npz"), "--allow-nonzero-end-velocity", "--fixed-base"]) == 0
    assert main(["simulate", str(tmp_path / "missing.npz")]) == 2


def test_simulate_video_renders_the_meshes_or_falls_back_with_a_reason(g1, tmp_path, capsys) -> None:
    import os
    import subprocess
    import sys

    from PIL import Image

    from moscale_ros.cli import main

    trajectory = swing(g1, 0.5, 1.0, {"left_shoulder_pitch_joint": -1})
    trajectory.save(tmp_path / "swing.npz")
    gif = tmp_path / "sim.gif"
    assert main(["simulate", str(tmp_path / "swing.npz"), "--settle", "0", "--video", str(gif)]) == 0
    assert f"video: {gif}" in capsys.readouterr().out
    with Image.open(gif) as image:
        assert image.n_frames == 30 and image.size == (320, 360)
        first = np.asarray(image.convert("RGB"))
        image.seek(image.n_frames - 1)
        assert np.abs(np.asarray(image.convert("RGB")).astype(int) - first).sum() > 0  # the arm moved
    # No GL (MuJoCo's rendering switched off, as where no EGL library exists): one line says why,
    # and the line drawing of the commanded trajectory is written instead.
    env = {**os.environ, "MUJOCO_GL": "disable"}
    argv = [sys.executable, "-m", "moscale_ros.cli", "simulate", str(tmp_path / "swing.npz"), "--video"]
    done = subprocess.run([*argv, str(tmp_path / "fallback.gif")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "video: no offscreen OpenGL for MuJoCo (MUJOCO_GL=disable)" in done.stdout
    assert (tmp_path / "fallback.gif").stat().st_size > 10_000
