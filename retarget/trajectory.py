"""Robot trajectories at the control rate: resampling, limits, velocities, accelerations, files.

IK runs at the control rate (or at coarser keyframes); :func:`resample` turns its keyframes into a
uniform grid ``t_n = n / rate``. Keyframes already on the grid are used as they are: the IK QP held
their position and velocity limits, nothing is clipped. Coarser keyframes (quick coarse plans) are
splined: cubic splines for joints and base position, component-wise spline plus normalisation
(sign-continuous) for the base quaternion; a spline can overshoot, so those joints are then clipped
into their position limits and passed once forward through
``q_n = q_{n-1} + clip(q_n - q_{n-1}, +-v dt)`` (the correction is reported). Velocities and
accelerations are central differences of the final positions (``np.gradient``), hence bounded by
the same limits and consistent with them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.interpolate import CubicSpline

from moscale_common.errors import InputError

if TYPE_CHECKING:
    from retarget.report import QualityReport
    from retarget.robot import Robot


@dataclass
class RobotTrajectory:
    """A retargeted motion. Rows are control-rate samples; joint columns follow ``joint_names``.

    ``base_poses`` rows are ``[x y z qx qy qz qw]`` (world, z-up); ``final_q`` is the full Pinocchio
    configuration of the last sample, to chain the next command; ``robot`` (not saved) is the
    :class:`~retarget.robot.Robot` it was made for, used by the renderer.
    """

    joint_names: list[str]
    times: np.ndarray
    base_poses: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray
    control_rate: float
    report: QualityReport | None
    final_q: np.ndarray
    robot_name: str = ""
    robot: Robot | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def configurations(self) -> np.ndarray:
        """Full configurations ``(N, 7 + nj)``."""
        return np.concatenate([self.base_poses, self.positions], axis=1)

    def configuration_at(self, t: float) -> np.ndarray:
        """Full configuration at time ``t`` (linear in joints and position, normalised quaternion)."""
        t = float(np.clip(t, 0.0, self.duration))
        i = int(min(np.searchsorted(self.times, t, side="right") - 1, len(self.times) - 2))
        if len(self.times) == 1 or i < 0:
            return self.configurations()[0].copy()
        a = (t - self.times[i]) / (self.times[i + 1] - self.times[i])
        q = (1 - a) * self.configurations()[i] + a * self.configurations()[i + 1]
        q[3:7] /= np.linalg.norm(q[3:7])
        return q

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (all arrays, joint names, report JSON) or ``.csv`` (time, base, positions, velocities)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        report = json.dumps(self.report.as_dict() if self.report is not None else {})
        if path.suffix == ".npz":
            np.savez(
                path, joint_names=np.array(self.joint_names), times=self.times, base_poses=self.base_poses,
                positions=self.positions, velocities=self.velocities, accelerations=self.accelerations,
                control_rate=self.control_rate, final_q=self.final_q, robot_name=self.robot_name, report=report,
            )  # fmt: skip
        elif path.suffix == ".csv":
            base = ["base_x", "base_y", "base_z", "base_qx", "base_qy", "base_qz", "base_qw"]
            header = ["time", *base, *self.joint_names, *(f"{n}.velocity" for n in self.joint_names)]
            rows = np.concatenate([self.times[:, None], self.base_poses, self.positions, self.velocities], axis=1)
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(np.round(rows, 7).tolist())
        else:
            raise InputError(f"{path}: trajectory files must end in .npz or .csv")
        return path

    @staticmethod
    def load(path: str | Path) -> RobotTrajectory:
        """Read a ``.npz`` written by :meth:`save` (the report comes back as ``None``)."""
        with np.load(path) as f:
            return RobotTrajectory(
                joint_names=[str(n) for n in f["joint_names"]], times=f["times"], base_poses=f["base_poses"],
                positions=f["positions"], velocities=f["velocities"], accelerations=f["accelerations"],
                control_rate=float(f["control_rate"]), report=None, final_q=f["final_q"],
                robot_name=str(f["robot_name"]),
            )  # fmt: skip


def _spline(times_K: np.ndarray, values_KD: np.ndarray, times_N: np.ndarray) -> np.ndarray:
    if len(times_K) < 3:
        return np.stack([np.interp(times_N, times_K, v) for v in values_KD.T], axis=1)
    return CubicSpline(times_K, values_KD, axis=0, bc_type="natural")(times_N)


def resample(times_K: np.ndarray, q_KQ: np.ndarray, rate: float, lower: np.ndarray, upper: np.ndarray,
             velocity_limits: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """Keyframe configurations ``(K, 7 + nj)`` at ``times_K`` to a ``rate`` Hz grid within the limits."""
    duration = float(times_K[-1])
    dt = 1.0 / rate
    times_N = np.arange(int(np.floor(duration * rate + 1e-9)) + 1) * dt
    base_pos = _spline(times_K, q_KQ[:, :3], times_N)
    quat_K4 = q_KQ[:, 3:7].copy()
    for k in range(1, len(quat_K4)):
        if quat_K4[k] @ quat_K4[k - 1] < 0:
            quat_K4[k] = -quat_K4[k]
    quat = _spline(times_K, quat_K4, times_N)
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    on_grid = len(times_K) == len(times_N) and np.allclose(times_K, times_N, atol=1e-9)
    if on_grid:  # the IK's own joints: limits held inside its QP
        base_pos, quat = q_KQ[:, :3].copy(), quat_K4 / np.linalg.norm(quat_K4, axis=1, keepdims=True)
        spline = joints = q_KQ[:, 7:].copy()
    else:
        spline = np.clip(_spline(times_K, q_KQ[:, 7:], times_N), lower, upper)
        joints = spline.copy()
        max_step = velocity_limits * dt
        for n in range(1, len(joints)):
            joints[n] = joints[n - 1] + np.clip(joints[n] - joints[n - 1], -max_step, max_step)
        np.clip(joints, lower, upper, out=joints)
    if len(joints) > 1:
        vel = np.gradient(joints, dt, axis=0)
        acc = np.gradient(vel, dt, axis=0)
    else:
        vel = acc = np.zeros_like(joints)
    return {
        "times": times_N,
        "base_poses": np.concatenate([base_pos, quat], axis=1),
        "positions": joints,
        "velocities": vel,
        "accelerations": acc,
        "velocity_clamp_correction": float(np.abs(joints - spline).max()) if len(joints) else 0.0,
    }
