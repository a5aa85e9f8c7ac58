"""Balance of standing motions: centre of mass and zero-moment point inside the support polygon.

A motion *stands* when it does not travel and keeps its feet down: the hip midpoint stays within
``travel_m`` of its median (horizontally) and no scaled ankle rises more than ``lift_m`` above its
standing height. Both feet are then pinned flat for the whole motion (contacts.py; a generated
gesture's shuffling feet stay put, a lunge is given up) and the IK holds, as linear inequality
rows of its QP (linearised at every iteration)::

    N (c + J_c dq)_xy <= d - margin - z_c a_max / g                  (CoM inside the shrunk polygon;
                                                                      outside: PULL_BACK of the way per step)
    |c''_x|, |c''_y| <= a_max,   c'' = (c + J_c dq - 2 c_{k-1} + c_{k-2}) / dt^2   (CoM acceleration)

so the zero-moment point of the CoM's motion, ``p_zmp = c - (z_c / g) c''``, is within ``z_c a_max / g``
of the CoM and hence inside the polygon shrunk by ``margin`` as well. A task of weight
``centring_weight`` pulls the CoM towards the middle of the soles (a robot on stiff position control
rocks less there); weight shifts stay allowed within the constraint.

``N``, ``d`` are the outward edge normals and offsets of the convex hull of both soles (the sole
corners of the robot YAML, placed at the pinned foot targets); ``c`` and ``J_c`` come from
``pinocchio.jacobianCenterOfMass``. The rows are soft in DAQP (a slack with a large weight), so a
motion that cannot satisfy them still gets the closest solution and a warning instead of a failure.

The shrunk region can be empty: it is when the polygon's inradius ``r = max_x min_e (d_e - n_e x)``
is below ``margin + z_c a_max / g`` (on the G1, feet side by side, front to back: soles 17 cm long,
so r is about 8.5 cm against 7 + 2.9 cm). The violated rows then pull against each other and hold
the CoM near the polygon's deepest line, the best any solution can do; a keyframe is judged against
that best, ``min(0, r - margin - z_c a_max / g)``, not against an impossible 0 (:meth:`record`). The
rows settle where their squared violations balance (with the tasks), not exactly on the deepest
line: 4-10 mm from it on the five clips of ``moscale bench retarget`` (``moscale retarget CLIP
--report`` prints the largest distance), hence a tolerance of :data:`EMPTY_TOLERANCE_M` there
against :data:`OUTSIDE_TOLERANCE_M` (linearisation) where the region exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin
from scipy.optimize import linprog

from retarget.report import convex_hull
from retarget.scaling import Targets

GRAVITY = 9.81
PULL_BACK = 0.3  # fraction of a CoM excursion outside the shrunk polygon undone per IK step (all at once overshoots)
OUTSIDE_TOLERANCE_M = 0.005  # a keyframe's CoM this far outside a (non-empty) shrunk polygon is a violation
EMPTY_TOLERANCE_M = 0.01  # ... this far short of the best margin where the shrunk polygon is empty


@dataclass
class BalanceConfig:
    """Options of the standing-balance constraint (see the module docstring)."""

    enabled: bool = True
    support_margin: float = 0.07  # m, the ZMP stays this far inside every edge of the support polygon
    com_acceleration_limit: float = 0.5  # m/s^2, horizontal CoM acceleration (|c''_x|, |c''_y|)
    travel_m: float = 0.8  # m: the hip midpoint farther than this from its median position (xy): travelling
    centring_weight: float = 1000.0  # IK weight of a task pulling the CoM (xy) to the middle of the feet
    lift_m: float = 0.1  # m: an ankle this much above its standing height: a step or a kick, not standing
    min_stance_width: float = 0.17  # m between the ankles of a standing motion from rest (wider: as the human)


def is_standing(root_T3: np.ndarray, ankle_T23: np.ndarray, ankle_height: float, config: BalanceConfig) -> bool:
    """True when the hip midpoint stays within ``travel_m`` of its median (xy) and both ankles
    within ``lift_m`` of their standing height ``ankle_height`` (module docstring)."""
    offsets_T2 = root_T3[:, :2] - np.median(root_T3[:, :2], axis=0)
    stays = np.linalg.norm(offsets_T2, axis=-1).max() <= config.travel_m
    return bool(stays and (ankle_T23[..., 2] - ankle_height).max() <= config.lift_m)


def inradius(normals_E2: np.ndarray, offsets_E: np.ndarray) -> float:
    """``max_x min_e (d_e - n_e . x)`` for the polygon ``N x <= d`` (unit normals): the radius of its
    largest inscribed circle, negative when the polygon is empty (a linear programme in ``(x, r)``)."""
    result = linprog(
        c=[0.0, 0.0, -1.0],
        A_ub=np.hstack([normals_E2, np.ones((len(offsets_E), 1))]),
        b_ub=offsets_E,
        bounds=[(None, None)] * 3,
        method="highs",
    )
    if result.status != 0:
        raise ValueError(f"the inradius of a support polygon: {result.message}")
    return float(-result.fun)


def support_halfplanes(corners_P2: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals ``N (E, 2)`` and offsets ``d (E,)`` of the convex hull of ``corners_P2``
    shrunk by ``margin``: a point ``x`` is inside when ``N x <= d``."""
    hull_E2 = convex_hull(corners_P2)
    edges_E2 = np.roll(hull_E2, -1, axis=0) - hull_E2
    normals_E2 = np.stack([edges_E2[:, 1], -edges_E2[:, 0]], axis=1)  # CCW hull: (dy, -dx) points out
    normals_E2 /= np.linalg.norm(normals_E2, axis=1, keepdims=True)
    return normals_E2, (normals_E2 * hull_E2).sum(axis=1) - margin


class BalanceConstraint:
    """CoM/ZMP rows of one standing motion for :class:`~retarget.ik.TaskSpaceIK` (module docstring).

    ``polygon_for(k)`` gives the half-planes of keyframe ``k`` (cached while the foot targets do not
    move); the CoM of the two previous keyframes, recorded with :meth:`record`, defines ``c''``.
    """

    def __init__(self, config: BalanceConfig, sole_from_ankle: list[np.ndarray], targets: Targets,
                 times_K: np.ndarray) -> None:  # fmt: skip
        self.config = config
        self.times_K = times_K
        self.corners_C3 = [np.asarray(corners, dtype=float) for corners in sole_from_ankle]
        self.ankle_K23 = targets.ankle_T23
        self.foot_R_K233 = targets.foot_R_T233
        corners_KC3 = np.concatenate(
            [self.ankle_K23[:, s, None] + self.corners_C3[s] @ np.swapaxes(self.foot_R_K233[:, s], 1, 2)
             for s in range(2)], axis=1)  # fmt: skip
        self.centre_K2 = corners_KC3[:, :, :2].mean(axis=1)  # the middle of the soles, per keyframe
        self.com_K3 = np.full((len(times_K), 3), np.nan)
        self._cache_key: np.ndarray | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self._polygon_K: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(times_K)
        self._stacked: tuple[np.ndarray, np.ndarray] | None = None
        self._depth: tuple[tuple[np.ndarray, np.ndarray], float] | None = None  # (polygon, its inradius)
        self.margin_K = np.full(len(times_K), np.nan)  # per keyframe, once recorded (record)
        self.best_margin_K = np.full(len(times_K), np.nan)  # the largest margin any CoM could have there

    def polygon_for(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        polygon = self._polygon_K[k]
        if polygon is not None:
            return polygon
        key = np.concatenate([self.ankle_K23[k].ravel(), self.foot_R_K233[k].ravel()])
        if self._cache is None or np.abs(key - self._cache_key).max() > 1e-3:
            corners = [self.ankle_K23[k, s] + self.corners_C3[s] @ self.foot_R_K233[k, s].T for s in range(2)]
            self._cache = support_halfplanes(np.concatenate(corners)[:, :2], self.config.support_margin)
            self._cache_key = key
        self._polygon_K[k] = self._cache
        return self._cache

    def rows(self, model: pin.Model, data: pin.Data, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, lower, upper)`` on ``dq`` at the kinematics in ``data`` (joint Jacobians computed)."""
        J_c = pin.jacobianCenterOfMass(model, data, False)[:2]
        com = data.com[0]
        normals_E2, offsets_E = self.polygon_for(k)
        E = len(offsets_E)
        zmp_shift = max(float(com[2]), 0.0) / GRAVITY * self.config.com_acceleration_limit  # |p_zmp - c| at most
        slack_E = offsets_E - zmp_shift - normals_E2 @ com[:2]  # < 0: outside, brought back PULL_BACK per step
        if k < 2 or np.isnan(self.com_K3[k - 2, 0]) or np.isnan(self.com_K3[k - 1, 0]):
            return normals_E2 @ J_c, np.full(E, -np.inf), np.where(slack_E >= 0, slack_E, PULL_BACK * slack_E)
        # with the CoM acceleration rows: [N; I] J_c, c'' within a_max of 0 around the predicted c_k
        dt = self.times_K[k] - self.times_K[k - 1]
        to_predicted = 2 * self.com_K3[k - 1, :2] - self.com_K3[k - 2, :2] - com[:2]  # c_k with c'' = 0, minus c
        a_dt2 = self.config.com_acceleration_limit * dt**2
        upper = np.empty(E + 2)
        np.multiply(slack_E, np.where(slack_E >= 0, 1.0, PULL_BACK), out=upper[:E])
        upper[E:] = to_predicted + a_dt2
        lower = np.full(E + 2, -np.inf)
        lower[E:] = to_predicted - a_dt2
        return self._with_identity(normals_E2) @ J_c, lower, upper

    def _with_identity(self, normals_E2: np.ndarray) -> np.ndarray:
        """``[N; I2]`` for the polygon ``normals_E2`` (cached while the polygon is the same)."""
        if self._stacked is None or self._stacked[0] is not normals_E2:
            self._stacked = (normals_E2, np.concatenate([normals_E2, np.eye(2)]))
        return self._stacked[1]

    def centring(self, model: pin.Model, data: pin.Data, k: int) -> tuple[np.ndarray, np.ndarray]:
        """CoM centring task ``(J_c_xy, centre_xy - c_xy)`` (call after :meth:`rows`: uses its CoM)."""
        return data.Jcom[:2], self.centre_K2[k] - data.com[0][:2]

    def record(self, model: pin.Model, data: pin.Data, q: np.ndarray, k: int) -> None:
        """Store keyframe ``k``'s solved CoM, its margin in the shrunk polygon (< 0: outside) and the
        best margin any CoM could have there, ``r - margin - z_c a_max / g`` (module docstring)."""
        com = pin.centerOfMass(model, data, q, False)
        self.com_K3[k] = com
        polygon = normals_E2, offsets_E = self.polygon_for(k)
        zmp_shift = max(com[2], 0.0) / GRAVITY * self.config.com_acceleration_limit
        self.margin_K[k] = float((offsets_E - zmp_shift - normals_E2 @ com[:2]).min())  # >= 0: inside
        if self._depth is None or self._depth[0] is not polygon:  # the shrunk polygon's (offsets d - margin)
            self._depth = (polygon, inradius(normals_E2, offsets_E))
        self.best_margin_K[k] = self._depth[1] - zmp_shift

    @property
    def violations(self) -> int:
        """Keyframes whose CoM ended more than :data:`OUTSIDE_TOLERANCE_M` outside the shrunk polygon or,
        where that is empty, more than :data:`EMPTY_TOLERANCE_M` short of its best margin."""
        best_K = self.best_margin_K
        allowed_K = np.where(best_K < 0, best_K - EMPTY_TOLERANCE_M, -OUTSIDE_TOLERANCE_M)
        return int((self.margin_K < allowed_K).sum())  # NaN (not recorded) compares False

    @property
    def shortfall_max_m(self) -> float:
        """The largest distance (m) by which a keyframe's margin fell short of ``min(0, best margin)``:
        outside the shrunk polygon, or short of its deepest line where it is empty (0 when none did)."""
        short_K = np.minimum(self.best_margin_K, 0.0) - self.margin_K
        short_K = short_K[np.isfinite(short_K)]
        return max(float(short_K.max()), 0.0) if len(short_K) else 0.0

    @property
    def best_margin_m(self) -> float:
        """The smallest best margin recorded (m; inf when none is): below 0, the region is empty."""
        recorded = self.best_margin_K[np.isfinite(self.best_margin_K)]
        return float(recorded.min()) if len(recorded) else np.inf
