"""Canonical human joints to a robot trajectory: scale, pin feet, IK frame by frame, resample, report.

Pipeline of :meth:`Retargeter.retarget`::

    joints (T,22,3) y-up --check, smooth (Gaussian, sigma in s), y-up -> z-up
      -> BodyScale + Targets (scaling.py) -> contacts detected and feet pinned (contacts.py)
      -> [initial_q: targets moved onto the robot's place and heading, blended from its pose]
      (all at the control rate: the motion is interpolated onto its grid before scaling)
      -> IK at every control step (or keyframes at a lower ik_fps; where the spline between keyframes
         makes a capsule pair penetrate, that interval is solved again at every step, twice at most),
         warm-started frame to frame,
         each frame's joints inside limits and within v_max * dt of the previous frame (ik.py)
      -> velocities/accelerations; keyframes at a lower ik_fps are splined onto the control grid
         (trajectory.py) -> QualityReport

Two halves at once: with a ``tail_helper`` (a second process, :mod:`retarget.process`), a motion solved
at every step is split at frame ``m``: this process solves ``0..m``, the helper ``m - W..T`` from a
seed on the same path (keyframes every ``SEED_STRIDE`` steps from the same start, then settled at
``m - W``). Where the two agree within ``split_join_tolerance`` in the overlap (the IK forgets its
start within a few frames when it follows the same branch), the helper's frames after the join
point are taken; otherwise this process goes on alone, and takes the helper's frames after the first
``LATE_JOIN_RUN`` frames in a row on which both agree within that tolerance (a path that comes back to
the other's later); where they never do, the result is what it always was.

Streaming: a coarse plan can run with a low ``ik_fps`` (few keyframes, a quick plan); a refinement
passes the coarse trajectory as ``warm_start``: every keyframe starts from it and needs fewer
iterations, and frame 0 skips the long settling. A standing motion (balance constraint) uses it
for frame 0 only: its CoM acceleration rows need each keyframe to start from the previous one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pinocchio as pin
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from moscale_common.errors import InputError
from retarget.balance import BalanceConfig, BalanceConstraint, is_standing
from retarget.collision import CollisionConfig, SelfCollision
from retarget.contacts import ContactConfig, detect_contacts, keep_soles_above_ground, pin_feet
from retarget.human import check_joints, to_robot_world
from retarget.ik import LIMIT_SLACK, TaskSpaceIK
from retarget.report import UNMEASURED, QualityReport, measure_output
from retarget.robot import Robot
from retarget.scaling import SIDES, BodyScale, Targets, body_scale, build_targets, robot_proportions, rot_z
from retarget.trajectory import RobotTrajectory, resample

TRACKED = ("root", "left_knee", "right_knee", "left_foot", "right_foot", "left_elbow", "right_elbow",
           "left_hand", "right_hand")  # fmt: skip
REACH_WARNING_M = 0.10
REFILL_ROUNDS = 2  # re-solves with IK filled in where the spline between keyframes penetrates
SEED_STRIDE = 3  # a tail helper's seed: keyframes every 3 IK steps from the start to the overlap
# after a missed join, the halves are joined where they agree within split_join_tolerance this many frames in a
# row (one frame is not enough: a path can cross the other's and part again)
LATE_JOIN_RUN = 3


def join_outcome(split: str) -> str:
    """What a report's ``split`` says of the two halves: ``"overlap"`` (joined there), ``"later"`` (joined
    after :data:`LATE_JOIN_RUN` agreeing frames), ``"not"`` (solved in one) or ``"off"`` (not split)."""
    if split.startswith("joined at "):
        return "later" if "(late" in split else "overlap"
    return "not" if split.startswith("no join") else "off"


@dataclass
class RetargetConfig:
    """Retargeting options (the robot's own settings are in its YAML)."""

    control_rate: float = 50.0  # Hz of the output trajectory
    ik_fps: float | None = None  # IK keyframe rate; None = the control rate (no interpolation)
    iterations: int = 3  # IK iterations per keyframe, at most
    # a keyframe's IK ends after an iteration that moves no coordinate more (rad, m; 0: always `iterations`):
    # a calm motion's keyframe converges in one or two (tests/test_speed.py measures what it changes)
    iteration_tolerance: float = 0.005
    warm_iterations: int = 2  # per keyframe when a warm_start trajectory is given
    settle_iterations: int = 60  # frame 0 from the start pose
    settle_step: float = 0.2  # rad, largest joint change per settling iteration
    settle_tolerance: float = 1e-3  # settling ends after an iteration that moves no coordinate more (rad, m)
    smoothing_s: float = 0.03  # Gaussian sigma on the human joints, seconds (0 = off)
    transition_s: float = 0.5  # with initial_q: targets blend from the robot's pose over this time
    solver: str = "daqp"  # daqp (measured fastest, see moscale bench retarget) | active_set (own, numpy only)
    contacts: ContactConfig = field(default_factory=ContactConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)  # standing motions: CoM/ZMP in the support
    self_collision: CollisionConfig = field(default_factory=CollisionConfig)  # capsule pairs kept apart
    # with a tail helper (retarget.process): a motion of at least split_min_frames IK steps is solved in two
    # halves at once, joined where they agree within split_join_tolerance (rad, m), see Retargeter.solve_tail
    split_min_frames: int = 100
    split_overlap_frames: int = 10
    split_join_tolerance: float = 5e-3


def refill_keyframes(idx_K: np.ndarray, penetrating_N: np.ndarray) -> np.ndarray:
    """Keyframe indices ``idx_K`` (sorted, on the output grid) plus every step of each keyframe interval
    that holds a penetrating output point: there the IK runs at every step, elsewhere the spline stays."""
    points = np.flatnonzero(penetrating_N)
    k = np.clip(np.searchsorted(idx_K, points, side="right") - 1, 0, len(idx_K) - 2)
    spans = [np.arange(idx_K[i], idx_K[i + 1] + 1) for i in np.unique(k)]
    return np.unique(np.concatenate([idx_K, *spans]))


@dataclass
class _Keyframes:
    times: np.ndarray
    q: np.ndarray
    at_position_limit: np.ndarray
    at_velocity_limit: np.ndarray
    limit_cost: np.ndarray  # (K, J) first-order tracking cost of each active bound (ik.py)
    balance: BalanceConstraint | None = None
    split: str = "off"  # two halves at once: "joined at <frame>", "no join (<rad>)", or "off"


def _heading(R_33: np.ndarray) -> float:
    return float(np.arctan2(R_33[1, 0], R_33[0, 0]))


class Retargeter:
    """Retargets canonical human motions onto one robot; reusable across calls (model data cached)."""

    def __init__(self, robot: Robot, config: RetargetConfig | None = None) -> None:
        self.robot = robot
        self.config = config or RetargetConfig()
        if self.config.control_rate <= 0:
            raise InputError(f"control_rate must be > 0, got {self.config.control_rate}")
        self.proportions = robot_proportions(robot)
        self.ik = TaskSpaceIK(robot, solver=self.config.solver)
        self.collision: SelfCollision | None = None
        self.collision_off = ""  # why self-collision is off although configured (warned in every report)
        if self.config.self_collision.enabled and robot.config.collision.groups:
            if Path(robot.source).is_file():
                self.collision = SelfCollision(robot, self.config.self_collision)
            else:  # a robot_description string: its meshes cannot be located
                self.collision_off = (
                    f"self-collision off: the collision meshes of {robot.source!r} are not files here "
                    "(load the robot from its URDF file to keep arms out of the body)"
                )
        self.ik.collision = self.collision
        self.tail_helper: Any = None  # retarget.process.TailHelper: solves the second half at once
        data = robot.model.createData()
        q0 = robot.q_initial.copy()
        q0[:7] = [0, 0, 0, 0, 0, 0, 1]
        pin.framesForwardKinematics(robot.model, data, q0)
        hips = [data.oMf[robot.frame_ids[f"{s}_hip"]].translation for s in SIDES]
        self._hipmid_in_base = 0.5 * (hips[0] + hips[1])

    # -- targets ---------------------------------------------------------------------------------
    def targets(
        self, joints_T223: np.ndarray, fps: float, stand_in_place: bool = False
    ) -> tuple[Targets, BodyScale, float]:
        """Scaled, contact-pinned targets in the robot world at the control rate (and that rate).

        The motion is smoothed at its own rate, then interpolated (cubic) onto the control-rate grid.
        ``stand_in_place``: the motion is made a standing one whatever it does: the hips' horizontal
        displacement from the first frame is taken out of the hip, knee and ankle targets, and both
        feet are pinned (the arms and the pelvis height and rotation are kept).
        """
        joints = check_joints(joints_T223, fps)
        sigma = self.config.smoothing_s * fps
        if sigma > 0:
            joints = gaussian_filter1d(joints, sigma, axis=0, mode="nearest")
        rate = self.config.control_rate
        times_N = np.arange(int(np.floor((len(joints) - 1) / fps * rate + 1e-9)) + 1) / rate
        if len(times_N) < 2:
            raise InputError(f"joints: motion of {len(joints)} frames at {fps} fps is shorter than one control step")
        if len(joints) >= 3:
            joints = CubicSpline(np.arange(len(joints)) / fps, joints, axis=0)(times_N)
        else:
            joints = joints[0] + (joints[1] - joints[0]) * (times_N * fps)[:, None, None]
        fps = rate
        world = to_robot_world(joints)
        scale = body_scale(world, self.proportions)
        tg = build_targets(world, scale, self.proportions)
        contact = detect_contacts(tg.ankle_T23, fps, scale.robot_ankle_height, self.config.contacts)
        balance = self.config.balance
        if stand_in_place:
            drift_T3 = np.zeros_like(tg.root_T3)
            drift_T3[:, :2] = tg.root_T3[:, :2] - tg.root_T3[:1, :2]  # horizontal (the robot world is z-up)
            tg.root_T3 -= drift_T3
            tg.knee_T23 -= drift_T3[:, None]
            tg.ankle_T23 -= drift_T3[:, None]
            contact[:] = True
        elif balance.enabled and is_standing(tg.root_T3, tg.ankle_T23, scale.robot_ankle_height, balance):
            contact[:] = True  # a standing motion: both feet pinned flat for its whole length
        neutral_feet = [self.proportions.neutral_R[f"{s}_foot"] for s in SIDES]
        pin_feet(tg, contact, scale.robot_ankle_height, neutral_feet, fps, self.config.contacts)
        keep_soles_above_ground(tg, self.proportions.sole_from_ankle)
        return tg, scale, fps

    def _prepared_targets(self, joints_T223: np.ndarray, fps: float, initial_q: np.ndarray | None,
                          stand_in_place: bool) -> tuple[Targets, BodyScale, float, np.ndarray | None]:  # fmt: skip
        """:meth:`targets`, then placed for the start: from ``initial_q`` (checked, clipped into the limits:
        returned) moved onto the robot's place and blended from its pose, a standing motion on its stance;
        from rest, a standing motion's stance widened to the robot's minimum."""
        tg, scale, fps = self.targets(joints_T223, fps, stand_in_place)
        if initial_q is not None:
            initial_q = self._check_q(initial_q, "initial_q")
            initial_q[7:] = np.clip(initial_q[7:], self.robot.lower, self.robot.upper)
            self._align_to(tg, initial_q)
            self._blend_from(tg, initial_q, fps)
            if tg.contact_T2.all():
                self._keep_stance(tg, initial_q)
        elif tg.contact_T2.all():  # standing, from rest: the human's stance, widened to the robot's minimum
            self._widen_stance(tg, self.config.balance.min_stance_width)
        return tg, scale, fps, initial_q

    def _align_to(self, tg: Targets, q: np.ndarray) -> None:
        """Move targets rigidly (yaw + horizontal shift) so frame 0 starts where ``q`` stands."""
        data = self.robot.model.createData()
        pin.framesForwardKinematics(self.robot.model, data, q)
        hips = [data.oMf[self.robot.frame_ids[f"{s}_hip"]].translation for s in SIDES]
        here = 0.5 * (hips[0] + hips[1])
        base_R = data.oMf[self.robot.frame_ids["pelvis"]].rotation @ self.proportions.neutral_R["pelvis"].T
        yaw = _heading(base_R) - _heading(tg.pelvis_R_T33[0] @ self.proportions.neutral_R["pelvis"].T)
        R = rot_z(np.array(yaw))
        shift = np.array([here[0], here[1], 0.0]) - R @ np.array([tg.root_T3[0, 0], tg.root_T3[0, 1], 0.0])
        for name in ("root_T3", "knee_T23", "ankle_T23"):
            setattr(tg, name, getattr(tg, name) @ R.T + shift)
        for name in ("elbow_rel_T23", "wrist_rel_T23"):
            setattr(tg, name, getattr(tg, name) @ R.T)
        for name in ("pelvis_R_T33", "torso_R_T33", "foot_R_T233"):
            setattr(tg, name, R @ getattr(tg, name))

    def _blend_from(self, tg: Targets, q: np.ndarray, fps: float) -> None:
        """Start position targets at the robot's pose ``q``; the offset fades out (smoothstep) over
        ``transition_s``, so a chained motion begins where the last one ended, without a jump."""
        current = self.ik.current_targets(q)
        t = np.arange(len(tg)) / fps
        s = np.clip(1.0 - t / max(self.config.transition_s, 1e-9), 0.0, 1.0)
        fade = s * s * (3 - 2 * s)
        for name, value in current.items():
            array = getattr(tg, name)
            if name.endswith(("_R_T33", "_R_T233")):  # rotate by a fading part of R_now R_0^T
                offset = Rotation.from_matrix((value @ np.swapaxes(array[0], -1, -2)).reshape(-1, 3, 3)).as_rotvec()
                partial = fade[:, None, None] * offset[None]  # (T, n, 3)
                R_fade = Rotation.from_rotvec(partial.reshape(-1, 3)).as_matrix().reshape(array.shape)
                setattr(tg, name, R_fade @ array)
            else:
                array += fade.reshape((-1,) + (1,) * (array.ndim - 1)) * (value - array[0])

    def _keep_stance(self, tg: Targets, q: np.ndarray) -> None:
        """Feet down for the whole motion (a standing one): pin them where they are at ``q``, position
        and orientation, instead of at the human's median stance. A standing gesture takes no step,
        and every plan of one command (each starting at the first plan's pose) then has the same
        stance, so a plan replacing another never moves the feet (in physics the robot fell at such
        switches when two plans stood a few cm apart)."""
        current = self.ik.current_targets(q)
        self._move_feet(tg, current["ankle_T23"], current["foot_R_T233"])

    @staticmethod
    def _move_feet(tg: Targets, ankle_23: np.ndarray, foot_R_233: np.ndarray) -> None:
        """Pin both feet at ``ankle_23`` / ``foot_R_233`` for the whole motion; each knee target moves
        with its ankle (horizontally), so the legs keep the human's shape over the new stance."""
        shift_T23 = ankle_23[None] - tg.ankle_T23
        shift_T23[..., 2] = 0.0
        tg.knee_T23 += shift_T23
        tg.ankle_T23[:] = ankle_23[None]
        tg.foot_R_T233[:] = foot_R_233[None]

    def _widen_stance(self, tg: Targets, min_width: float) -> None:
        """Feet pinned for a standing motion from rest, at least ``min_width`` apart sideways (ankle to
        ankle, across the body's heading at the start): each foot moves out by half the shortfall,
        with its knee; a foot ahead of the other stays ahead.
        A generated person often stands narrower (8-17 cm) than the robot does (the G1's own stance
        is 24 cm), and a narrow stance tips the robot over sideways when the motion sways."""
        ankle_23 = tg.ankle_T23[0].copy()  # pinned: the same in every frame
        yaw = _heading(tg.pelvis_R_T33[0] @ self.proportions.neutral_R["pelvis"].T)
        left_3 = np.array([-np.sin(yaw), np.cos(yaw), 0.0])  # the body's left at the start (z up)
        width = float((ankle_23[0] - ankle_23[1]) @ left_3)  # lateral only: a foot ahead is no wider
        if width >= min_width:
            return
        out_3 = left_3 * (0.5 * (min_width - width))
        self._move_feet(tg, ankle_23 + np.stack([out_3, -out_3]), tg.foot_R_T233[0].copy())

    def _start_pose(self, tg: Targets) -> np.ndarray:
        q = self.robot.q_initial.copy()
        yaw = _heading(tg.pelvis_R_T33[0] @ self.proportions.neutral_R["pelvis"].T)
        R = rot_z(np.array(yaw))
        q[:3] = tg.root_T3[0] - R @ self._hipmid_in_base
        q[3:7] = pin.Quaternion(R).coeffs()
        return q

    def _check_q(self, q: np.ndarray, what: str) -> np.ndarray:
        q = np.asarray(q, dtype=float).copy()
        if q.shape != (self.robot.model.nq,) or not np.all(np.isfinite(q)):
            raise InputError(
                f"{what}: expected {self.robot.model.nq} finite values (base pose 7 + {self.robot.num_joints} joints "
                f"of {self.robot.name}), got shape {q.shape}"
            )
        q[3:7] /= np.linalg.norm(q[3:7])
        return q

    # -- IK over keyframes -------------------------------------------------------------------------
    def _solve(self, tg: Targets, times_K: np.ndarray, initial_q: np.ndarray | None,
               warm_start: RobotTrajectory | None, reuse: _Keyframes | None = None, split_at: int | None = None,
               from_frame: int = 0, from_q: np.ndarray | None = None) -> _Keyframes:  # fmt: skip
        """IK over the keyframes ``times_K``. ``reuse``: an earlier solve of a subset of these keyframes
        (a refill); its keyframes before the first new one are kept (and their CoM recorded for the balance
        rows): solving them again would follow the same path. ``split_at``: after keyframe ``split_at``,
        join the tail helper's answer (module docstring). ``from_frame``: start there instead, settled
        from ``from_q`` (a tail helper's half; the keyframes before it stay zero)."""
        cfg, robot, ik = self.config, self.robot, self.ik
        K = len(times_K)
        lower, upper, vmax = robot.lower, robot.upper, robot.velocity_limits
        q_K = np.zeros((K, robot.model.nq))
        pos_lim = np.zeros((K, robot.num_joints), dtype=bool)
        vel_lim = np.zeros((K, robot.num_joints), dtype=bool)
        cost = np.zeros((K, robot.num_joints))
        standing = cfg.balance.enabled and bool(tg.contact_T2.all())
        balance = BalanceConstraint(cfg.balance, self.proportions.sole_from_ankle, tg, times_K) if standing else None
        ik.balance = balance
        first = 1  # the first keyframe to solve after frame 0
        split = "off"
        if from_frame > 0:
            first = from_frame + 1
            q = ik.solve_frame(from_q, tg, from_frame, lower, upper, cfg.settle_iterations, cfg.settle_step,
                               cfg.settle_tolerance)  # fmt: skip
            q_K[from_frame] = q
        elif reuse is not None:
            n = min(len(reuse.times), K)
            differs = np.flatnonzero(times_K[:n] != reuse.times[:n])
            first = max(1, int(differs[0]) if len(differs) else n)
            q_K[:first], cost[:first] = reuse.q[:first], reuse.limit_cost[:first]
            pos_lim[:first], vel_lim[:first] = reuse.at_position_limit[:first], reuse.at_velocity_limit[:first]
            q = q_K[first - 1].copy()
        elif initial_q is not None:  # the trajectory starts exactly where the robot is
            q = initial_q.copy()
        elif warm_start is not None:
            q = self._check_q(warm_start.configuration_at(0.0), "warm_start")
            lo, hi = lower, upper
            q = ik.solve_frame(q, tg, 0, lo, hi, cfg.iterations)
        else:
            lo, hi = lower, upper
            q = ik.solve_frame(
                self._start_pose(tg), tg, 0, lo, hi, cfg.settle_iterations, cfg.settle_step, cfg.settle_tolerance
            )
        if first == 1:
            q_K[0] = q
        for k in range(from_frame, first if balance is not None else 0):  # the CoM history of the kept keyframes
            balance.record(robot.model, ik.data, q_K[k], k)
        tol = 10 * LIMIT_SLACK
        tail, agreeing = None, 0  # the tail helper's answer after a missed join; frames in a row within tolerance
        for k in range(first, K):
            dt = times_K[k] - times_K[k - 1]
            qj = q[7:]
            lo = np.maximum(lower, qj - vmax * dt)
            hi = np.minimum(upper, qj + vmax * dt)
            if warm_start is not None and balance is None:  # balance needs the frame-to-frame path (CoM'')
                guess = self._check_q(warm_start.configuration_at(times_K[k]), "warm_start")
                guess[7:] = np.clip(guess[7:], lo, hi)
                q = ik.solve_frame(guess, tg, k, lo, hi, cfg.warm_iterations, tolerance=cfg.iteration_tolerance)
            else:
                q = ik.solve_frame(q, tg, k, lo, hi, cfg.iterations, tolerance=cfg.iteration_tolerance)
            q_K[k] = q
            if balance is not None:
                balance.record(robot.model, ik.data, q, k)
            qj = q[7:]
            pos_lim[k] = ik.limit_active_J & ((qj <= lower + tol) | (qj >= upper - tol))
            vel_lim[k] = ik.limit_active_J & ~pos_lim[k]
            cost[k] = ik.limit_cost_J
            if k == split_at:
                ik.balance = None  # (the helper's answer is read while the IK waits)
                joined, split, tail = self._join_tail(k, q_K, pos_lim, vel_lim, cost, balance)
                ik.balance = balance
                if joined:
                    break
            elif tail is not None and k > split_at:  # no join in the overlap: the halves may still meet
                agreeing = agreeing + 1 if self._gap(q_K, tail, k) <= cfg.split_join_tolerance else 0
                if agreeing >= LATE_JOIN_RUN:
                    self._take_tail(k, tail, q_K, pos_lim, vel_lim, cost, balance)
                    split = f"joined at {k} (late, after {split})"
                    break
        pos_lim[from_frame] = (q_K[from_frame, 7:] <= lower + tol) | (q_K[from_frame, 7:] >= upper - tol)
        ik.balance = None
        return _Keyframes(times_K, q_K, pos_lim, vel_lim, cost, balance, split)

    def _join_tail(self, m: int, q_K: np.ndarray, pos_lim: np.ndarray, vel_lim: np.ndarray, cost: np.ndarray,
                   balance: BalanceConstraint | None) -> tuple[bool, str, dict | None]:  # fmt: skip
        """Take the tail helper's keyframes after the overlap frame (in its second half, up to ``m``)
        where both halves are closest, if within ``split_join_tolerance``; ``(joined, what happened,
        the helper's answer when it came but did not join)``."""
        try:
            tail = self.tail_helper.collect()
        except Exception as exc:  # noqa: BLE001 (the helper failed: this process goes on alone)
            return False, f"no join (helper: {exc!r})"[:200], None
        start = tail["start"]
        overlap = np.arange(max(start + self.config.split_overlap_frames // 2, start + 1), m + 1)
        gap_O = np.abs(q_K[overlap] - tail["q"][overlap - start]).max(axis=1)
        best = int(np.argmin(gap_O))
        if gap_O[best] > self.config.split_join_tolerance:
            return False, f"no join ({gap_O[best]:.4f})", tail
        j = int(overlap[best])
        self._take_tail(j, tail, q_K, pos_lim, vel_lim, cost, balance)
        return True, f"joined at {j}", None

    @staticmethod
    def _gap(q_K: np.ndarray, tail: dict, k: int) -> float:
        """Largest coordinate difference (rad, m) between this process's keyframe ``k`` and the helper's."""
        return float(np.abs(q_K[k] - tail["q"][k - tail["start"]]).max())

    @staticmethod
    def _take_tail(j: int, tail: dict, q_K: np.ndarray, pos_lim: np.ndarray, vel_lim: np.ndarray, cost: np.ndarray,
                   balance: BalanceConstraint | None) -> None:  # fmt: skip
        """Replace keyframes ``j + 1..`` (and their limit flags, costs and balance margins) by the helper's."""
        rest = slice(j + 1 - tail["start"], None)
        q_K[j + 1 :], pos_lim[j + 1 :], vel_lim[j + 1 :] = tail["q"][rest], tail["pos_lim"][rest], tail["vel_lim"][rest]
        cost[j + 1 :] = tail["cost"][rest]
        if balance is not None:
            balance.margin_K[j + 1 :] = tail["margin"][rest]
            balance.best_margin_K[j + 1 :] = tail["best_margin"][rest]

    def solve_tail(self, joints_T223: np.ndarray, fps: float, initial_q: np.ndarray | None, stand_in_place: bool,
                   start: int) -> dict:  # fmt: skip
        """A tail helper's half of :meth:`retarget` (same arguments, IK at every step, no warm start):
        the same targets, a seed on the same path (keyframes every ``SEED_STRIDE`` steps from the same
        start up to ``start``), settled at ``start``, then every step to the end. Returns the keyframes
        from ``start`` on: ``q``, ``pos_lim``, ``vel_lim``, ``cost`` and the balance ``margin`` (NaN when
        not standing)."""
        tg, _, fps, initial_q = self._prepared_targets(joints_T223, fps, initial_q, stand_in_place)
        T = len(tg)
        if not 0 < start < T - 1:
            raise InputError(f"solve_tail: start {start} outside (0, {T - 1})")
        seed_idx = np.unique(np.concatenate([np.arange(0, start, SEED_STRIDE), [start]]))
        seed = self._solve(tg.take(seed_idx), seed_idx / fps, initial_q, None)
        keys = self._solve(tg, np.arange(T) / fps, None, None, from_frame=start, from_q=seed.q[-1])
        unknown = np.full(T - start, np.nan)
        margin, best = (unknown, unknown) if keys.balance is None else (
            keys.balance.margin_K[start:], keys.balance.best_margin_K[start:])  # fmt: skip
        return {
            "start": start, "q": keys.q[start:], "pos_lim": keys.at_position_limit[start:],
            "vel_lim": keys.at_velocity_limit[start:], "cost": keys.limit_cost[start:], "margin": margin,
            "best_margin": best,
        }  # fmt: skip

    # -- public API --------------------------------------------------------------------------------
    def retarget(
        self,
        joints_T223: np.ndarray,
        fps: float,
        initial_q: np.ndarray | None = None,
        warm_start: RobotTrajectory | None = None,
        *,
        ik_fps: float | None = None,
        measure: bool = True,
        stand_in_place: bool = False,
    ) -> RobotTrajectory:
        """Retarget a canonical motion ``(T, 22, 3)`` (y-up, metres) sampled at ``fps``.

        ``initial_q`` (full configuration, e.g. a previous trajectory's ``final_q``) chains motions:
        the trajectory starts exactly at it, targets are moved onto the robot's place and heading and
        blend from its pose over ``transition_s``. ``warm_start`` (a trajectory of the same motion, e.g. a coarse plan)
        seeds every keyframe. ``ik_fps`` overrides the config's IK keyframe rate.
        ``measure=False`` leaves out the figures measured on the output (foot slide, balance, self-distance:
        NaN or empty in the report), and with them the keyframe refill where the spline between keyframes
        makes a capsule pair penetrate (:func:`refill_keyframes`): for a coarse plan that a finer one replaces.
        ``stand_in_place=True`` retargets it as a standing motion without its travel (:meth:`targets`).
        """
        started = time.perf_counter()
        cfg, robot = self.config, self.robot
        given = (joints_T223, fps, initial_q, stand_in_place)  # for a tail helper: the same targets there
        tg, scale, fps, initial_q = self._prepared_targets(joints_T223, fps, initial_q, stand_in_place)
        T = len(tg)
        rate = ik_fps if ik_fps is not None else cfg.ik_fps
        if rate is not None and not rate > 0:
            raise InputError(f"ik_fps must be > 0, got {rate}")
        if rate is None or rate >= fps:
            idx = np.arange(T)
        else:
            idx = np.unique(np.concatenate([np.round(np.arange(0, T - 1, fps / rate)).astype(int), [T - 1]]))
        split_at = None
        if self.tail_helper is not None and len(idx) == T and warm_start is None and T >= cfg.split_min_frames:
            overlap = cfg.split_overlap_frames
            # this process solves m steps; the helper a seed, a settling and T - m + overlap steps
            split_at = int(round((T + 1.2 * overlap + 5) / (2 - 1 / SEED_STRIDE)))
            self.tail_helper.submit(*given, split_at - overlap)
        keys = None
        for round_ in range(REFILL_ROUNDS + 1):
            tg_K = tg.take(idx)
            keys = self._solve(tg_K, idx / fps, initial_q, warm_start, reuse=keys, split_at=split_at)
            out = resample(keys.times, keys.q, cfg.control_rate, robot.lower, robot.upper, robot.velocity_limits)
            contact_N2 = tg.contact_T2[: len(out["times"])]
            report, penetrating_N = self._report(keys, tg_K, out, contact_N2, scale, measure)
            if len(idx) == T or not penetrating_N.any() or round_ == REFILL_ROUNDS:
                break  # what still penetrates is in the report (self_penetrations, a warning)
            idx = refill_keyframes(idx, penetrating_N)
        configs = np.concatenate([out["base_poses"], out["positions"]], axis=1)
        traj = RobotTrajectory(
            joint_names=list(robot.joint_names),
            times=out["times"],
            base_poses=out["base_poses"],
            positions=out["positions"],
            velocities=out["velocities"],
            accelerations=out["accelerations"],
            control_rate=cfg.control_rate,
            report=report,
            final_q=configs[-1].copy(),
            robot_name=robot.name,
            robot=robot,
        )
        report.elapsed_s = time.perf_counter() - started
        return traj

    def _report(self, keys: _Keyframes, tg_K: Targets, out: dict, contact_N2: np.ndarray,
                scale: BodyScale, measure: bool = True) -> tuple[QualityReport, np.ndarray]:  # fmt: skip
        """The report, and which output points have a capsule pair penetrating (none when not measured)."""
        robot = self.robot
        errors = self.ik.task_errors_all(keys.q, tg_K)
        err = {name: 100 * errors[name] for name in TRACKED}
        pos, vel = out["positions"], out["velocities"]
        violation = np.maximum(robot.lower - pos, pos - robot.upper).max(initial=0.0)
        ratio = np.abs(vel) / robot.velocity_limits
        worst = np.unravel_index(np.argmax(ratio), ratio.shape) if ratio.size else (0, 0)
        configs = np.concatenate([out["base_poses"], pos], axis=1)
        if measure:
            measured = measure_output(robot, configs, contact_N2, self.collision)
        else:
            measured = dict(UNMEASURED, penetrating_N=np.zeros(len(configs), dtype=bool))
        penetrating_N = measured.pop("penetrating_N")
        clamped = {}
        for j, name in enumerate(robot.joint_names):
            p, v = int(keys.at_position_limit[:, j].sum()), int(keys.at_velocity_limit[:, j].sum())
            if p or v:
                clamped[name] = {"position_limit": p, "velocity_limit": v,
                                 "tracking_cost": float(keys.limit_cost[:, j].sum())}  # fmt: skip
        warnings = []
        for name, values in err.items():
            far = int((values > 100 * REACH_WARNING_M).sum())
            if far:
                warnings.append(
                    f"{name}: {far} of {len(values)} keyframes miss their target by more than "
                    f"{100 * REACH_WARNING_M:.0f} cm (out of reach, a joint limit or too fast)"
                )
        K = len(keys.q)
        for name, c in clamped.items():
            if c["position_limit"] > 0.2 * K:
                warnings.append(f"{name} held at a position limit in {c['position_limit']} of {K} keyframes")
            if c["velocity_limit"] > 0.1 * K:
                warnings.append(f"{name} slowed to its velocity limit in {c['velocity_limit']} of {K} keyframes")
        if self.collision_off:
            warnings.append(self.collision_off)
        balance = keys.balance
        violations = balance.violations if balance is not None else 0
        best_m = balance.best_margin_m if balance is not None else 0.0
        shortfall_m = balance.shortfall_max_m if balance is not None else 0.0
        if violations:
            # Arms tracked worse than 3 cm (median): what the CoM rows may have pulled away from the human's
            # pose; nothing here proves it (a solve without balance would), so the warning says "tracked"
            loose = [f"{name} {float(np.median(values)):.1f} cm" for name, values in err.items()
                     if name.endswith(("hand", "elbow")) and np.median(values) > 3.0]  # fmt: skip
            short = "outside" if best_m >= 0 else "short of the deepest line of"
            warnings.append(
                f"balance: the CoM ended {short} the support polygon (shrunk by "
                f"{100 * self.config.balance.support_margin:.0f} cm) in {violations} of {K} keyframes "
                f"(by up to {100 * shortfall_m:.1f} cm; best margin possible {100 * best_m:.1f} cm); "
                f"arms tracked worse than 3 cm (median): {', '.join(loose) or 'none'}"
            )
        if measured.get("self_penetrations"):
            closest = min(measured["self_distance_min_cm"].values(), key=lambda pair: pair["min_cm"])
            warnings.append(f"self-collision: {measured['self_penetrations']} points penetrate, worst "
                            f"{closest['pair']} ({closest['min_cm']:.1f} cm)")  # fmt: skip
        if out["velocity_clamp_correction"] > 1e-3:
            correction = out["velocity_clamp_correction"]
            warnings.append(f"resampling clamped joint speeds (largest correction {correction:.3f} rad)")
        report = QualityReport(
            robot=robot.name,
            num_points=len(out["times"]),
            duration_s=float(out["times"][-1]),
            control_rate=self.config.control_rate,
            max_joint_limit_violation_rad=float(max(violation, 0.0)),
            max_speed_ratio=float(ratio[worst]) if ratio.size else 0.0,
            max_speed_joint=robot.joint_names[worst[1]],
            tracking_median_cm={k: float(np.median(v)) for k, v in err.items()},
            tracking_max_cm={k: float(np.max(v)) for k, v in err.items()},
            contact_fraction={s: float(tg_K.contact_T2[:, i].mean()) for i, s in enumerate(SIDES)},
            clamped=clamped,
            warnings=warnings,
            scale={"leg": scale.leg, "arm": scale.arm, "ground_ankle_height_m": scale.human_ankle_height},
            standing=balance is not None,
            resample_correction_rad=float(out["velocity_clamp_correction"]),
            balance_keyframes_outside=violations,
            balance_best_margin_cm=100 * best_m,
            balance_shortfall_max_cm=100 * shortfall_m,
            split=keys.split,
            **measured,
        )
        return report, penetrating_N
