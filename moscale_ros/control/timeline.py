"""The node's side of one joint_trajectory_controller: what was sent, what is being commanded,
and where the next plan takes over (ROS-free).

Every trajectory sent is also fed to a :class:`~moscale_ros.control.jtc_rules.JointTrajectoryControllerModel`,
so "the state being commanded at time t" is computed by the same rules the controller follows.
A plan of a motion that starts at ``t_0`` takes over at the switch time

    s = max(t_0, now + switch_lead), rounded up to the motion's grid t_0 + m / rate,

and is spliced out of the commanded path at ``s`` (:func:`~moscale_ros.control.shaping.blend_from_path`),
so the controller, which interpolates from its state at receipt to the first point at ``s``,
never sees a step. A refinement ready before ``t_0`` keeps ``s = t_0``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from moscale_ros.control.jtc_rules import (
    ActiveTrajectory,
    ControllerSettings,
    JointTrajectoryControllerModel,
    TrajectoryMessage,
)
from moscale_ros.control.shaping import (
    base_poses_at,
    blend_from_path,
    ease,
    finite_difference_speed,
    within_speed_limits,
)
from retarget.trajectory import RobotTrajectory

REST_SPEED = 1e-6  # rad/s below which every joint counts as at rest
SPLINE_MARGIN = 0.02  # blends keep 2 % below the speed limits: the controller's spline between two
# points can run ~0.5 % faster than at the points (the controller model sampled at 500 Hz); near the
# commanded path's own speed, up to PATH_SLACK above it, never above the limit (blend_bound)
PATH_SLACK = 0.005


def blend_bound(
    times_N: np.ndarray, commanded_q_NJ: np.ndarray, commanded_v_NJ: np.ndarray, velocity_limits_J: np.ndarray
) -> np.ndarray:
    """Speed bound ``(N, J)`` of a blend at each point: ``(1 - SPLINE_MARGIN) * limit``, or the
    commanded path's own speed there (its velocity, or the finite difference of its positions to
    either neighbour) times ``1 + PATH_SLACK`` where that is faster, never above the limit.

    Near the switch the blend is almost the commanded path (weight ~1) plus a small pull towards the
    plan. Where that path runs at its own bound, 98 % of a limit (it was a blend too), or a little
    above it (sampled off the grid of its points: a new command's motion starts anywhere), a fixed
    margin refused every blend length: "no blend of up to 6.20 s ... left_elbow_joint at 0.14 s,
    7.840 rad/s against 7.840; the commanded path there 7.839 rad/s" (`moscale bench node`,
    2026-11-30). The slack keeps such a blend within ~98.5 % of the limit at its points."""
    speed_NJ = np.abs(commanded_v_NJ)
    if len(times_N) > 1:
        implied_MJ = np.abs(np.diff(commanded_q_NJ, axis=0)) / np.diff(times_N)[:, None]
        speed_NJ = np.maximum(speed_NJ, np.vstack([implied_MJ[:1], implied_MJ]))
        speed_NJ = np.maximum(speed_NJ, np.vstack([implied_MJ, implied_MJ[-1:]]))
    bound_NJ = np.maximum((1 - SPLINE_MARGIN) * velocity_limits_J, (1 + PATH_SLACK) * speed_NJ)
    return np.minimum(velocity_limits_J, bound_NJ)


class NoBlendError(ValueError):
    """No blend from the commanded path into a plan, up to the plan's whole remaining length, keeps
    the joint speed limits (the plan is too far from the commanded path for the time left)."""


def as_message(trajectory: RobotTrajectory, stamp: float) -> TrajectoryMessage:
    """The controller's view of ``trajectory`` sent with ``header.stamp = stamp``."""
    return TrajectoryMessage(
        list(trajectory.joint_names), float(stamp), np.asarray(trajectory.times, dtype=np.float64),
        np.asarray(trajectory.positions), np.asarray(trajectory.velocities), np.asarray(trajectory.accelerations),
    )  # fmt: skip


class ControllerTimeline:
    """What one controller was sent and commands; splices plans in (module docstring)."""

    def __init__(
        self,
        joint_names: list[str],
        velocity_limits_J: np.ndarray,
        control_rate: float,
        position_limits: tuple[np.ndarray, np.ndarray] | None = None,
        blend_s: float = 0.5,
        switch_lead: float = 0.1,
    ) -> None:
        self.settings = ControllerSettings(list(joint_names), update_rate=control_rate)
        self.velocity_limits_J = np.asarray(velocity_limits_J, dtype=np.float64)
        self.position_limits = position_limits  # (lower_J, upper_J), or None: not checked here
        self.control_rate = control_rate
        self.blend_s = blend_s
        self.switch_lead = switch_lead
        self.model: JointTrajectoryControllerModel | None = None
        self._base: tuple[float, RobotTrajectory] | None = None  # last sent: start time, trajectory

    # ------------------------------------------------------------------------------ the commanded path

    @property
    def end_time(self) -> float | None:
        """When the last trajectory sent ends (``None`` before the first)."""
        if self.model is None:
            return None
        message = self.model.pending or (self.model.active.message if self.model.active else None)
        return message.end_time if message is not None else self.model.state.time

    def commanded(self, times_N: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Commanded positions, velocities, accelerations ``(N, J)`` at absolute ``times_N`` (sorted, from now on)."""
        assert self.model is not None
        path = self.model.commanded_path(times_N)
        return path.positions_J, path.velocities_J, path.accelerations_J

    def at_rest(self, t: float) -> bool:
        """Whether nothing moves at ``t`` (true before anything was sent)."""
        if self.model is None:
            return True
        return bool(np.all(np.abs(self.model.commanded_at(t).velocities_J) <= REST_SPEED))

    def _commanded_base(self, times_N: np.ndarray) -> np.ndarray | None:
        if self._base is None:
            return None
        start, trajectory = self._base
        return base_poses_at(np.asarray(trajectory.times), np.asarray(trajectory.base_poses), times_N - start)

    # ---------------------------------------------------------------------------------- new plans

    def switch_time(self, motion_start: float, now: float) -> float:
        """``max(t_0, now + switch_lead)`` rounded up to the grid ``t_0 + m / rate``."""
        earliest = now + self.switch_lead
        if earliest <= motion_start:
            return motion_start
        steps = math.ceil((earliest - motion_start) * self.control_rate - 1e-9)
        return motion_start + steps / self.control_rate

    def splice(self, motion: RobotTrajectory, motion_start: float, switch: float) -> RobotTrajectory | None:
        """The part of ``motion`` (times from ``motion_start``, at rest at its end) from ``switch`` on,
        blended out of the commanded path; times count from ``switch``. ``None`` when the motion has
        ended by then. Raises NoBlendError if no blend up to the rest of the motion keeps the speed limits."""
        offset = int(round((switch - motion_start) * self.control_rate))
        if offset >= len(motion.times) - 1:
            return None
        times_N = np.asarray(motion.times[offset:], dtype=np.float64) - float(motion.times[offset])
        part = replace(
            motion, times=times_N, positions=motion.positions[offset:], velocities=motion.velocities[offset:],
            accelerations=motion.accelerations[offset:], base_poses=motion.base_poses[offset:],
        )  # fmt: skip
        if self.model is None:
            return part
        q_NJ, v_NJ, a_NJ = self.commanded(switch + times_N)
        if self.position_limits is not None:  # the controller's spline between two points at a limit
            q_NJ = np.clip(q_NJ, *self.position_limits)  # can pass it by ~1e-4 rad: blend from inside
        base_N7 = self._commanded_base(switch + times_N)
        blend_s = min(max(self.blend_s, 2.0 / self.control_rate), part.duration)
        bound_NJ = blend_bound(times_N, q_NJ, v_NJ, self.velocity_limits_J)
        while True:
            blended = blend_from_path(part, q_NJ, v_NJ, a_NJ, base_N7, blend_s)
            if within_speed_limits(blended, bound_NJ):
                return blended
            if blend_s >= part.duration:
                raise NoBlendError(
                    f"no blend of up to {part.duration:.2f} s from the commanded motion keeps the joint speed limits "
                    f"({self._fastest(blended, bound_NJ, v_NJ)})"
                )
            blend_s = min(1.5 * blend_s, part.duration)

    def _fastest(self, blended: RobotTrajectory, bound_NJ: np.ndarray, commanded_v_NJ: np.ndarray) -> str:
        """Where a blend is fastest against the limits, and how fast the commanded path and the plan are
        there (for the error of a splice that cannot keep them)."""
        implied_NJ = np.vstack([finite_difference_speed(blended), np.zeros((1, bound_NJ.shape[1]))])
        speed_NJ = np.maximum(np.abs(blended.velocities), implied_NJ)
        i, j = np.unravel_index(np.argmax(speed_NJ / bound_NJ), speed_NJ.shape)
        return (
            f"fastest: {self.settings.joints[j]} at {blended.times[i]:.2f} s, {speed_NJ[i, j]:.3f} rad/s "
            f"against {bound_NJ[i, j]:.3f}; the commanded path there {abs(commanded_v_NJ[i, j]):.3f} rad/s"
        )

    def take_over(
        self, motion: RobotTrajectory, motion_start: float, now: float
    ) -> tuple[RobotTrajectory, float, float] | None:
        """``motion`` (times from ``motion_start``) as sent at ``now``: :meth:`splice` at
        :meth:`switch_time` with its :meth:`lead_in`. Returns ``(trajectory, stamp, switch)``, or
        ``None`` when the motion is over by then; raises NoBlendError (see :meth:`splice`)."""
        switch = self.switch_time(motion_start, now)
        spliced = self.splice(motion, motion_start, switch)
        if spliced is None:
            return None
        trajectory, stamp = self.lead_in(spliced, switch, now)
        return trajectory, stamp, switch

    def lead_in(self, trajectory: RobotTrajectory, switch: float, now: float) -> tuple[RobotTrajectory, float]:
        """``trajectory`` (from ``switch``) preceded by the commanded path on its grid from the last
        grid time at or before ``now``: the stamp is already past when the message arrives, so the
        controller samples it at "now", on the path it is following, instead of interpolating from
        its state at receipt to a first point in the future (a quintic over the lead that can be
        far faster than the path). Returns the trajectory and its stamp. Nothing is prepended
        before the first trajectory sent (the controller's state is not known then)."""
        if self.model is None or switch <= now:
            return trajectory, switch
        dt = 1.0 / self.control_rate
        steps = math.ceil((switch - now) / dt - 1e-9)
        times_K = switch - dt * np.arange(steps, 0, -1)
        q_KJ, v_KJ, a_KJ = self.commanded(times_K)
        if self.position_limits is not None:
            q_KJ = np.clip(q_KJ, *self.position_limits)
        base_K7 = self._commanded_base(times_K)
        if base_K7 is None:
            base_K7 = np.repeat(trajectory.base_poses[:1], steps, axis=0)
        offset_K = times_K - times_K[0]
        lead = replace(
            trajectory,
            times=np.concatenate([offset_K, trajectory.times + steps * dt]),
            positions=np.concatenate([q_KJ, trajectory.positions]),
            velocities=np.concatenate([v_KJ, trajectory.velocities]),
            accelerations=np.concatenate([a_KJ, trajectory.accelerations]),
            base_poses=np.concatenate([base_K7, trajectory.base_poses]),
        )
        return lead, float(times_K[0])

    def predicted_step(self, trajectory: RobotTrajectory, switch: float, now: float) -> tuple[float, float]:
        """How far the command moves in the first control cycle after ``trajectory`` (stamped
        ``switch``) is received at ``now``, by the controller's rules: the largest joint move in rad,
        and the largest over what the joint's velocity limit allows in one cycle (<= 1: smooth)."""
        if self.model is None:
            return 0.0, 0.0
        before = self.model.commanded_at(now)
        taking_over = ActiveTrajectory(as_message(trajectory, switch), before)
        after = taking_over.sample(now + 1.0 / self.control_rate)
        step_J = np.abs(after.positions_J - before.positions_J)
        return float(step_J.max()), float(np.max(step_J * self.control_rate / self.velocity_limits_J))

    def hold(self, positions_J: np.ndarray, now: float) -> None:
        """Forget what was sent: from ``now`` the controller holds ``positions_J`` at rest (the robot's
        measured pose), so the next plan is blended out of that pose and its first point is that pose."""
        self.model = JointTrajectoryControllerModel(self.settings, np.asarray(positions_J, dtype=np.float64), now)
        self._base = None

    def record(self, trajectory: RobotTrajectory, switch: float, now: float) -> str | None:
        """``trajectory`` (stamped ``switch``) was sent at ``now``: the controller model receives it.
        Returns the controller's rejection reason, if any (nothing is recorded then)."""
        message = as_message(trajectory, switch)
        if self.model is None:
            self.model = JointTrajectoryControllerModel(self.settings, trajectory.positions[0], now)
        elif self.model.pending is not None:  # the one sent before was taken on receipt
            self.model.update(self.model.pending_at)
        reason = self.model.receive(message, now)
        if reason is None:
            self._base = (switch, trajectory)
        return reason

    def stop_trajectory(self, now: float, stop_s: float) -> tuple[RobotTrajectory, float] | None:
        """From the state commanded at ``s = now + switch_lead``, slow down along the commanded path to
        rest over ``stop_s`` seconds (the ease out of :mod:`~moscale_ros.control.shaping`), with its
        :meth:`lead_in`; ``None`` when nothing moves from then on. Returns the trajectory and its stamp."""
        if self.model is None or self._base is None:
            return None
        switch = now + self.switch_lead
        end = self.end_time or switch
        if end <= switch and self.at_rest(switch):
            return None
        return self.lead_in(self._stopping(switch, stop_s), switch, now)

    def _stopping(self, switch: float, stop_s: float) -> RobotTrajectory:
        """The commanded path from ``switch`` played to rest over ``stop_s`` seconds."""
        dt = 1.0 / self.control_rate
        times_N = np.arange(max(int(math.ceil(0.5 * stop_s / dt)), 1) + 1) * dt
        q_NJ, v_NJ, a_NJ = self.commanded(switch + times_N)
        _, template = self._base
        path = replace(
            template, times=times_N, positions=q_NJ, velocities=v_NJ, accelerations=a_NJ,
            base_poses=self._commanded_base(switch + times_N), report=None,
        )  # fmt: skip
        stopping = ease(path, 0.0, stop_s)
        final_q = np.array(template.final_q, dtype=np.float64, copy=True)
        final_q[-q_NJ.shape[1] :] = stopping.positions[-1]
        return replace(stopping, final_q=final_q)
