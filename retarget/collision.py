"""Self-collision: capsules fitted per link to the URDF's collision geometry, and distance rows for the IK.

Each link named in the robot YAML's ``collision.groups`` gets one capsule (segment ``a``-``b`` in the
link frame, radius ``r``) fitted to its collision meshes (loaded by Pinocchio with coal): the axis is
the vertices' principal direction through their bounding box's centre, ``r`` the ``radius_quantile``
of their distances to it, the segment spans their extent along it less ``r`` at each end. Pairs
are the groups' cross products (arm-torso, arm-arm, arm-leg, leg-leg); a pair closer than
``min_distance`` in the start pose keeps half its start distance as its floor, a pair touching at
rest is dropped (as the simulator does).

At a keyframe's first IK iteration the distances of all pairs are computed at once (segment-segment
closest points, vectorised) and the pairs within reach kept as candidates; at every iteration a
candidate closer than ``activation_distance`` adds one linear row (soft in DAQP), re-linearised
there (closest points jump on near-parallel links, so a row kept from the first iteration oscillates)::

    n^T (J_pa - J_pb) dq >= d_min - d   (or PUSH_OUT of it while d < d_min),
    n = (p_a - p_b) / |p_a - p_b|,   d = |p_a - p_b| - r_a - r_b

where ``J_p = S (J_v - [p]_x J_w)`` is the world-aligned Jacobian of the closest point ``p`` on a link:
``J = data.J`` (WORLD, from the IK's one ``computeJointJacobians``; ``J_v`` the velocity at the world
origin) and ``S`` the 0/1 columns of the joints supporting the link, so one matrix product gives every
row (equal to ``getFrameJacobian`` per point to rounding; tests/test_retarget_constraints.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pinocchio as pin

from moscale_common.errors import ConfigError

CANDIDATE_MARGIN = 0.05  # m: pairs this much beyond the activation distance are re-checked within a keyframe
PUSH_OUT = 0.3  # fraction of a floor violation undone per IK step (a full push overshoots and oscillates)
_NEXT, _AFTER = np.array([1, 2, 0]), np.array([2, 0, 1])  # (p x n)_k = p_next n_after - p_after n_next


@dataclass
class CollisionConfig:
    """Options of the self-collision constraint."""

    enabled: bool = True
    min_distance: float = 0.02  # m between capsule surfaces
    activation_distance: float = 0.06  # m; pairs farther apart add no row
    radius_quantile: float = 1.0  # capsule radius: this quantile of the vertices' distances to the axis (1: all inside)


@dataclass
class CollisionGroups:
    """Robot YAML ``collision``: named groups of link pairs, each ``[links A, links B]`` (every A with every B)."""

    groups: dict[str, list[list[str]]] = field(default_factory=dict)


def _vertices_in_frame(model: pin.Model, geometry: pin.GeometryModel, frame_id: int) -> np.ndarray:
    """Collision-geometry points of the body ``frame_id`` in that frame's coordinates."""
    frame = model.frames[frame_id]
    points = []
    for obj in geometry.geometryObjects:
        if obj.parentFrame != frame_id:
            continue
        shape = obj.geometry
        if hasattr(shape, "vertices"):
            local_V3 = np.asarray(shape.vertices(), dtype=float)
        elif hasattr(shape, "halfLength"):  # cylinder: its two rims
            angle = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            rim = np.stack([shape.radius * np.cos(angle), shape.radius * np.sin(angle)], axis=1)
            local_V3 = np.concatenate([np.c_[rim, np.full(12, z)] for z in (-shape.halfLength, shape.halfLength)])
        elif hasattr(shape, "radius"):  # sphere: six poles
            local_V3 = shape.radius * np.concatenate([np.eye(3), -np.eye(3)])
        else:
            continue
        to_frame = frame.placement.actInv(obj.placement)
        points.append(local_V3 @ to_frame.rotation.T + to_frame.translation)
    return np.concatenate(points) if points else np.zeros((0, 3))


def fit_capsule(points_V3: np.ndarray, radius_quantile: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Capsule ``(a, b, r)`` around points: principal axis through the bounding box's centre (a mesh's
    vertex density is uneven, its mean is not), quantile radius, extent less ``r`` per end."""
    centre = 0.5 * (points_V3.min(axis=0) + points_V3.max(axis=0))
    _, _, vt = np.linalg.svd(points_V3 - centre, full_matrices=False)
    axis = vt[0]
    along_V = (points_V3 - centre) @ axis
    radial_V = np.linalg.norm(points_V3 - centre - along_V[:, None] * axis, axis=1)
    r = float(np.quantile(radial_V, radius_quantile))
    lo, hi = along_V.min() + r, along_V.max() - r
    if lo > hi:
        lo = hi = 0.5 * (along_V.min() + along_V.max())
    return centre + lo * axis, centre + hi * axis, r


def segment_distances(a_P3: np.ndarray, b_P3: np.ndarray, c_P3: np.ndarray, d_P3: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Closest points of segments ``a-b`` and ``c-d`` (P pairs at once): ``(p_P3, q_P3, distance_P)``."""
    u, v = b_P3 - a_P3, d_P3 - c_P3
    return _closest_points(a_P3, u, c_P3, v, np.einsum("pk,pk->p", u, u), np.einsum("pk,pk->p", v, v))


def _closest_points(a_P3: np.ndarray, u_P3: np.ndarray, c_P3: np.ndarray, v_P3: np.ndarray, uu_P: np.ndarray,
                    vv_P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`segment_distances` of ``a + s u`` and ``c + t v`` (s, t in [0, 1]) given ``|u|^2``, ``|v|^2``:
    ``s = clip((uv vw - vv uw) / (uu vv - uv^2))``, ``t = clip((uv s + vw) / vv)``, and when ``t`` was
    clipped ``s = clip((uv t - uw) / uu)`` (``w = a - c``; degenerate denominators give 0)."""
    return _closest_points_given(a_P3, u_P3, c_P3, v_P3, (uu_P, vv_P, _reciprocal(uu_P), _reciprocal(vv_P)))


def _reciprocal(x_P: np.ndarray) -> np.ndarray:
    """``1 / x`` where ``x > 1e-12``, else 0 (a segment of length 0: its parameter stays 0)."""
    return np.divide(1.0, x_P, out=np.zeros_like(x_P), where=x_P > 1e-12)


def _closest_points_given(a_P3: np.ndarray, u_P3: np.ndarray, c_P3: np.ndarray, v_P3: np.ndarray,
                          lengths: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`_closest_points` with ``lengths = (|u|^2, |v|^2, 1/|u|^2, 1/|v|^2)`` given (reciprocals by
    :func:`_reciprocal`): a capsule's segment keeps its length, so the IK computes them once per pair set."""
    uu_P, vv_P, inv_uu_P, inv_vv_P = lengths
    w = a_P3 - c_P3
    uv, uw, vw = np.einsum("pk,pk->p", u_P3, v_P3), np.einsum("pk,pk->p", u_P3, w), np.einsum("pk,pk->p", v_P3, w)
    denom = uu_P * vv_P - uv * uv
    s = np.divide(uv * vw - vv_P * uw, denom, out=np.zeros_like(denom), where=denom > 1e-12)
    np.minimum(np.maximum(s, 0.0, out=s), 1.0, out=s)
    t = (uv * s + vw) * inv_vv_P
    t_clipped = np.minimum(np.maximum(t, 0.0), 1.0)
    redo = t != t_clipped
    if redo.any():
        s_redo = np.minimum(np.maximum((uv * t_clipped - uw) * inv_uu_P, 0.0), 1.0)
        s = np.where(redo, s_redo, s)
    p, q = a_P3 + s[:, None] * u_P3, c_P3 + t_clipped[:, None] * v_P3
    gap = p - q
    return p, q, np.sqrt(np.einsum("pk,pk->p", gap, gap))


def support_columns(model: pin.Model, frame_id: int) -> np.ndarray:
    """``(nv,)`` 1.0 on the velocity columns of the joints that move frame ``frame_id`` (its support), else 0."""
    mask = np.zeros(model.nv)
    for joint in model.supports[model.frames[frame_id].parentJoint]:
        if joint > 0:
            start = model.joints[joint].idx_v
            mask[start : start + model.joints[joint].nv] = 1.0
    return mask


class SelfCollision:
    """The capsules and pairs of one robot (module docstring); ``rows`` for the IK, ``distances`` for reports."""

    def __init__(self, robot, config: CollisionConfig) -> None:
        self.config = config
        model = robot.model
        groups = robot.config.collision.groups
        links = sorted({link for pair_lists in groups.values() for side in pair_lists for link in side})
        missing = [link for link in links if not model.existFrame(link)]
        if missing:
            raise ConfigError(f"robot {robot.name}: collision links not in the URDF: {', '.join(missing)}")
        geometry = _collision_geometry(robot)
        self.frame_ids = [int(model.getFrameId(link)) for link in links]
        self.link_names = links
        caps = []
        for fid, link in zip(self.frame_ids, links):
            points = _vertices_in_frame(model, geometry, int(fid))
            if len(points) < 2:
                raise ConfigError(f"robot {robot.name}: link {link} has no collision geometry for a capsule")
            caps.append(fit_capsule(points, config.radius_quantile))
        self.local_a_L3 = np.array([c[0] for c in caps])
        self.local_b_L3 = np.array([c[1] for c in caps])
        self.radius_L = np.array([c[2] for c in caps])
        # each capsule as its point a and direction b - a, homogeneous (w = 1, 0): one product places both
        axis_L3 = self.local_b_L3 - self.local_a_L3
        self._local_au_L42 = np.stack([np.c_[self.local_a_L3, np.ones(len(links))],
                                       np.c_[axis_L3, np.zeros(len(links))]], axis=2)  # fmt: skip
        self._length2_L = np.einsum("lk,lk->l", axis_L3, axis_L3)
        index = {link: i for i, link in enumerate(links)}
        pairs, names = [], []
        for group, (side_a, side_b) in groups.items():
            for a in side_a:
                for b in side_b:
                    if a != b and (index[a], index[b]) not in pairs and (index[b], index[a]) not in pairs:
                        pairs.append((index[a], index[b]))
                        names.append(group)
        pair_P2 = np.array(pairs, dtype=int).reshape(-1, 2)
        data = model.createData()
        pin.framesForwardKinematics(model, data, robot.q_initial)
        rest_P = self.distances(data, pair_P2)[2]
        keep = rest_P > 0
        self.pair_P2 = pair_P2[keep]
        self.group_P = [g for g, k in zip(names, keep) if k]
        self.floor_P = np.minimum(config.min_distance, 0.5 * rest_P[keep])
        self.pair_names = [f"{links[a]} / {links[b]}" for a, b in self.pair_P2]
        self.pair_i_P, self.pair_j_P = self.pair_P2[:, 0].copy(), self.pair_P2[:, 1].copy()
        self.radii_P = self.radius_L[self.pair_i_P] + self.radius_L[self.pair_j_P]
        self.support_LV = np.array([support_columns(model, fid) for fid in self.frame_ids]).reshape(-1, model.nv)
        self._layout_cache: tuple | None = None
        self._all_pairs = self._layout(None)

    def placements(self, data: pin.Data, links: np.ndarray | None = None) -> np.ndarray:
        """Homogeneous placements ``(L, 4, 4)`` of the frames of ``links`` (default all) in ``data``."""
        oMf, frame_ids = data.oMf, self.frame_ids
        chosen = frame_ids if links is None else [frame_ids[link] for link in links]
        return np.array([oMf[fid].homogeneous for fid in chosen]).reshape(-1, 4, 4)

    def link_poses(self, data: pin.Data) -> tuple[np.ndarray, np.ndarray]:
        """Rotations ``(L, 3, 3)`` and origins ``(L, 3)`` of every capsule link at ``data``'s frames."""
        H_L44 = self.placements(data)
        return H_L44[:, :3, :3], H_L44[:, :3, 3]

    def distances_of_poses(self, R_NL33: np.ndarray, o_NL3: np.ndarray) -> np.ndarray:
        """Surface distances ``(N, P)`` of every pair over N stored link poses (:meth:`link_poses`),
        all frames in one vectorised closest-point computation."""
        a_NL3 = np.einsum("nlij,lj->nli", R_NL33, self.local_a_L3) + o_NL3
        b_NL3 = np.einsum("nlij,lj->nli", R_NL33, self.local_b_L3) + o_NL3
        i, j = self.pair_P2[:, 0], self.pair_P2[:, 1]
        N, P = len(R_NL33), len(self.pair_P2)
        ends = (a_NL3[:, i], b_NL3[:, i], a_NL3[:, j], b_NL3[:, j])
        _, _, centre = segment_distances(*(x.reshape(N * P, 3) for x in ends))
        return centre.reshape(N, P) - self.radius_L[i] - self.radius_L[j]

    def distances(self, data: pin.Data, pair_P2: np.ndarray | None = None):
        """Closest points and surface distances (m, < 0: penetration) of the pairs at ``data``'s frames."""
        pair_P2 = self.pair_P2 if pair_P2 is None else pair_P2
        i, j = pair_P2[:, 0], pair_P2[:, 1]
        p, q, centre = self._pair_points(self.placements(data), self._local_au_L42, i, j, self._lengths(None, i, j))
        return p, q, centre - self.radius_L[i] - self.radius_L[j]

    def _lengths(self, links: np.ndarray | None, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(|u|^2, |v|^2, 1/|u|^2, 1/|v|^2)`` of pairs ``(i, j)`` (indices into ``links``; None: all)."""
        length2_L = self._length2_L if links is None else self._length2_L[links]
        uu, vv = length2_L[i], length2_L[j]
        return uu, vv, _reciprocal(uu), _reciprocal(vv)

    @staticmethod
    def _pair_points(H_L44: np.ndarray, local_au_L42: np.ndarray, i: np.ndarray, j: np.ndarray,
                     lengths: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Closest points and axis distances of link pairs ``(i, j)``, the links placed by ``H_L44``."""
        au_L32 = H_L44[:, :3] @ local_au_L42  # [:, :, 0] the point a, [:, :, 1] the direction u = b - a
        au_i, au_j = au_L32.take(i, 0), au_L32.take(j, 0)
        return _closest_points_given(au_i[:, :, 0], au_i[:, :, 1], au_j[:, :, 0], au_j[:, :, 1], lengths)

    def _layout(self, candidates: np.ndarray | None) -> tuple:
        """``(links, i, j, radii, floors, support, local_au, lengths)`` of the pairs ``candidates`` (default
        all): ``i``/``j``, ``support`` and ``local_au`` (capsule point and direction, homogeneous) indexed
        over ``links`` (those pairs' links, None: all), ``lengths`` as :func:`_closest_points_given` takes
        them; the last set's is kept (the candidates are reused for several IK steps)."""
        key = None if candidates is None else candidates.tobytes()
        if self._layout_cache is None or self._layout_cache[0] != key:
            if candidates is None:
                links, i, j = None, self.pair_i_P, self.pair_j_P
                radii, floors, support, local_au = self.radii_P, self.floor_P, self.support_LV, self._local_au_L42
            else:
                links, inverse = np.unique(self.pair_P2[candidates], return_inverse=True)
                i, j = (x.copy() for x in inverse.reshape(-1, 2).T)
                radii, floors = self.radii_P[candidates], self.floor_P[candidates]
                support, local_au = self.support_LV[links], self._local_au_L42[links]
            lengths = self._lengths(links, i, j)
            self._layout_cache = (key, (links, i, j, radii, floors, support, local_au, lengths))
        return self._layout_cache[1]

    def candidate_links(self, candidates: np.ndarray) -> np.ndarray:
        """The links (indices into ``link_names``) of the pairs ``candidates``, sorted: what
        :meth:`rows_at` needs placed."""
        return self._layout(candidates)[0]

    def candidates(self, data: pin.Data) -> np.ndarray:
        """Indices of the pairs within ``activation_distance`` plus a reach margin (``CANDIDATE_MARGIN``)."""
        return self.candidates_at(self.placements(data))

    def candidates_at(self, H_L44: np.ndarray) -> np.ndarray:
        """:meth:`candidates` with every link placed by ``H_L44``."""
        _, i, j, _, _, _, local_au, lengths = self._all_pairs
        _, _, centre = self._pair_points(H_L44, local_au, i, j, lengths)
        return np.flatnonzero(centre - self.radii_P < self.config.activation_distance + CANDIDATE_MARGIN)

    def rows(self, model: pin.Model, data: pin.Data, candidates: np.ndarray | None = None,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """``(A, lower, upper)`` on ``dq`` for the pairs (of ``candidates``, default all) within the
        activation distance; ``data.J`` (``computeJointJacobians``) and frame placements up to date."""
        links = self._layout(candidates)[0]
        return self.rows_at(self.placements(data, links), data.J, candidates)

    def rows_at(self, H_L44: np.ndarray, J_6V: np.ndarray, candidates: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """:meth:`rows` with the pairs' links (:meth:`candidate_links`; every link when ``candidates``
        is None) placed by ``H_L44`` and the WORLD joint Jacobian ``J_6V``.

        One vectorised pass: the capsule ends of the pairs' links, their closest points, and for the R
        near ones ``A = (W J) * S`` summed over both sides (WORLD: the linear part is the velocity at
        the world origin, so ``n . v_p = n . v_0 + (p x n) . w``), ``W = [+-n, p x +-n]`` and ``S`` the
        0/1 support columns of each side's link."""
        _, i, j, radii_P, floor_P, support_LV, local_au, lengths = self._layout(candidates)
        p, q, centre = self._pair_points(H_L44, local_au, i, j, lengths)
        distance = centre - radii_P
        near = np.flatnonzero(distance < self.config.activation_distance)
        R = len(near)
        if R == 0:
            return np.zeros((0, J_6V.shape[1])), np.zeros(0), np.zeros(0)
        p_R3, q_R3 = p.take(near, 0), q.take(near, 0)
        normal_R3 = (p_R3 - q_R3) / np.maximum(centre.take(near), 1e-9)[:, None]
        points_S3 = np.concatenate([p_R3, q_R3])  # S = 2R: side a rows, then side b rows
        normal_S3 = np.concatenate([normal_R3, -normal_R3])
        moment_S3 = (points_S3.take(_NEXT, 1) * normal_S3.take(_AFTER, 1)
                     - points_S3.take(_AFTER, 1) * normal_S3.take(_NEXT, 1))  # fmt: skip
        side_SV = (np.concatenate([normal_S3, moment_S3], axis=1) @ J_6V) * support_LV.take(
            np.concatenate([i.take(near), j.take(near)]), 0
        )
        A = side_SV[:R] + side_SV[R:]
        gap = distance.take(near) - floor_P.take(near)  # < 0: closer than the floor, pushed out at PUSH_OUT per step
        lower = np.where(gap >= 0, -gap, -PUSH_OUT * gap)
        return A, lower, np.full(R, np.inf)


def _collision_geometry(robot) -> pin.GeometryModel:
    """The URDF's collision geometry (meshes loaded by coal); package:// paths resolved upwards from the URDF."""
    source = Path(robot.source)
    try:
        if source.is_file():
            return pin.buildGeomFromUrdf(robot.model, str(source), pin.GeometryType.COLLISION,
                                         package_dirs=[str(p) for p in source.parents])  # fmt: skip
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"robot {robot.name}: cannot load the collision geometry of {source}: {exc}") from exc
    raise ConfigError(f"robot {robot.name}: self-collision needs the URDF file with its meshes, not {robot.source}")
