"""Canonical human skeleton in the robot's world frame, and the input checks.

Canonical joints (docs/ARCHITECTURE.md) are y-up, metres, facing +z at frame 0. Robots use z-up,
x forward, y left. For a person facing +z with y up, left is +x, so the map is the cyclic (proper)
permutation ``(x_r, y_r, z_r) = (z_h, x_h, y_h)``.
"""

from __future__ import annotations

import numpy as np

from moscale_common.errors import InputError
from moscale_common.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS, JOINT_INDEX

__all__ = ["CANONICAL_JOINTS", "CANONICAL_PARENTS", "JOINT", "check_joints", "to_robot_world"]

JOINT = JOINT_INDEX


def check_joints(joints_T223: np.ndarray, fps: float, where: str = "joints") -> np.ndarray:
    """Validate a canonical motion; returns it as float64. Bad shape, NaN/inf, bad fps raise InputError."""
    joints = np.asarray(joints_T223)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise InputError(f"{where}: expected canonical joints of shape (T, 22, 3), got {joints.shape}")
    if joints.shape[0] < 2:
        raise InputError(f"{where}: need at least 2 frames, got {joints.shape[0]}")
    if not np.issubdtype(joints.dtype, np.number):
        raise InputError(f"{where}: expected numbers, got dtype {joints.dtype}")
    bad = ~np.isfinite(joints)
    if bad.any():
        frame, joint, _ = np.argwhere(bad)[0]
        raise InputError(
            f"{where}: {int(bad.any(axis=2).sum())} joint position(s) are NaN or infinite "
            f"(first at frame {frame}, joint {CANONICAL_JOINTS[joint]})"
        )
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"{where}: fps must be a positive number, got {fps!r}")
    extent = np.ptp(joints.reshape(-1, 3), axis=0).max()
    if extent > 1000.0:
        raise InputError(f"{where}: joint positions span {extent:.0f} units; expected metres (cm input?)")
    return joints.astype(np.float64)


def to_robot_world(joints_T223: np.ndarray) -> np.ndarray:
    """y-up canonical positions to the robot world (z-up, x forward, y left): (x, y, z) <- (z, x, y)."""
    return joints_T223[..., [2, 0, 1]]
