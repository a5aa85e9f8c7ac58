"""Base velocity commands from a motion's root path, for robots that walk with their own controller.

A walking controller takes a body-frame twist ``(v_x, v_y, w_z)``. From the scaled root path
(hip midpoint ``p_t``, robot world, z-up) and the pelvis heading ``psi_t`` at ``fps``, both
smoothed with a Gaussian of ``smoothing_s``::

    v_world = dp/dt (central differences),  w_z = dpsi/dt (psi unwrapped)
    v_x = cos(psi) v_wx + sin(psi) v_wy,   v_y = -sin(psi) v_wx + cos(psi) v_wy

each component clipped to the robot's ``max_base_velocity``, and the last command is zero (the robot
stops). Integrating the commands (forward Euler, ``dt = 1 / fps``) retraces the smoothed path.

A motion is *travelling* (walk, run, turn, sidestep: worth a walking controller) when it is not a
standing motion (:func:`retarget.balance.is_standing`, the class that the balance constraint holds)
and its root path either moves ``min_travel_m`` or more away from where it started (horizontally)
or turns the heading ``min_turn_rad`` or more away from its start heading::

    travelling = not standing and (max_t |p_t - p_0|_xy >= min_travel_m or max_t |psi_t - psi_0| >= min_turn_rad)

The node publishes the commands (``locomotion: cmd_vel``, :mod:`moscale_ros.control.base_velocity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from moscale_common.errors import InputError

DEFAULT_SMOOTHING_S = 0.25  # s, Gaussian sigma on the root path and heading


@dataclass(frozen=True)
class TravelRule:
    """Thresholds of the travelling test (module docstring)."""

    min_travel_m: float = 0.3  # m of horizontal root displacement from the start
    min_turn_rad: float = 0.5  # rad (~29 deg) of heading change from the start


def is_travelling(root_T3: np.ndarray, heading_T: np.ndarray, standing: bool, rule: TravelRule = TravelRule()) -> bool:
    """True for a travelling motion: not ``standing`` (the balance module's class) and the root moves
    ``min_travel_m`` or turns ``min_turn_rad`` from its start (module docstring)."""
    if standing or len(root_T3) < 2:
        return False
    moved = np.linalg.norm(root_T3[:, :2] - root_T3[0, :2], axis=1).max()
    turned = np.abs(np.asarray(heading_T, dtype=float) - heading_T[0]).max()
    return bool(moved >= rule.min_travel_m or turned >= rule.min_turn_rad)


def heading_from_quaternions(quaternions_T4: np.ndarray) -> np.ndarray:
    """Unwrapped yaw (rad) of base orientations given as ``[qx qy qz qw]`` rows (z-up world)."""
    x, y, z, w = np.asarray(quaternions_T4, dtype=float).T
    return np.unwrap(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def heading_from_rotations(pelvis_R_T33: np.ndarray, neutral_pelvis_R_33: np.ndarray) -> np.ndarray:
    """Unwrapped yaw (rad) of the pelvis frames relative to the robot's neutral pelvis orientation."""
    R_T33 = pelvis_R_T33 @ neutral_pelvis_R_33.T
    return np.unwrap(np.arctan2(R_T33[:, 1, 0], R_T33[:, 0, 0]))


def base_velocity_commands(root_T3: np.ndarray, heading_T: np.ndarray, fps: float, max_velocity_3: np.ndarray,
                           smoothing_s: float = DEFAULT_SMOOTHING_S) -> np.ndarray:  # fmt: skip
    """Body-frame commands ``(T, 3)`` = ``(v_x, v_y, w_z)`` per frame (module docstring); the last row is 0."""
    if len(root_T3) < 2 or len(heading_T) != len(root_T3):
        raise InputError(f"root path of {len(root_T3)} frames and heading of {len(heading_T)}: need 2+ of each, equal")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    sigma = smoothing_s * fps
    xy_T2 = gaussian_filter1d(root_T3[:, :2], sigma, axis=0, mode="nearest") if sigma > 0 else root_T3[:, :2]
    yaw_T = gaussian_filter1d(heading_T, sigma, mode="nearest") if sigma > 0 else np.asarray(heading_T, float)
    v_world_T2 = np.gradient(xy_T2, 1.0 / fps, axis=0)
    c, s = np.cos(yaw_T), np.sin(yaw_T)
    commands_T3 = np.stack(
        [c * v_world_T2[:, 0] + s * v_world_T2[:, 1], -s * v_world_T2[:, 0] + c * v_world_T2[:, 1],
         np.gradient(yaw_T, 1.0 / fps)], axis=1,
    )  # fmt: skip
    commands_T3 = np.clip(commands_T3, -np.asarray(max_velocity_3), np.asarray(max_velocity_3))
    commands_T3[-1] = 0.0
    return commands_T3


def integrate_commands(commands_T3: np.ndarray, fps: float, start_xy: np.ndarray, start_heading: float) -> np.ndarray:
    """Path ``(T, 3)`` = ``(x, y, psi)`` a robot following ``commands_T3`` would take (forward Euler)."""
    path_T3 = np.zeros((len(commands_T3), 3))
    path_T3[0] = [start_xy[0], start_xy[1], start_heading]
    for t in range(1, len(commands_T3)):
        x, y, psi = path_T3[t - 1]
        vx, vy, wz = commands_T3[t - 1] / fps
        path_T3[t] = [x + np.cos(psi) * vx - np.sin(psi) * vy, y + np.sin(psi) * vx + np.cos(psi) * vy, psi + wz]
    return path_T3
