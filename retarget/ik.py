"""Task-space IK on Pinocchio: one box-constrained weighted least-squares step per iteration.

Each iteration linearises every task at ``q`` and solves for a tangent step ``dq`` (base twist in
the base frame, then joint increments)::

    min_dq  sum_i w_i |J_i dq - e_i|^2  +  w_p |q_ref - (q_j + dq_j)|^2  +  lambda |dq|^2
    s.t.    lb <= dq_j <= ub        (joint position limits intersected with the velocity window)

Tasks: hip-midpoint position, pelvis and chest orientation, knee and ankle positions, foot
orientations (foot weights times ``contact_gain`` while that foot is in contact), elbow and wrist
positions relative to the shoulder (J = J_wrist - J_shoulder).
Position errors are world vectors, orientation errors ``log3(R_target R^T)`` with
LOCAL_WORLD_ALIGNED Jacobians. The box QP is solved by :func:`solve_box_qp` (a primal active set,
exact at convergence; ``solver="daqp"`` uses the DAQP solver on the same QP for comparison).
After ``q <- integrate(q, dq)`` joints are clipped into the box, so limits hold exactly.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin

from retarget.robot import Robot, TaskWeights
from retarget.scaling import SIDES, Targets

_LWA = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
BIG = 1e6


def solve_box_qp(H: np.ndarray, g: np.ndarray, lb: np.ndarray, ub: np.ndarray, max_passes: int = 20) -> np.ndarray:
    """``argmin 0.5 x'Hx - g'x`` subject to ``lb <= x <= ub`` for positive definite ``H``.

    Primal active set on the bounds: solve on the free variables, fix the violated ones at their
    bound, release a fixed one whose multiplier has the wrong sign (KKT), repeat. The result is
    clipped into the box, so it is always feasible.
    """
    x = np.linalg.solve(H, g)
    if np.all(x >= lb) and np.all(x <= ub):
        return x
    n = len(g)
    at_lower = np.zeros(n, dtype=bool)
    at_upper = np.zeros(n, dtype=bool)
    for _ in range(max_passes):
        at_lower |= x < lb
        at_upper |= x > ub
        fixed = at_lower | at_upper
        x = np.where(at_lower, lb, np.where(at_upper, ub, x))
        free = ~fixed
        if free.any():
            rhs = g[free] - H[np.ix_(free, fixed)] @ x[fixed]
            x[free] = np.linalg.solve(H[np.ix_(free, free)], rhs)
        if np.any(x[free] < lb[free] - 1e-12) or np.any(x[free] > ub[free] + 1e-12):
            continue
        grad = H @ x - g  # multiplier of a lower bound is +grad, of an upper bound -grad
        release = (at_lower & (grad < -1e-12)) | (at_upper & (grad > 1e-12))
        if not release.any():
            break
        worst = np.argmax(np.abs(grad) * release)
        at_lower[worst] = at_upper[worst] = False
        x = x.copy()
        free = ~(at_lower | at_upper)
        fixed = ~free
        rhs = g[free] - H[np.ix_(free, fixed)] @ x[fixed]
        x[free] = np.linalg.solve(H[np.ix_(free, free)], rhs)
    return np.clip(x, lb, ub)


def _solve_daqp(H: np.ndarray, g: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    import daqp

    x, _, flag, _ = daqp.solve(H, -g, np.zeros((0, len(g))), np.minimum(ub, BIG), np.maximum(lb, -BIG))
    if flag < 1:
        x = solve_box_qp(H, g, lb, ub)
    return np.clip(x, lb, ub)


class TaskSpaceIK:
    """Warm-started frame-by-frame IK of :class:`~retarget.scaling.Targets` on one robot."""

    def __init__(self, robot: Robot, weights: TaskWeights | None = None, solver: str = "active_set") -> None:
        if solver not in ("active_set", "daqp"):
            raise ValueError(f"unknown IK solver {solver!r}; use 'active_set' or 'daqp'")
        self.robot = robot
        self.model = robot.model
        self.data = robot.model.createData()
        self.weights = weights or robot.config.weights
        self.solve_qp = solve_box_qp if solver == "active_set" else _solve_daqp
        self.nv = self.model.nv
        f, ff = robot.frame_ids, robot.foot_frame_ids
        self.ids = {k: f[k] for k in f}
        self.ids.update({f"{s}_foot": ff[s] for s in SIDES})
        self.unique_ids = sorted(set(self.ids.values()))
        w = self.weights
        # rows: root 3, pelvis 3, torso 3, then per side knee 3, ankle 3, foot 3, elbow 3, wrist 3
        sq = np.sqrt
        row_w = [sq(w.root_position)] * 3 + [sq(w.pelvis_orientation)] * 3 + [sq(w.torso_orientation)] * 3
        for _ in SIDES:
            row_w += [sq(w.knee_position)] * 3 + [sq(w.foot_position)] * 3 + [sq(w.foot_orientation)] * 3
            row_w += [sq(w.elbow_position)] * 3 + [sq(w.hand_position)] * 3
        self.row_w = np.asarray(row_w)
        self.row_w_contact = {}
        for contact in ((False, False), (True, False), (False, True), (True, True)):
            rw = self.row_w.copy()
            for s, in_contact in enumerate(contact):
                if in_contact:
                    rw[9 + 15 * s + 3 : 9 + 15 * s + 9] *= np.sqrt(w.contact_gain)
            self.row_w_contact[contact] = rw
        self.A = np.zeros((len(row_w), self.nv))
        self.b = np.zeros(len(row_w))
        self.reg = np.full(self.nv, w.damping)
        self.reg[6:] += w.posture
        self.q_ref = robot.q_initial[7:].copy()

    def _linearise(self, q: np.ndarray, tg: Targets, k: int) -> None:
        """Fill ``A`` (task Jacobians) and ``b`` (task errors), unweighted, for frame ``k``."""
        model, data, A, b, ids = self.model, self.data, self.A, self.b, self.ids
        pin.computeJointJacobians(model, data, q)
        pin.updateFramePlacements(model, data)
        Jf = {i: pin.getFrameJacobian(model, data, i, _LWA) for i in self.unique_ids}
        oMf = data.oMf
        p = {key: oMf[i].translation for key, i in ids.items()}
        lh, rh = ids["left_hip"], ids["right_hip"]
        A[0:3] = 0.5 * (Jf[lh][:3] + Jf[rh][:3])
        b[0:3] = tg.root_T3[k] - 0.5 * (p["left_hip"] + p["right_hip"])
        A[3:6] = Jf[ids["pelvis"]][3:]
        b[3:6] = pin.log3(tg.pelvis_R_T33[k] @ oMf[ids["pelvis"]].rotation.T)
        A[6:9] = Jf[ids["spine3"]][3:]
        b[6:9] = pin.log3(tg.torso_R_T33[k] @ oMf[ids["spine3"]].rotation.T)
        r = 9
        for s, side in enumerate(SIDES):
            knee, ankle, foot = ids[f"{side}_knee"], ids[f"{side}_ankle"], ids[f"{side}_foot"]
            sh, el, wr = ids[f"{side}_shoulder"], ids[f"{side}_elbow"], ids[f"{side}_wrist"]
            A[r : r + 3] = Jf[knee][:3]
            b[r : r + 3] = tg.knee_T23[k, s] - p[f"{side}_knee"]
            A[r + 3 : r + 6] = Jf[ankle][:3]
            b[r + 3 : r + 6] = tg.ankle_T23[k, s] - p[f"{side}_ankle"]
            A[r + 6 : r + 9] = Jf[foot][3:]
            b[r + 6 : r + 9] = pin.log3(tg.foot_R_T233[k, s] @ oMf[foot].rotation.T)
            A[r + 9 : r + 12] = Jf[el][:3] - Jf[sh][:3]
            b[r + 9 : r + 12] = tg.elbow_rel_T23[k, s] - (p[f"{side}_elbow"] - p[f"{side}_shoulder"])
            A[r + 12 : r + 15] = Jf[wr][:3] - Jf[sh][:3]
            b[r + 12 : r + 15] = tg.wrist_rel_T23[k, s] - (p[f"{side}_wrist"] - p[f"{side}_shoulder"])
            r += 15

    def step(self, q: np.ndarray, tg: Targets, k: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """One IK iteration from ``q`` towards frame ``k``'s targets; joints stay in ``[lo, hi]``."""
        self._linearise(q, tg, k)
        row_w = self.row_w_contact[(bool(tg.contact_T2[k, 0]), bool(tg.contact_T2[k, 1]))]
        Aw = self.A * row_w[:, None]
        H = Aw.T @ Aw
        H[np.diag_indices(self.nv)] += self.reg
        g = Aw.T @ (self.b * row_w)
        qj = q[7:]
        g[6:] += self.weights.posture * (self.q_ref - qj)
        lb = np.concatenate([np.full(6, -np.inf), lo - qj])
        ub = np.concatenate([np.full(6, np.inf), hi - qj])
        dq = self.solve_qp(H, g, lb, ub)
        q_new = pin.integrate(self.model, q, dq)
        np.clip(q_new[7:], lo, hi, out=q_new[7:])
        return q_new

    def solve_frame(self, q: np.ndarray, tg: Targets, k: int, lo: np.ndarray, hi: np.ndarray, iterations: int,
                    max_step: float | None = None) -> np.ndarray:  # fmt: skip
        """``iterations`` steps towards frame ``k``; ``max_step`` (rad) bounds each step's joint change."""
        for _ in range(iterations):
            if max_step is None:
                q = self.step(q, tg, k, lo, hi)
            else:
                qj = q[7:]
                q = self.step(q, tg, k, np.maximum(lo, qj - max_step), np.minimum(hi, qj + max_step))
        return q

    def task_errors(self, q: np.ndarray, tg: Targets, k: int) -> dict[str, float]:
        """Position errors (m) at ``q`` for frame ``k``: hip midpoint, knees, feet (ankle frames),
        elbows and hands (wrist frames, both relative to the shoulder)."""
        pin.framesForwardKinematics(self.model, self.data, q)
        p = {key: self.data.oMf[i].translation for key, i in self.ids.items()}
        out = {"root": float(np.linalg.norm(tg.root_T3[k] - 0.5 * (p["left_hip"] + p["right_hip"])))}
        for s, side in enumerate(SIDES):
            shoulder = p[f"{side}_shoulder"]
            out[f"{side}_knee"] = float(np.linalg.norm(tg.knee_T23[k, s] - p[f"{side}_knee"]))
            out[f"{side}_foot"] = float(np.linalg.norm(tg.ankle_T23[k, s] - p[f"{side}_ankle"]))
            out[f"{side}_elbow"] = float(np.linalg.norm(tg.elbow_rel_T23[k, s] - (p[f"{side}_elbow"] - shoulder)))
            out[f"{side}_hand"] = float(np.linalg.norm(tg.wrist_rel_T23[k, s] - (p[f"{side}_wrist"] - shoulder)))
        return out
