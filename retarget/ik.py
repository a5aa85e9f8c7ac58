"""Task-space IK on Pinocchio: one weighted least-squares QP per iteration, limits and constraints inside it.

Each iteration linearises every task at ``q`` and solves for a tangent step ``dq`` (base twist in
the base frame, then joint increments)::

    min_dq  sum_i w_i |J_i dq - e_i|^2  +  w_p |q_ref - (q_j + dq_j)|^2  +  lambda |dq|^2
    s.t.    lb <= dq_j <= ub        (joint position limits intersected with the velocity window)
            |dq_base| <= BASE_STEP  (per IK step)
            l_c <= C dq <= u_c      (soft rows: balance, balance.py, and self-collision, collision.py)

Tasks: hip-midpoint position, pelvis and chest orientation, knee and ankle positions, foot
orientations (foot weights times ``contact_gain`` while that foot is in contact), elbow and wrist
positions relative to the shoulder (J = J_wrist - J_shoulder).
Position errors are world vectors, orientation errors ``log3(R_target R^T)`` with
LOCAL_WORLD_ALIGNED Jacobians. The QP is solved by DAQP (default: fastest measured, see
``moscale bench retarget``; the only solver for the constraint rows) or, for the box alone, by
:func:`solve_box_qp`, a numpy primal active set (same optimum). The box is passed to DAQP shrunk by
``LIMIT_SLACK`` (below its primal tolerance), so ``q + dq`` is inside the limits without clipping.
Self-collision candidate pairs (within reach) are searched every ``CANDIDATE_REFRESH`` steps
(a few keyframes; every 2 steps while settling the first frame), their rows
and the balance rows (cheap) linearised at every iteration.

Limit activity: at the last iteration of a keyframe, a joint whose step ends on its bound is
counted, and the tracking cost of that bound is estimated to first order as
``0.5 |mu_j| |dq_free_j - bound_j|`` (QP objective units: weighted squared task error), ``mu_j``
the bound's multiplier (the gradient ``H dq - g`` at the solution), ``dq_free`` the step without limits.
"""

from __future__ import annotations

import daqp
import numpy as np
import pinocchio as pin

from retarget.balance import BalanceConstraint
from retarget.collision import SelfCollision, support_columns
from retarget.robot import Robot, TaskWeights
from retarget.scaling import SIDES, Targets

_LWA = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
BIG = 1e6
LIMIT_SLACK = 1e-7  # rad: DAQP keeps bounds to its primal tolerance; the box is passed shrunk by this
BASE_STEP_M = 0.2  # largest base translation per IK step (m): a conflicting constraint cannot throw the body
BASE_STEP_RAD = 0.5  # largest base rotation per IK step (rad)
CANDIDATE_REFRESH = 8  # IK steps between self-collision candidate searches (2 while settling: larger steps)
SOFT = 8  # DAQP sense flag of a soft constraint row
_SKEW_39 = np.zeros((3, 9))  # (p @ _SKEW_39).reshape(3, 3) is [p]_x, the cross-product matrix of p
_SKEW_39[0, [7, 5]] = 1.0, -1.0
_SKEW_39[1, [2, 6]] = 1.0, -1.0
_SKEW_39[2, [3, 1]] = 1.0, -1.0


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


def _solve_daqp(H: np.ndarray, g: np.ndarray, lb: np.ndarray, ub: np.ndarray, C: np.ndarray | None = None,
                c_lower: np.ndarray | None = None, c_upper: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """DAQP on the box ``[lb, ub]`` (shrunk by LIMIT_SLACK; a box narrower than twice that becomes its
    midpoint) and optional soft rows ``c_lower <= C x <= c_upper``."""
    n = len(g)
    upper = np.minimum(ub, BIG) - LIMIT_SLACK
    lower = np.maximum(lb, -BIG) + LIMIT_SLACK
    crossed = lower > upper
    if crossed.any():
        mid = 0.5 * (upper + lower)
        upper, lower = np.where(crossed, mid, upper), np.where(crossed, mid, lower)
    if C is None or len(C) == 0:
        x, _, flag, _ = daqp.solve(H, -g, _NO_ROWS[n], upper, lower)
        return x if flag >= 1 else solve_box_qp(H, g, lb, ub)
    bu = np.concatenate([upper, np.minimum(c_upper, BIG)])
    bl = np.concatenate([lower, np.maximum(c_lower, -BIG)])
    x, _, flag, _ = daqp.solve(H, -g, C, bu, bl, _sense(n, len(C)))
    return x if flag >= 1 else solve_box_qp(H, g, lb, ub)  # a failed solve keeps the limits, drops the rows


class _NoRows(dict):
    """``(0, n)`` constraint matrices, one per ``n``."""

    def __missing__(self, n: int) -> np.ndarray:
        self[n] = rows = np.zeros((0, n))
        return rows


_NO_ROWS = _NoRows()


def _sense(n: int, rows: int) -> np.ndarray:
    """DAQP's sense flags: ``n`` hard bounds, then ``rows`` soft rows (cached; DAQP does not write them)."""
    key = (n, rows)
    flags = _SENSE.get(key)
    if flags is None:
        flags = _SENSE[key] = np.zeros(n + rows, dtype=np.int32)
        flags[n:] = SOFT
    return flags


_SENSE: dict[tuple[int, int], np.ndarray] = {}


class TaskSpaceIK:
    """Warm-started frame-by-frame IK of :class:`~retarget.scaling.Targets` on one robot.

    Rows of the stacked task (39): root 0-2, pelvis 3-5, chest 6-8, then per side at 9 + 15 s:
    knee, ankle, foot orientation, elbow, wrist. Every row is a fixed linear combination of frame
    Jacobian rows, so ``A = M_J @ J_all`` and the position part of ``b`` is ``t_k - M_p @ p_all``;
    ``M_J`` has one or two entries per row, so ``A`` is computed as two row gathers of ``J_all``.
    """

    def __init__(self, robot: Robot, weights: TaskWeights | None = None, solver: str = "daqp") -> None:
        if solver not in ("active_set", "daqp"):
            raise ValueError(f"unknown IK solver {solver!r}; use 'active_set' or 'daqp'")
        self.robot = robot
        self.model = robot.model
        self.data = robot.model.createData()
        self.weights = w = weights or robot.config.weights
        self.solve_qp = solve_box_qp if solver == "active_set" else _solve_daqp
        self.nv = nv = self.model.nv
        self.ids = dict(robot.frame_ids)
        self.ids.update({f"{s}_foot": robot.foot_frame_ids[s] for s in SIDES})
        self.unique_ids = sorted(set(self.ids.values()))
        slot = {key: self.unique_ids.index(i) for key, i in self.ids.items()}
        U = len(self.unique_ids)
        position_tasks = [(0, [("left_hip", 0.5), ("right_hip", 0.5)])]
        self.orientation_rows = [(3, slot["pelvis"]), (6, slot["spine3"])]
        sq = np.sqrt
        row_w = [sq(w.root_position)] * 3 + [sq(w.pelvis_orientation)] * 3 + [sq(w.torso_orientation)] * 3
        for s, side in enumerate(SIDES):
            r = 9 + 15 * s
            position_tasks += [(r, [(f"{side}_knee", 1.0)]), (r + 3, [(f"{side}_ankle", 1.0)])]
            position_tasks += [(r + 9, [(f"{side}_elbow", 1.0), (f"{side}_shoulder", -1.0)])]
            position_tasks += [(r + 12, [(f"{side}_wrist", 1.0), (f"{side}_shoulder", -1.0)])]
            self.orientation_rows.append((r + 6, slot[f"{side}_foot"]))
            row_w += [sq(w.knee_position)] * 3 + [sq(w.foot_position)] * 3 + [sq(w.foot_orientation)] * 3
            row_w += [sq(w.elbow_position)] * 3 + [sq(w.hand_position)] * 3
        m = len(row_w)
        self.M_J = np.zeros((m, 6 * U))
        self.M_p = np.zeros((m, 3 * U))
        for row, terms in position_tasks:
            for key, coef in terms:
                for i in range(3):
                    self.M_J[row + i, 6 * slot[key] + i] += coef
                    self.M_p[row + i, 3 * slot[key] + i] += coef
        for row, u in self.orientation_rows:
            for i in range(3):
                self.M_J[row + i, 6 * u + 3 + i] = 1.0
        self.row_w = np.asarray(row_w)
        self.contact_gain_rows = [np.arange(9 + 15 * s + 3, 9 + 15 * s + 9) for s in range(2)]
        # A = M_J @ J_all as J_all[first] * c_first + J_all[second] * c_second (a row of zeros past the end
        # stands in for a missing second term)
        self._J_rows = np.zeros((6 * U + 1, nv))
        self.J_all = self._J_rows[: 6 * U].reshape(U, 6, nv)
        entries = [np.flatnonzero(row) for row in self.M_J]
        self._first_M = np.array([e[0] for e in entries])
        self._second_M = np.array([e[1] if len(e) > 1 else 6 * U for e in entries])
        self._c_first_M = self.M_J[np.arange(m), self._first_M]
        self._c_second_M = np.where(
            self._second_M < 6 * U, self.M_J[np.arange(m), np.minimum(self._second_M, 6 * U - 1)], 0.0
        )
        self.support_U1V = np.array([support_columns(self.model, fid) for fid in self.unique_ids])[:, None]
        self._orientation_slots = [u for _, u in self.orientation_rows]
        self.reg = np.full(nv, w.damping)
        self.reg[6:] += w.posture
        self.q_ref = robot.q_initial[7:].copy()
        base_step = np.array([BASE_STEP_M] * 3 + [BASE_STEP_RAD] * 3)
        self.lb = np.concatenate([-base_step, np.full(nv - 6, -np.inf)])
        self.ub = np.concatenate([base_step, np.full(nv - 6, np.inf)])
        self._prepared_for: Targets | None = None
        self.balance: BalanceConstraint | None = None  # set per standing motion by the retargeter
        self.collision: SelfCollision | None = None
        self._collision_candidates: np.ndarray | None = None
        self._collision_links: np.ndarray = np.zeros(0, dtype=int)
        self._gather_cache: dict[bytes | None, tuple] = {}
        self._steps_since_search = 0
        self._refresh = CANDIDATE_REFRESH
        self.limit_active_J = np.zeros(nv - 6, dtype=bool)
        self.limit_cost_J = np.zeros(nv - 6)

    def _prepare(self, tg: Targets) -> None:
        """Per-frame position targets ``t_k`` (m rows), orientation targets and row weights."""
        K = len(tg)
        t = np.zeros((K, len(self.row_w)))
        t[:, 0:3] = tg.root_T3
        for s in range(2):
            r = 9 + 15 * s
            t[:, r : r + 3] = tg.knee_T23[:, s]
            t[:, r + 3 : r + 6] = tg.ankle_T23[:, s]
            t[:, r + 9 : r + 12] = tg.elbow_rel_T23[:, s]
            t[:, r + 12 : r + 15] = tg.wrist_rel_T23[:, s]
        self.t_K = t
        self.R_K433 = np.stack([tg.pelvis_R_T33, tg.torso_R_T33, tg.foot_R_T233[:, 0], tg.foot_R_T233[:, 1]], axis=1)
        weights = np.repeat(self.row_w[None], K, axis=0)
        for s in range(2):
            weights[np.ix_(tg.contact_T2[:, s], self.contact_gain_rows[s])] *= np.sqrt(self.weights.contact_gain)
        self.w_K = weights
        self._w_first_KM, self._w_second_KM = weights * self._c_first_M, weights * self._c_second_M
        self._prepared_for = tg
        self._collision_candidates = None  # a new motion: search again

    def _linearise(self, q: np.ndarray, tg: Targets, k: int, links: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Weighted task Jacobian ``W A`` and error ``b`` (unweighted) at ``q`` for frame ``k`` (``W`` the
        diagonal of its row weights ``w_K[k]``), and the placements
        ``(L, 4, 4)`` of the self-collision ``links`` (indices; None: all, empty: none).

        One ``computeJointJacobians`` (WORLD ``data.J``) and one placement read per frame; the
        LOCAL_WORLD_ALIGNED Jacobian of a frame at ``p`` is ``S * [J_v - [p]_x J_w; J_w]`` (``S`` its
        support columns), equal to ``getFrameJacobian`` to rounding."""
        model, data, U = self.model, self.data, len(self.unique_ids)
        pin.computeJointJacobians(model, data, q)
        pin.updateFramePlacements(model, data)
        frame_ids, ik_slots, link_slots = self._gather_plan(links)
        oMf = data.oMf
        H_G44 = np.array([oMf[fid].homogeneous for fid in frame_ids])  # each frame read once
        H_F44 = H_G44.take(ik_slots, 0)
        p_U3 = H_F44[:U, :3, 3]
        J = data.J
        J_w = J[3:]
        J_all = self.J_all
        np.multiply(J[:3] - (p_U3 @ _SKEW_39).reshape(U, 3, 3) @ J_w, self.support_U1V, out=J_all[:, :3])
        np.multiply(J_w, self.support_U1V, out=J_all[:, 3:])
        J_rows = self._J_rows
        Aw = J_rows.take(self._first_M, 0) * self._w_first_KM[k][:, None]
        Aw += J_rows.take(self._second_M, 0) * self._w_second_KM[k][:, None]
        b = self.t_K[k] - self.M_p @ p_U3.reshape(-1)
        R_rel_433 = self.R_K433[k] @ H_F44[self._orientation_slots, :3, :3].transpose(0, 2, 1)
        for (row, _), R_rel in zip(self.orientation_rows, R_rel_433):
            b[row : row + 3] = pin.log3(R_rel)
        return Aw, b, H_G44.take(link_slots, 0)

    def _gather_plan(self, links: np.ndarray | tuple | None) -> tuple[list[int], np.ndarray, np.ndarray]:
        """The distinct frames to read for the IK frames and the collision ``links`` (None: all, empty:
        none), and where each IK frame and each link is among them (cached for the last link set)."""
        key = None if links is None else bytes(np.asarray(links, dtype=np.int64))
        cached = self._gather_cache.get(key)
        if cached is None:
            wanted = list(self.unique_ids)
            if links is None or len(links):
                collision_ids = self.collision.frame_ids
                wanted += collision_ids if links is None else [collision_ids[link] for link in links]
            frame_ids = sorted(set(wanted))
            slot = {fid: n for n, fid in enumerate(frame_ids)}
            slots = np.array([slot[fid] for fid in wanted], dtype=np.int64)
            cached = (frame_ids, slots[: len(self.unique_ids)], slots[len(self.unique_ids) :])
            if len(self._gather_cache) > 64:  # candidate sets come and go: keep the recent ones
                self._gather_cache.clear()
            self._gather_cache[key] = cached
        return cached

    def step(self, q: np.ndarray, tg: Targets, k: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """One IK iteration from ``q`` towards frame ``k``'s targets; joints stay in ``[lo, hi]``.

        Self-collision candidates are searched every ``CANDIDATE_REFRESH`` steps, their rows
        linearised at every iteration (collision.py). The step's QP is kept for :meth:`solve_frame`
        to record limit activity and its cost (module docstring) from the last step it takes."""
        if self._prepared_for is not tg:
            self._prepare(tg)
        collision = self.collision
        links = ()
        search = False
        if collision is not None:
            search = self._collision_candidates is None or self._steps_since_search >= self._refresh
            links = None if search else self._collision_links
        Aw, b, H_L44 = self._linearise(q, tg, k, links)
        rows = None
        if collision is not None:
            if search:
                self._collision_candidates = collision.candidates_at(H_L44)
                self._collision_links = collision.candidate_links(self._collision_candidates)
                self._steps_since_search = 0
                H_L44 = H_L44[self._collision_links]
            self._steps_since_search += 1
            if len(self._collision_candidates):
                rows = collision.rows_at(H_L44, self.data.J, self._collision_candidates)
        bw = b * self.w_K[k]
        constraint_rows = [] if rows is None or not len(rows[0]) else [rows]
        if self.balance is not None:
            constraint_rows.append(self.balance.rows(self.model, self.data, k))
            weight = self.balance.config.centring_weight
            if weight > 0:  # the centring task as two more weighted rows of the stack
                J_c, error = self.balance.centring(self.model, self.data, k)
                root_w = np.sqrt(weight)
                Aw = np.concatenate([Aw, root_w * J_c])
                bw = np.concatenate([bw, root_w * error])
        H = Aw.T @ Aw
        H.flat[:: self.nv + 1] += self.reg
        g = Aw.T @ bw
        qj = q[7:]
        g[6:] += self.weights.posture * (self.q_ref - qj)
        lb, ub = self.lb, self.ub
        np.subtract(lo, qj, out=lb[6:])
        np.subtract(hi, qj, out=ub[6:])
        if constraint_rows:
            C, c_lower, c_upper = (np.concatenate(parts) for parts in zip(*constraint_rows))
            dq = _solve_daqp(H, g, lb, ub, C, c_lower, c_upper)
        else:
            dq = self.solve_qp(H, g, lb, ub)
        self._last_qp = (H, g, dq, lb[6:].copy(), ub[6:].copy())
        return pin.integrate(self.model, q, dq)

    def _record_limits(self, H: np.ndarray, g: np.ndarray, dq: np.ndarray, lb_J: np.ndarray, ub_J: np.ndarray) -> None:
        """Joints whose step ends on a bound, and the first-order tracking cost of each such bound."""
        dq_J = dq[6:]
        active_J = (dq_J <= lb_J + 10 * LIMIT_SLACK) | (dq_J >= ub_J - 10 * LIMIT_SLACK)
        self.limit_active_J = active_J
        if not active_J.any():
            self.limit_cost_J = np.zeros_like(dq_J)
            return
        multiplier_J = (H @ dq - g)[6:]
        free_J = np.linalg.solve(H, g)[6:]
        bound_J = np.where(dq_J <= lb_J + 10 * LIMIT_SLACK, lb_J, ub_J)
        self.limit_cost_J = np.where(active_J, 0.5 * np.abs(multiplier_J) * np.abs(free_J - bound_J), 0.0)

    def solve_frame(self, q: np.ndarray, tg: Targets, k: int, lo: np.ndarray, hi: np.ndarray, iterations: int,
                    max_step: float | None = None, tolerance: float = 0.0) -> np.ndarray:  # fmt: skip
        """At most ``iterations`` steps towards frame ``k``; ``max_step`` (rad) bounds each step's joint
        change; ``tolerance`` > 0 stops after a step that moves no coordinate of ``q`` by more than it
        (rad, m). Limit activity is recorded at the last step taken."""
        self._refresh = CANDIDATE_REFRESH if max_step is None else 2
        for _ in range(iterations):
            previous = q
            if max_step is None:
                q = self.step(q, tg, k, lo, hi)
            else:
                qj = q[7:]
                q = self.step(q, tg, k, np.maximum(lo, qj - max_step), np.minimum(hi, qj + max_step))
            if tolerance > 0 and np.abs(q - previous).max() <= tolerance:
                break
        if iterations > 0:
            self._record_limits(*self._last_qp)
        return q

    def current_targets(self, q: np.ndarray) -> dict[str, np.ndarray]:
        """The task values (positions, rotations) at ``q``, named like the :class:`Targets` fields."""
        pin.framesForwardKinematics(self.model, self.data, q)
        p = {key: self.data.oMf[i].translation.copy() for key, i in self.ids.items()}
        side = [(s, p[f"{s}_shoulder"]) for s in SIDES]
        return {
            "root_T3": 0.5 * (p["left_hip"] + p["right_hip"]),
            "knee_T23": np.stack([p[f"{s}_knee"] for s in SIDES]),
            "ankle_T23": np.stack([p[f"{s}_ankle"] for s in SIDES]),
            "elbow_rel_T23": np.stack([p[f"{s}_elbow"] - sh for s, sh in side]),
            "wrist_rel_T23": np.stack([p[f"{s}_wrist"] - sh for s, sh in side]),
            "pelvis_R_T33": self.data.oMf[self.ids["pelvis"]].rotation.copy(),
            "torso_R_T33": self.data.oMf[self.ids["spine3"]].rotation.copy(),
            "foot_R_T233": np.stack([self.data.oMf[self.ids[f"{s}_foot"]].rotation for s in SIDES]),
        }

    def task_errors(self, q: np.ndarray, tg: Targets, k: int) -> dict[str, float]:
        """Position errors (m) at ``q`` for frame ``k``: hip midpoint, knees, feet (ankle frames),
        elbows and hands (wrist frames, both relative to the shoulder)."""
        return {name: float(e[0]) for name, e in self.task_errors_all(q[None], tg, np.array([k])).items()}

    def task_errors_all(
        self, q_KQ: np.ndarray, tg: Targets, frames_K: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """:meth:`task_errors` of configurations ``q_KQ`` at frames ``frames_K`` (default ``0..K-1``) as
        ``(K,)`` arrays: one forward kinematics and one placement read per configuration, norms vectorised."""
        frames_K = np.arange(len(q_KQ)) if frames_K is None else frames_K
        model, data, ids = self.model, self.data, self.ids
        slot = {key: n for n, key in enumerate(ids)}
        fids = list(ids.values())
        p_KF3 = np.empty((len(q_KQ), len(fids), 3))
        for n, q in enumerate(q_KQ):
            pin.framesForwardKinematics(model, data, q)
            oMf = data.oMf
            p_KF3[n] = [oMf[fid].translation for fid in fids]
        p = {key: p_KF3[:, n] for key, n in slot.items()}
        root = 0.5 * (p["left_hip"] + p["right_hip"])
        out = {"root": np.linalg.norm(tg.root_T3[frames_K] - root, axis=-1)}
        for s, side in enumerate(SIDES):
            shoulder = p[f"{side}_shoulder"]
            out[f"{side}_knee"] = np.linalg.norm(tg.knee_T23[frames_K, s] - p[f"{side}_knee"], axis=-1)
            out[f"{side}_foot"] = np.linalg.norm(tg.ankle_T23[frames_K, s] - p[f"{side}_ankle"], axis=-1)
            elbow = tg.elbow_rel_T23[frames_K, s] - (p[f"{side}_elbow"] - shoulder)
            out[f"{side}_elbow"] = np.linalg.norm(elbow, axis=-1)
            out[f"{side}_hand"] = np.linalg.norm(
                tg.wrist_rel_T23[frames_K, s] - (p[f"{side}_wrist"] - shoulder), axis=-1
            )
        return out
