"""Trajectories a joint_trajectory_controller accepts and follows without a jump.

A ROS 2 controller replaces its trajectory on receipt and rejects one that ends moving (see
:mod:`moscale_ros.control.jtc_rules`). So every trajectory is shaped here, on the node's side:

**Rest at the ends (time scaling).** A motion ``q(τ)``, ``τ ∈ [0, D]``, is played on a clock ``t``
whose rate ``τ'(t)`` rises from 0 to 1 over ``T_i`` s (a start from rest) and falls from 1 to 0 over
the last ``T_o`` s, with the quintic "smootherstep" ``S(u) = 10u³ - 15u⁴ + 6u⁵``::

    τ'(t) = S(t / T_i)             (ease in)       τ'(t) = 1 - S((t - t_o) / T_o)   (ease out)
    q̇ = q'(τ) τ',   q̈ = q''(τ) τ'² + q'(τ) τ''

Each ease covers ``T/2`` s of motion (``∫₀¹ S = 1/2``); ``τ' = τ'' = 0`` at a rest end, so velocity
and acceleration vanish there exactly. The path is unchanged and ``τ' <= 1``, so speeds never grow:
a motion inside the velocity limits stays inside them.

**Splicing (switching plans).** A plan that takes over at ``s`` from the path ``q_c(t)`` being
commanded (position, velocity, acceleration sampled from what the controller was sent) blends
into the new plan ``q_n`` with ``w(τ) = 1 - S(τ / T_b)``, ``τ = t - s``::

    q = w q_c + (1 - w) q_n
    q̇ = w q̇_c + (1 - w) q̇_n + w' (q_c - q_n)
    q̈ = w q̈_c + (1 - w) q̈_n + 2 w' (q̇_c - q̇_n) + w'' (q_c - q_n)

At ``τ = 0`` (``w = 1``, ``w' = w'' = 0``) this is exactly the commanded state: no step in
position, velocity or acceleration. Positions are convex combinations of in-limit positions;
``T_b`` grows until the blended speeds (field and finite differences) are inside the limits.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.interpolate import CubicSpline

from retarget.trajectory import RobotTrajectory


def smootherstep(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``S(u) = 10u³ - 15u⁴ + 6u⁵``, ``S'``, ``S''`` and ``∫₀ᵘ S``, for ``u`` clipped to [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    value = u**3 * (10 - 15 * u + 6 * u**2)
    slope = 30 * u**2 * (1 - u) ** 2
    curvature = 60 * u * (1 - u) * (1 - 2 * u)
    integral = u**4 * (2.5 - 3 * u + u**2)
    return value, slope, curvature, integral


def eased_clock(duration: float, dt: float, ease_in_s: float, ease_out_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Output times ``t_M`` (step ``dt``) and the motion times ``τ_M`` they play (module docstring).

    The eases shrink together when the motion is shorter than their halves; the ease out is
    lengthened by less than ``2 dt`` so that the last output time is a whole number of steps."""
    duration = max(float(duration), 0.0)
    halves = 0.5 * (ease_in_s + ease_out_s)
    if halves > duration > 0:
        ease_in_s, ease_out_s = ease_in_s * duration / halves, ease_out_s * duration / halves
    total = duration + 0.5 * (ease_in_s + ease_out_s)
    steps = max(int(math.ceil(total / dt - 1e-9)), 1)
    ease_out_s += 2 * (steps * dt - total)
    cruise = duration - 0.5 * (ease_in_s + ease_out_s)  # motion seconds played at full rate
    t_M = np.arange(steps + 1) * dt
    t_M[-1] = steps * dt
    tau_M = np.empty_like(t_M)
    ramp_in = t_M < ease_in_s
    if ease_in_s > 0:
        tau_M[ramp_in] = ease_in_s * smootherstep(t_M[ramp_in] / ease_in_s)[3]
    t_out = ease_in_s + cruise
    middle = ~ramp_in & (t_M < t_out)
    tau_M[middle] = 0.5 * ease_in_s + (t_M[middle] - ease_in_s)
    tail = ~ramp_in & ~middle
    if ease_out_s > 0:
        u = (t_M[tail] - t_out) / ease_out_s
        tau_M[tail] = 0.5 * ease_in_s + cruise + ease_out_s * (np.clip(u, 0, 1) - smootherstep(u)[3])
    else:
        tau_M[tail] = duration
    return t_M, np.clip(tau_M, 0.0, duration)


def _interpolate_rows(times_N: np.ndarray, values_NJ: np.ndarray, at_M: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of ``values_NJ`` sampled at ``times_N``, at times ``at_M``."""
    i_M = np.clip(np.searchsorted(times_N, at_M, side="right") - 1, 0, len(times_N) - 2)
    span_M = times_N[i_M + 1] - times_N[i_M]
    a_M = np.clip((at_M - times_N[i_M]) / np.where(span_M > 0, span_M, 1.0), 0.0, 1.0)[:, None]
    return (1 - a_M) * values_NJ[i_M] + a_M * values_NJ[i_M + 1]


def spline_derivatives(times_N: np.ndarray, q_NJ: np.ndarray, rest_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Velocities and accelerations at the points from the C² cubic spline through the positions,
    with zero velocity at the last point (and at the first when ``rest_start``); the accelerations
    there are set to zero too (the eases make the motion flat to second order at a rest end).

    Why a spline: a joint_trajectory_controller joins two points with the quintic matching ``q,
    q', q''`` at both ends. With ``q', q''`` taken from one cubic spline, that quintic *is* the
    spline's segment, so the controller follows one smooth curve through the points; with
    finite-difference derivatives the quintics wiggle between points."""
    if len(times_N) < 2:
        return np.zeros_like(q_NJ), np.zeros_like(q_NJ)
    start = (1, np.zeros(q_NJ.shape[1])) if rest_start else "not-a-knot"
    if len(times_N) < 4 and not rest_start:
        start = (2, np.zeros(q_NJ.shape[1]))
    spline = CubicSpline(times_N, q_NJ, axis=0, bc_type=(start, (1, np.zeros(q_NJ.shape[1]))))
    v_NJ, a_NJ = spline(times_N, 1), spline(times_N, 2)
    v_NJ[-1] = a_NJ[-1] = 0.0
    if rest_start:
        v_NJ[0] = a_NJ[0] = 0.0
    return v_NJ, a_NJ


def base_poses_at(times_N: np.ndarray, poses_N7: np.ndarray, at_M: np.ndarray) -> np.ndarray:
    """Base poses ``[x y z qx qy qz qw]`` at ``at_M``: linear, quaternions renormalised (held outside)."""
    poses_M7 = _interpolate_rows(times_N, poses_N7, at_M)
    poses_M7[:, 3:] /= np.linalg.norm(poses_M7[:, 3:], axis=1, keepdims=True)
    return poses_M7


SMOOTHING_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # binomial, 5 samples


def smooth_positions(q_NJ: np.ndarray) -> np.ndarray:
    """Positions filtered with a 5-sample binomial kernel, padded by odd reflection at the ends
    (``2 q_0 - q_k``), which keeps the first and last positions exactly. Every output is a convex
    combination of inputs and every step an average of input steps, so position limits and the
    largest step ``|q_{n+1} - q_n|`` are kept, while the corners a speed clip leaves (where a smooth
    curve through the points would overshoot the speed limit) are rounded."""
    if len(q_NJ) < len(SMOOTHING_KERNEL):
        return q_NJ
    half = len(SMOOTHING_KERNEL) // 2
    head_NJ = 2 * q_NJ[:1] - q_NJ[half:0:-1]
    tail_NJ = 2 * q_NJ[-1:] - q_NJ[-2 : -half - 2 : -1]
    padded_NJ = np.concatenate([head_NJ, q_NJ, tail_NJ])
    return sum(w * padded_NJ[k : k + len(q_NJ)] for k, w in enumerate(SMOOTHING_KERNEL))


def ease(trajectory: RobotTrajectory, ease_in_s: float, ease_out_s: float) -> RobotTrajectory:
    """``trajectory`` replayed on the eased clock: at rest at its end (and at its start when
    ``ease_in_s > 0``), same path (smoothed, :func:`smooth_positions`), speeds never above the
    original's (module docstring)."""
    times_N = np.asarray(trajectory.times, dtype=np.float64)
    dt = 1.0 / trajectory.control_rate
    t_M, tau_M = eased_clock(trajectory.duration, dt, ease_in_s, ease_out_s)
    q_MJ = _interpolate_rows(times_N, smooth_positions(np.asarray(trajectory.positions, dtype=np.float64)), tau_M)
    v_MJ, a_MJ = spline_derivatives(t_M, q_MJ, rest_start=ease_in_s > 0)
    return replace(
        trajectory, times=t_M, positions=q_MJ, velocities=v_MJ, accelerations=a_MJ,
        base_poses=base_poses_at(times_N, np.asarray(trajectory.base_poses, dtype=np.float64), tau_M),
    )  # fmt: skip


def finite_difference_speed(trajectory: RobotTrajectory) -> np.ndarray:
    """``|q_{n+1} - q_n| / (t_{n+1} - t_n)``, shape ``(N - 1, J)``: what the positions imply."""
    times_N = np.asarray(trajectory.times, dtype=np.float64)
    return np.abs(np.diff(trajectory.positions, axis=0)) / np.diff(times_N)[:, None]


def blend_from_path(
    trajectory: RobotTrajectory,
    commanded_q_NJ: np.ndarray,
    commanded_v_NJ: np.ndarray,
    commanded_a_NJ: np.ndarray,
    commanded_base_N7: np.ndarray | None,
    blend_s: float,
) -> RobotTrajectory:
    """Blend ``trajectory`` (times from the switch) out of the commanded path sampled at the same
    times, over ``blend_s`` seconds (module docstring, "Splicing")."""
    times_N = np.asarray(trajectory.times, dtype=np.float64)
    s_N, ds_N, dds_N, _ = smootherstep(times_N / blend_s)
    w, dw, ddw = (x[:, None] for x in (1 - s_N, -ds_N / blend_s, -dds_N / blend_s**2))
    q_n, v_n, a_n = trajectory.positions, trajectory.velocities, trajectory.accelerations
    gap_NJ = commanded_q_NJ - q_n
    positions = w * commanded_q_NJ + (1 - w) * q_n
    velocities = w * commanded_v_NJ + (1 - w) * v_n + dw * gap_NJ
    accelerations = w * commanded_a_NJ + (1 - w) * a_n + 2 * dw * (commanded_v_NJ - v_n) + ddw * gap_NJ
    velocities[-1] = accelerations[-1] = 0.0
    base = trajectory.base_poses
    if commanded_base_N7 is not None:
        base = w * commanded_base_N7 + (1 - w) * base
        base[:, 3:] /= np.linalg.norm(base[:, 3:], axis=1, keepdims=True)
    final_q = np.array(trajectory.final_q, dtype=np.float64, copy=True)
    final_q[-positions.shape[1] :] = positions[-1]
    return replace(
        trajectory, positions=positions, velocities=velocities, accelerations=accelerations, base_poses=base,
        final_q=final_q,
    )  # fmt: skip


def within_speed_limits(trajectory: RobotTrajectory, velocity_limits_J: np.ndarray, tolerance: float = 1e-6) -> bool:
    """Velocity field and finite-difference speeds at most the limits (relative ``tolerance``): one per
    joint ``(J,)``, or one per point and joint ``(N, J)`` (a step between two points: the larger)."""
    bound = np.asarray(velocity_limits_J) * (1 + tolerance)
    if np.any(np.abs(trajectory.velocities) > bound):
        return False
    if len(trajectory.times) < 2:
        return True
    step_bound = np.maximum(bound[:-1], bound[1:]) if bound.ndim == 2 else bound
    return bool(np.all(finite_difference_speed(trajectory) <= step_bound))
