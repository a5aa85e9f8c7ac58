"""A model of ros2_controllers' ``joint_trajectory_controller`` (JTC), Jazzy and Kilted: what it
accepts, how it replaces its trajectory, and what it commands at each control cycle.

**Stand-in.** The real controller is C++ (rclcpp, controller_interface) and cannot be installed
here; this module restates its rules so the node's output can be judged as a robot receives it
(tests, ``moscale bench node``, the simulator). Every rule cites the controller's source, by file,
function and the log message it prints (grep-able in both distributions; line numbers drift
between releases), in ``ros-controls/ros2_controllers/joint_trajectory_controller``:

Acceptance, ``src/joint_trajectory_controller.cpp``, ``validate_trajectory_msg()``:

* R1 an empty message is rejected ("Empty joint names on incoming trajectory." / "Empty trajectory
  received.");
* R2 every joint must be one of the controller's ``joints``; with ``allow_partial_joints_goal:
  false`` (the default, ``src/joint_trajectory_controller_parameters.yaml``) the set must be exactly
  the controller's ("Joints on incoming trajectory don't match the controller joints.");
* R3 with ``allow_nonzero_velocity_at_trajectory_end: false`` (the default on Jazzy and Kilted,
  same YAML: "If false, the last velocity point has to be zero or the goal will be rejected") every
  last-point velocity must satisfy ``|v| <= FLT_EPSILON`` ("Velocity of last trajectory point of
  joint %s is not zero");
* R4 a non-zero ``header.stamp`` whose end ``stamp + points[-1].time_from_start`` is before now is
  rejected ("Received trajectory with non-zero start time (%f) that ends in the past (%f)");
* R5 ``time_from_start`` must increase strictly ("Time between points %zu and %zu is not strictly
  increasing"); R6 each point's ``positions`` has one value per joint, ``velocities`` and
  ``accelerations`` one per joint or none (``validate_trajectory_point_field()``). The C++ does
  not test for NaN; a NaN is rejected here too, as a robot must never receive one.

Replacement, same file, ``topic_callback()`` -> ``add_new_trajectory_msg()`` and ``update()``: an
accepted message replaces the whole trajectory ("always replace old msg with new one for now");
nothing is spliced (``doc/trajectory.rst``). On the first ``update()`` after receipt the controller
records the state before the message, ``set_point_before_trajectory_msg(time, state)``: the last
commanded state with ``open_loop_control``, else the measured one; this model assumes perfect
tracking, so both are the last commanded state.

Sampling, ``src/trajectory.cpp``, ``Trajectory::sample()``:

* S1 a zero ``header.stamp`` means "start at the first sample" (``trajectory_start_time_ = sample_time``);
* S2 before the first point's time, the state is interpolated from the state before the message
  (at ``time_before_traj_msg_``) to the first point: a future start is reached smoothly;
* S3 between points ``i`` and ``i + 1`` (``t_i <= t < t_{i+1}``) it interpolates them; a start
  already past is therefore sampled at the current time, mid-trajectory;
* S4 after the last point it holds the last point;
* S5 ``interpolate_between_points()``: with positions only, linear; with velocities, the cubic
  Hermite; with velocities and accelerations, the quintic matching ``q, q', q''`` at both ends
  (the ``splines`` interpolation method, the default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

FLT_EPSILON = float(np.finfo(np.float32).eps)  # std::numeric_limits<float>::epsilon(), rule R3


@dataclass(frozen=True)
class TrajectoryMessage:
    """A ``trajectory_msgs/JointTrajectory`` as the controller reads it; times in seconds.

    ``stamp`` is ``header.stamp`` (0: start on receipt); ``times_N`` the points' ``time_from_start``;
    ``velocities_NJ`` / ``accelerations_NJ`` may be ``None`` (empty fields)."""

    joint_names: Sequence[str]
    stamp: float
    times_N: np.ndarray  # noqa: N815
    positions_NJ: np.ndarray  # noqa: N815
    velocities_NJ: np.ndarray | None = None  # noqa: N815
    accelerations_NJ: np.ndarray | None = None  # noqa: N815

    @property
    def end_time(self) -> float:
        return self.stamp + float(self.times_N[-1])


@dataclass(frozen=True)
class ControllerSettings:
    """The JTC parameters that decide acceptance, with their Jazzy/Kilted defaults."""

    joints: Sequence[str]
    allow_partial_joints_goal: bool = False
    allow_nonzero_velocity_at_trajectory_end: bool = False
    update_rate: float = 50.0  # Hz of the controller manager's update loop


def rejection_reason(message: TrajectoryMessage, settings: ControllerSettings, now: float) -> str | None:
    """Why the controller refuses ``message`` received at ``now`` (rules R1-R6), or ``None`` if it accepts it."""
    names = list(message.joint_names)
    times_N = np.asarray(message.times_N, dtype=np.float64)
    if not names or len(times_N) == 0:
        return "empty trajectory (R1)"
    unknown = [n for n in names if n not in settings.joints]
    if unknown:
        return f"joint {unknown[0]!r} is not one of the controller's joints (R2)"
    if len(set(names)) != len(names):
        return "a joint is named twice (R2)"
    if not settings.allow_partial_joints_goal and set(names) != set(settings.joints):
        missing = sorted(set(settings.joints) - set(names))
        return f"joints {missing[:3]} of the controller are missing and partial goals are not allowed (R2)"
    n, j = len(times_N), len(names)
    fields = {"positions": message.positions_NJ, "velocities": message.velocities_NJ}
    fields["accelerations"] = message.accelerations_NJ
    for name, values in fields.items():
        if values is None and name != "positions":
            continue
        if values is None or np.shape(values) != (n, j):
            return f"{name} has shape {np.shape(values)}, expected ({n}, {j}) (R6)"
        if not np.all(np.isfinite(values)):
            return f"{name} has a non-finite value"
    if not settings.allow_nonzero_velocity_at_trajectory_end and message.velocities_NJ is not None:
        last_v_J = np.abs(np.asarray(message.velocities_NJ)[-1])
        if np.any(last_v_J > FLT_EPSILON):
            i = int(np.argmax(last_v_J))
            return f"velocity of the last point of joint {names[i]} is not zero: {last_v_J[i]:.3g} (R3)"
    if message.stamp != 0.0 and message.end_time < now:
        return f"starts at {message.stamp:.3f} and ends in the past ({message.end_time:.3f} < {now:.3f}) (R4)"
    ns_N = np.round(times_N * 1e9)
    if np.any(np.diff(ns_N) <= 0):
        i = int(np.argmax(np.diff(ns_N) <= 0))
        return f"time_from_start does not increase strictly between points {i} and {i + 1} (R5)"
    return None


@dataclass(frozen=True)
class JointState:
    """Commanded position, velocity and acceleration of every controller joint at ``time``
    (or, stacked, ``(N, J)`` at ``N`` times)."""

    time: float | np.ndarray
    positions_J: np.ndarray  # noqa: N815
    velocities_J: np.ndarray  # noqa: N815
    accelerations_J: np.ndarray  # noqa: N815


def interpolate(t0: ArrayLike, a: JointState, t1: ArrayLike, b: JointState, t: ArrayLike, order: int = 5) -> JointState:
    """Rule S5: the polynomial through ``a`` at ``t0`` and ``b`` at ``t1``, evaluated at ``t``.
    ``order`` 1 (positions only), 3 (cubic Hermite on ``q, q'``) or 5 (quintic on ``q, q', q''``);
    outside the segment the C++ clamps the time and interpolates linearly (an end point).
    One time (floats, states ``(J,)``) or many (times ``(N,)``, states ``(N, J)``)."""
    T = np.asarray(t1, dtype=np.float64)[..., None] - np.asarray(t0, dtype=np.float64)[..., None]
    s = np.asarray(t, dtype=np.float64)[..., None] - np.asarray(t0, dtype=np.float64)[..., None]
    outside = (s < 0) | (s > T)
    s = np.clip(s, 0.0, T)
    zero = T == 0
    T = np.where(zero, 1.0, T)  # a zero-length segment keeps its first point (coefficients 0)
    q0, q1 = a.positions_J, b.positions_J
    slope = np.where(zero, 0.0, (q1 - q0) / T)
    time = np.asarray(t, dtype=np.float64)
    linear = JointState(time, q0 + slope * s, slope + 0.0 * q0, np.zeros_like(q0 + slope))
    if order == 1:
        return linear
    v0, v1 = a.velocities_J, b.velocities_J
    if order == 3:
        c2 = np.where(zero, 0.0, (-3 * q0 + 3 * q1 - 2 * v0 * T - v1 * T) / T**2)
        c3 = np.where(zero, 0.0, (2 * q0 - 2 * q1 + v0 * T + v1 * T) / T**3)
        q, v, acc = q0 + v0 * s + c2 * s**2 + c3 * s**3, v0 + 2 * c2 * s + 3 * c3 * s**2, 2 * c2 + 6 * c3 * s
    else:
        a0, a1 = a.accelerations_J, b.accelerations_J
        c2 = 0.5 * a0
        c3 = np.where(
            zero, 0.0, (-20 * q0 + 20 * q1 - 3 * a0 * T**2 + a1 * T**2 - 12 * v0 * T - 8 * v1 * T) / (2 * T**3)
        )
        c4 = np.where(
            zero, 0.0, (30 * q0 - 30 * q1 + 3 * a0 * T**2 - 2 * a1 * T**2 + 16 * v0 * T + 14 * v1 * T) / (2 * T**4)
        )
        c5 = np.where(zero, 0.0, (-12 * q0 + 12 * q1 - a0 * T**2 + a1 * T**2 - 6 * v0 * T - 6 * v1 * T) / (2 * T**5))
        q = q0 + v0 * s + c2 * s**2 + c3 * s**3 + c4 * s**4 + c5 * s**5
        v = v0 + 2 * c2 * s + 3 * c3 * s**2 + 4 * c4 * s**3 + 5 * c5 * s**4
        acc = 2 * c2 + 6 * c3 * s + 12 * c4 * s**2 + 20 * c5 * s**3
    return JointState(
        time,
        np.where(outside, linear.positions_J, q),
        np.where(outside, linear.velocities_J, v),
        np.where(outside, linear.accelerations_J, acc),
    )


@dataclass
class ActiveTrajectory:
    """The trajectory the controller follows: the message (joints in controller order), its start
    time once sampled (rule S1) and the state before it (recorded on its first sample)."""

    message: TrajectoryMessage
    before: JointState | None = None

    @property
    def start(self) -> float:
        return self.message.stamp if self.message.stamp != 0.0 else (self.before.time if self.before else 0.0)

    @property
    def order(self) -> int:
        m = self.message
        return 1 if m.velocities_NJ is None else 3 if m.accelerations_NJ is None else 5

    def points(self, i: np.ndarray | int) -> JointState:
        """Point(s) ``i`` with absolute times; empty velocity or acceleration fields read as zeros."""
        m = self.message
        q = m.positions_NJ[i]
        v = m.velocities_NJ[i] if m.velocities_NJ is not None else np.zeros_like(q)
        a = m.accelerations_NJ[i] if m.accelerations_NJ is not None else np.zeros_like(q)
        return JointState(self.start + np.asarray(m.times_N, dtype=np.float64)[i], q, v, a)

    def sample_many(self, times_N: np.ndarray) -> JointState:
        """Rules S2-S4 at absolute times ``times_N`` (after the first sample has recorded ``before``)."""
        times_N = np.asarray(times_N, dtype=np.float64)
        point_times = self.start + np.asarray(self.message.times_N, dtype=np.float64)
        last = len(point_times) - 1
        i_N = np.clip(np.searchsorted(point_times, times_N, side="right") - 1, 0, max(last - 1, 0))
        if last > 0:
            state = interpolate(point_times[i_N], self.points(i_N), point_times[i_N + 1], self.points(i_N + 1),
                                times_N, self.order)  # fmt: skip
            q, v, a = state.positions_J, state.velocities_J, state.accelerations_J
        else:
            q, v, a = (np.repeat(x[None], len(times_N), axis=0) for x in self._end())
        held = times_N >= point_times[-1]
        q[held], v[held], a[held] = self._end()
        early = times_N < point_times[0]
        if np.any(early):
            assert self.before is not None
            first = self.points(0)
            ramp = interpolate(self.before.time, self.before, point_times[0], first, times_N[early], self.order)
            q[early], v[early], a[early] = ramp.positions_J, ramp.velocities_J, ramp.accelerations_J
        return JointState(times_N, q, v, a)

    def _end(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        last = self.points(len(self.message.times_N) - 1)
        return last.positions_J, last.velocities_J, last.accelerations_J

    def sample(self, t: float) -> JointState:
        """:meth:`sample_many` at one time ``t``."""
        state = self.sample_many(np.array([t]))
        return JointState(t, state.positions_J[0], state.velocities_J[0], state.accelerations_J[0])


class JointTrajectoryControllerModel:
    """One JTC: :meth:`receive` messages (topic callback), :meth:`update` once per control cycle.

    Stand-in for the C++ controller (module docstring). It starts holding ``initial_positions_J``.
    :meth:`commanded_at` predicts the commanded state at a later time if nothing else arrives.
    """

    def __init__(self, settings: ControllerSettings, initial_positions_J: np.ndarray, time: float = 0.0) -> None:
        self.settings = settings
        q_J = np.asarray(initial_positions_J, dtype=np.float64)
        self.state = JointState(time, q_J.copy(), np.zeros_like(q_J), np.zeros_like(q_J))
        self.active: ActiveTrajectory | None = None
        self.pending: TrajectoryMessage | None = None
        self.pending_at = time

    def receive(self, message: TrajectoryMessage, now: float) -> str | None:
        """Topic callback at ``now``: ``None`` if accepted (it replaces the trajectory on the next
        update), else the rejection reason; a rejected message changes nothing."""
        reason = rejection_reason(message, self.settings, now)
        if reason is None:
            self.pending, self.pending_at = self._in_controller_order(message), now
        return reason

    def _in_controller_order(self, message: TrajectoryMessage) -> TrajectoryMessage:
        """``sort_to_local_joint_order()``: columns reordered to the controller's joints."""
        order = [list(message.joint_names).index(name) for name in self.settings.joints]

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else np.asarray(values, dtype=np.float64)[:, order]

        return TrajectoryMessage(
            list(self.settings.joints), float(message.stamp), np.asarray(message.times_N, dtype=np.float64),
            pick(message.positions_NJ), pick(message.velocities_NJ), pick(message.accelerations_NJ),
        )  # fmt: skip

    def update(self, time: float) -> JointState:
        """One control cycle at ``time``: take a pending message (replacement), sample, command."""
        if self.pending is not None:
            self.active, self.pending = ActiveTrajectory(self.pending), None
        if self.active is not None:
            if self.active.before is None:  # first sample: set_point_before_trajectory_msg
                self.active.before = JointState(
                    time, self.state.positions_J, self.state.velocities_J, self.state.accelerations_J
                )
            self.state = self.active.sample(time)
        else:
            self.state = JointState(time, self.state.positions_J, self.state.velocities_J, self.state.accelerations_J)
        return self.state

    def commanded_at(self, time: float) -> JointState:
        """The state this controller would command at ``time`` (>= the last update or receipt) if
        no other message arrived, counting a pending message as taken at its receipt time."""
        state = self.commanded_path(np.array([time]))
        return JointState(time, state.positions_J[0], state.velocities_J[0], state.accelerations_J[0])

    def commanded_path(self, times_N: np.ndarray) -> JointState:
        """:meth:`commanded_at` at many times ``times_N``: states ``(N, J)``."""
        times_N = np.asarray(times_N, dtype=np.float64)
        if self.pending is not None:
            before = self.commanded_now(self.pending_at)
            return ActiveTrajectory(self.pending, before).sample_many(times_N)
        if self.active is None:
            q_NJ = np.repeat(self.state.positions_J[None], len(times_N), axis=0)
            return JointState(times_N, q_NJ, np.zeros_like(q_NJ), np.zeros_like(q_NJ))
        return ActiveTrajectory(self.active.message, self.active.before or self.state).sample_many(times_N)

    def commanded_now(self, time: float) -> JointState:
        """The state the active trajectory alone commands at ``time`` (a pending message not yet taken)."""
        if self.active is None:
            q_J = self.state.positions_J
            return JointState(time, q_J, np.zeros_like(q_J), np.zeros_like(q_J))
        before = self.active.before or self.state
        return ActiveTrajectory(self.active.message, before).sample(time)


# ------------------------------------------------------------------------------------------ replay


@dataclass
class Replacement:
    """One accepted message taking over: when, and the position step it caused at that cycle."""

    received_at: float
    taken_at: float
    step_J: np.ndarray  # noqa: N815  |q(t) - q(t - 1/rate)|: the commanded change over that cycle

    def max_step(self) -> float:
        return float(np.max(self.step_J))


@dataclass
class Replay:
    """What a JTC commanded, cycle by cycle, for a stream of received messages."""

    settings: ControllerSettings
    times_T: np.ndarray  # noqa: N815
    positions_TJ: np.ndarray  # noqa: N815
    velocities_TJ: np.ndarray  # noqa: N815
    received: int = 0  # messages received, accepted or not
    rejections: list[tuple[float, str]] = field(default_factory=list)
    replacements: list[Replacement] = field(default_factory=list)
    end_velocities: list[float] = field(default_factory=list)  # max |v| of each accepted message's last point

    def max_replacement_step(self) -> float:
        return max((r.max_step() for r in self.replacements), default=0.0)

    def max_step_fraction(self, velocity_limits_J: np.ndarray) -> float:
        """Largest replacement step as a fraction of what the velocity limit allows in one cycle."""
        per_cycle_J = np.asarray(velocity_limits_J) / self.settings.update_rate
        return max((float(np.max(r.step_J / per_cycle_J)) for r in self.replacements), default=0.0)

    def figures(self, velocity_limits_J: np.ndarray) -> dict[str, float | int | bool]:
        """The controller-side figures of ``moscale bench node``: rejections (goal 0), the largest
        replacement step in rad and as a fraction of one cycle at the limit (goal <= 1), the largest
        last-point velocity (goal 0) and the fastest commanded finite-difference speed over its limit
        (goal <= 1)."""
        step_fraction = self.max_step_fraction(velocity_limits_J)
        speed_fraction = self.max_speed_fraction(velocity_limits_J)
        end_velocity = max(self.end_velocities, default=0.0)
        return {
            "controller_update_rate_hz": self.settings.update_rate,
            "controller_trajectories": self.received,
            "controller_rejections": len(self.rejections),
            "max_switch_step_rad": round(self.max_replacement_step(), 6),
            "max_switch_step_fraction_of_limit": round(step_fraction, 4),
            "max_end_velocity_rad_s": end_velocity,
            "max_speed_fraction_of_limit": round(speed_fraction, 4),
            "meets_controller_goals": not self.rejections and step_fraction <= 1.0 and end_velocity == 0.0
            and speed_fraction <= 1.0 + 1e-6,
        }  # fmt: skip

    def max_speed_fraction(self, velocity_limits_J: np.ndarray) -> float:
        """Largest finite-difference speed of the commanded positions over the limit (1.0 = at it)."""
        if len(self.times_T) < 2:
            return 0.0
        speed_TJ = np.abs(np.diff(self.positions_TJ, axis=0)) / np.diff(self.times_T)[:, None]
        return float(np.max(speed_TJ / np.asarray(velocity_limits_J)[None, :]))


def replay(
    received: Iterable[tuple[float, TrajectoryMessage]],
    settings: ControllerSettings,
    initial_positions_J: np.ndarray,
    start: float | None = None,
    until: float | None = None,
) -> Replay:
    """Run a :class:`JointTrajectoryControllerModel` at ``settings.update_rate`` over messages
    received at the given times (sorted), from ``start`` (default: the first receipt) to ``until``
    (default: the last end time plus one cycle)."""
    events = sorted(received, key=lambda pair: pair[0])
    dt = 1.0 / settings.update_rate
    t = events[0][0] if start is None and events else (start or 0.0)
    stop = until if until is not None else max([m.end_time for _, m in events] + [t]) + dt
    model = JointTrajectoryControllerModel(settings, initial_positions_J, t)
    empty_TJ = np.zeros((0, len(settings.joints)))
    result = Replay(settings, np.zeros(0), empty_TJ, empty_TJ, received=len(events))
    times, positions, velocities = [], [], []
    k = 0
    while t <= stop + 1e-9:
        took = None
        while k < len(events) and events[k][0] <= t:
            at, message = events[k]
            reason = model.receive(message, at)
            if reason is not None:
                result.rejections.append((at, reason))
            else:
                took = at
                if message.velocities_NJ is not None:
                    result.end_velocities.append(float(np.max(np.abs(message.velocities_NJ[-1]))))
            k += 1
        previous_J = model.state.positions_J
        state = model.update(t)
        if took is not None:
            result.replacements.append(Replacement(took, t, np.abs(state.positions_J - previous_J)))
        times.append(t)
        positions.append(state.positions_J)
        velocities.append(state.velocities_J)
        t += dt
    result.times_T = np.asarray(times)
    result.positions_TJ = np.asarray(positions)
    result.velocities_TJ = np.asarray(velocities)
    return result
