"""Run a saved robot trajectory on the simulated robot and report what physics made of it (ROS-free).

:func:`simulate_trajectory` starts the robot at rest in the trajectory's first joint pose and base
pose (feet on the floor), sends the trajectory once to the controller as a ``JointTrajectory``
stamped with the simulation start (``t = 0``), and runs the :class:`~moscale_ros.sim.loop.ControlLoop`
until the trajectory's end plus ``settle_s`` (a motion that ends off balance falls after it). A
trajectory the controller rules reject is not executed: the report says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from moscale_common.errors import InputError
from moscale_ros.control.jtc_rules import TrajectoryMessage
from moscale_ros.sim.loop import ControlLoop
from moscale_ros.sim.model import SimModel
from retarget.trajectory import RobotTrajectory


@dataclass
class SimulationReport:
    """Figures of one run (see :mod:`moscale_ros.sim.monitor` for their definitions)."""

    robot: str
    fixed_base: bool
    trajectory_s: float
    simulated_s: float = 0.0
    rejection: str | None = None  # why the controller refused the trajectory (then nothing ran)
    joint_names: list[str] = field(default_factory=list)
    tracking_rms_rad: list[float] = field(default_factory=list)
    tracking_max_rad: list[float] = field(default_factory=list)
    peak_effort_fraction: list[float] = field(default_factory=list)
    stayed_up: bool = True
    fell_at_s: float | None = None
    start_pelvis_height_m: float = 0.0
    min_pelvis_height_m: float = 0.0
    max_tilt_deg: float = 0.0
    foot_slip_m: dict[str, float] = field(default_factory=dict)
    max_foot_slip_speed: dict[str, float] = field(default_factory=dict)
    self_collisions: int = 0
    self_collision_pairs: list[list[str]] = field(default_factory=list)
    real_time_factor: float = 0.0
    wall_s: float = 0.0
    frames_qpos: np.ndarray | None = field(default=None, repr=False)  # recorded MuJoCo qpos, for video
    frames_fps: float = 0.0
    accepted_messages: int = 1  # controller messages accepted (simulate_received: several)
    rejected_messages: list[tuple[float, str]] = field(default_factory=list)  # (time, reason), later ones

    @property
    def executed(self) -> bool:
        return self.rejection is None

    @property
    def overall_tracking_rms_rad(self) -> float:
        """RMS over every joint and cycle."""
        return float(np.sqrt(np.mean(np.square(self.tracking_rms_rad)))) if self.tracking_rms_rad else 0.0

    @property
    def overall_tracking_max_rad(self) -> float:
        return float(max(self.tracking_max_rad, default=0.0))

    @property
    def overall_peak_effort_fraction(self) -> float:
        return float(max(self.peak_effort_fraction, default=0.0))

    def as_dict(self) -> dict[str, Any]:
        out = {
            "robot": self.robot, "fixed_base": self.fixed_base, "executed": self.executed,
            "rejection": self.rejection, "trajectory_s": self.trajectory_s, "simulated_s": self.simulated_s,
        }  # fmt: skip
        if not self.executed:
            return out
        j = self.joint_names
        out.update(
            stayed_up=None if self.fixed_base else self.stayed_up,
            fell_at_s=self.fell_at_s,
            start_pelvis_height_m=self.start_pelvis_height_m,
            min_pelvis_height_m=self.min_pelvis_height_m,
            max_tilt_deg=self.max_tilt_deg,
            tracking_rms_rad=self.overall_tracking_rms_rad,
            tracking_max_rad=self.overall_tracking_max_rad,
            peak_effort_fraction=self.overall_peak_effort_fraction,
            foot_slip_m=self.foot_slip_m,
            max_foot_slip_speed_mps=self.max_foot_slip_speed,
            self_collisions=self.self_collisions,
            self_collision_pairs=self.self_collision_pairs,
            accepted_messages=self.accepted_messages,
            rejected_messages=self.rejected_messages,
            real_time_factor=self.real_time_factor,
            wall_s=self.wall_s,
            joints={
                name: {"tracking_rms_rad": rms, "tracking_max_rad": mx, "peak_effort_fraction": eff}
                for name, rms, mx, eff in zip(
                    j, self.tracking_rms_rad, self.tracking_max_rad, self.peak_effort_fraction
                )
            },
        )
        return out

    def verdict(self) -> str:
        """One line: stayed up or fell, and the tracking error."""
        if not self.executed:
            return f"not executed: the controller rejected the trajectory: {self.rejection}"
        base = (
            "fixed base" if self.fixed_base else ("stayed up" if self.stayed_up else f"FELL at {self.fell_at_s:.2f} s")
        )
        return (
            f"{base}; tracking error RMS {np.degrees(self.overall_tracking_rms_rad):.2f} deg, "
            f"max {np.degrees(self.overall_tracking_max_rad):.1f} deg; peak effort "
            f"{100 * self.overall_peak_effort_fraction:.0f}% of the limit"
        )

    def format(self, worst: int = 5) -> str:
        """A readable summary: the verdict, then the worst joints and the other figures."""
        lines = [f"{self.robot} ({'fixed' if self.fixed_base else 'floating'} base): {self.verdict()}"]
        if not self.executed:
            return lines[0]
        if not self.fixed_base:
            lines.append(
                f"  pelvis height {self.start_pelvis_height_m:.3f} m at start, min {self.min_pelvis_height_m:.3f} m; "
                f"max tilt {self.max_tilt_deg:.1f} deg"
            )
            slip = ", ".join(f"{side} {100 * m:.1f} cm" for side, m in self.foot_slip_m.items())
            lines.append(f"  foot slip while in contact: {slip}")
        lines.append(f"  self-collisions: {self.self_collisions} {self.self_collision_pairs[:4]}")
        order = np.argsort(self.tracking_rms_rad)[::-1][:worst]
        lines.append("  worst tracking (RMS / max deg, peak effort):")
        for i in order:
            lines.append(
                f"    {self.joint_names[i]:<28} {np.degrees(self.tracking_rms_rad[i]):6.2f} / "
                f"{np.degrees(self.tracking_max_rad[i]):6.2f}  {100 * self.peak_effort_fraction[i]:4.0f}%"
            )
        lines.append(
            f"  simulated {self.simulated_s:.2f} s in {self.wall_s:.2f} s: real-time factor {self.real_time_factor:.1f}"
        )
        return "\n".join(lines)


def trajectory_message(trajectory: RobotTrajectory, stamp: float = 0.0) -> TrajectoryMessage:
    """The ``JointTrajectory`` the node would send for ``trajectory`` (positions, velocities, accelerations)."""
    return TrajectoryMessage(
        list(trajectory.joint_names), stamp, np.asarray(trajectory.times, dtype=np.float64),
        np.asarray(trajectory.positions), np.asarray(trajectory.velocities), np.asarray(trajectory.accelerations),
    )  # fmt: skip


def simulate_trajectory(
    sim: SimModel,
    trajectory: RobotTrajectory,
    allow_nonzero_end_velocity: bool = False,
    settle_s: float = 1.0,
    stop_on_fall: bool = False,
    record_fps: float = 0.0,
    on_cycle: Callable[[ControlLoop], None] | None = None,
) -> SimulationReport:
    """Execute ``trajectory`` on ``sim`` (module docstring). ``stop_on_fall`` ends the run 0.5 s
    after a fall; ``record_fps > 0`` keeps the MuJoCo ``qpos`` at that rate (for video)."""
    missing = sorted(set(sim.robot.joint_names) - set(trajectory.joint_names))
    report = SimulationReport(sim.robot.name, sim.fixed_base, float(trajectory.duration))
    order = [list(trajectory.joint_names).index(n) for n in sim.robot.joint_names] if not missing else None
    start_J = np.asarray(trajectory.positions[0])[order] if order is not None else sim.robot.q_initial[7:]
    loop = ControlLoop(sim, start_J, np.asarray(trajectory.base_poses[0]), allow_nonzero_end_velocity)
    reason = loop.receive(trajectory_message(trajectory, stamp=loop.time))
    if reason is not None:
        report.rejection = reason
        return report
    cycles = int(np.ceil((trajectory.duration + settle_s) / loop.simulator.cycle_s - 1e-6))
    frames, next_frame = [], 0.0
    tick = time.perf_counter()
    for _ in range(cycles):
        if record_fps > 0 and loop.time >= next_frame - 1e-9:
            frames.append(loop.simulator.data.qpos.copy())
            next_frame += 1.0 / record_fps
        loop.cycle()
        if on_cycle is not None:
            on_cycle(loop)
        fell = loop.monitor.fell_at
        if stop_on_fall and fell is not None and loop.time > fell + 0.5:
            break
    _fill(report, loop, time.perf_counter() - tick, frames, record_fps)
    return report


def simulate_received(
    sim: SimModel,
    received: Sequence[tuple[float, TrajectoryMessage]],
    initial_positions_J: np.ndarray,
    base_pose_7: np.ndarray | None = None,
    settle_s: float = 1.0,
    stop_on_fall: bool = False,
    record_fps: float = 0.0,
) -> SimulationReport:
    """Execute a stream of controller messages on ``sim`` as they arrived: ``received`` pairs each
    ``JointTrajectory`` (stamped on the sender's clock) with its receipt time on that clock.

    The robot starts at rest in ``initial_positions_J`` and ``base_pose_7`` (feet on the floor);
    simulation time 0 is the first receipt: stamps and receipt times are shifted by it, and each
    message goes to the controller at the first cycle at or after its receipt (a cycle is
    ``1 / controller_rate``), where the controller rules accept it (it replaces what runs) or reject
    it. The run lasts until the last message's end plus ``settle_s``. ``report.trajectory_s`` is that
    span less ``settle_s``; ``report.rejection`` the first rejection's reason (later messages still
    ran)."""
    events = sorted(received, key=lambda pair: pair[0])
    if not events:
        raise InputError("simulate_received: no controller messages to execute")
    t0 = events[0][0]
    shifted = [
        (at - t0, replace(message, stamp=message.stamp - t0 if message.stamp != 0.0 else 0.0)) for at, message in events
    ]
    end = max(max(at, message.end_time) for at, message in shifted)
    report = SimulationReport(sim.robot.name, sim.fixed_base, float(end))
    loop = ControlLoop(sim, np.asarray(initial_positions_J), base_pose_7)
    cycles = int(np.ceil((end + settle_s) / loop.simulator.cycle_s - 1e-6))
    frames, next_frame, k = [], 0.0, 0
    tick = time.perf_counter()
    for _ in range(cycles):
        while k < len(shifted) and shifted[k][0] <= loop.time + 1e-9:
            loop.receive(shifted[k][1], loop.time)
            k += 1
        if record_fps > 0 and loop.time >= next_frame - 1e-9:
            frames.append(loop.simulator.data.qpos.copy())
            next_frame += 1.0 / record_fps
        loop.cycle()
        fell = loop.monitor.fell_at
        if stop_on_fall and fell is not None and loop.time > fell + 0.5:
            break
    if loop.rejections and not loop.accepted:
        report.rejection = loop.rejections[0][1]
        return report
    _fill(report, loop, time.perf_counter() - tick, frames, record_fps)
    report.rejected_messages = [(round(at, 6), reason) for at, reason in loop.rejections]
    report.accepted_messages = loop.accepted
    return report


def _fill(report: SimulationReport, loop: ControlLoop, wall_s: float, frames: list, record_fps: float) -> None:
    """Copy the monitor's figures of a finished run into ``report``."""
    sim = loop.simulator.sim
    report.wall_s = wall_s
    monitor = loop.monitor
    report.simulated_s = round(loop.time, 6)  # MuJoCo adds timesteps: drift of ~1e-12 s
    report.real_time_factor = loop.time / max(report.wall_s, 1e-9)
    report.joint_names = list(sim.robot.joint_names)
    report.tracking_rms_rad = monitor.tracking_rms_J().tolist()
    report.tracking_max_rad = monitor.max_error_J.tolist()
    report.peak_effort_fraction = monitor.max_effort_fraction_J.tolist()
    report.stayed_up = monitor.stayed_up
    report.fell_at_s = monitor.fell_at
    report.start_pelvis_height_m = monitor.start_height
    report.min_pelvis_height_m = monitor.min_height if np.isfinite(monitor.min_height) else monitor.start_height
    report.max_tilt_deg = monitor.max_tilt_deg
    report.foot_slip_m = dict(monitor.slip_m)
    report.max_foot_slip_speed = dict(monitor.max_slip_speed)
    report.self_collisions = monitor.self_collisions
    report.self_collision_pairs = [list(p) for p in sorted(monitor.self_collision_pairs)]
    if frames:
        report.frames_qpos, report.frames_fps = np.asarray(frames), record_fps
