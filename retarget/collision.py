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

where ``J_p = J_v - [p - o]_x J_w`` is the world-aligned Jacobian of the closest point ``p`` on a link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pinocchio as pin

from moscale_common.errors import ConfigError

_LWA = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
CANDIDATE_MARGIN = 0.05  # m: pairs this much beyond the activation distance are re-checked within a keyframe
PUSH_OUT = 0.3  # fraction of a floor violation undone per IK step (a full push overshoots and oscillates)


@dataclass
class CollisionConfig:
    """Options of the self-collision constraint."""

    enabled: bool = True
    min_distance: float = 0.02  # m between capsule surfaces
    activation_distance: float = 0.06  # m; pairs farther apart add no row
    radius_quantile: float = 0.9  # capsule radius: this quantile of the vertices' distances to the axis


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
    u, v, w = b_P3 - a_P3, d_P3 - c_P3, a_P3 - c_P3
    uu, vv, uv = (u * u).sum(1), (v * v).sum(1), (u * v).sum(1)
    uw, vw = (u * w).sum(1), (v * w).sum(1)
    denom = uu * vv - uv * uv
    s = np.where(denom > 1e-12, (uv * vw - vv * uw) / np.maximum(denom, 1e-12), 0.0)
    s = np.clip(s, 0.0, 1.0)
    t = np.where(vv > 1e-12, (uv * s + vw) / np.maximum(vv, 1e-12), 0.0)
    t_clipped = np.clip(t, 0.0, 1.0)
    s = np.where(t != t_clipped, np.clip(np.where(uu > 1e-12, (uv * t_clipped - uw) / np.maximum(uu, 1e-12), 0.0),
                                          0.0, 1.0), s)  # fmt: skip
    p, q = a_P3 + s[:, None] * u, c_P3 + t_clipped[:, None] * v
    return p, q, np.linalg.norm(p - q, axis=1)


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
        self._layout_key: bytes | None = None
        self._layout: tuple | None = None

    def world_segments(
        self, data: pin.Data, links: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Capsule end points and frame origins ``(L, 3)`` of ``links`` (default all) at ``data``'s frames."""
        links = np.arange(len(self.frame_ids)) if links is None else links
        oMf = data.oMf
        placements = [oMf[self.frame_ids[link]] for link in links]
        R_L33 = np.array([M.rotation for M in placements])
        o_L3 = np.array([M.translation for M in placements])
        a = np.einsum("lij,lj->li", R_L33, self.local_a_L3[links]) + o_L3
        b = np.einsum("lij,lj->li", R_L33, self.local_b_L3[links]) + o_L3
        return a, b, o_L3

    def link_poses(self, data: pin.Data) -> tuple[np.ndarray, np.ndarray]:
        """Rotations ``(L, 3, 3)`` and origins ``(L, 3)`` of every capsule link at ``data``'s frames."""
        placements = [data.oMf[fid] for fid in self.frame_ids]
        return np.array([M.rotation for M in placements]), np.array([M.translation for M in placements])

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
        a, b, _ = self.world_segments(data)
        i, j = pair_P2[:, 0], pair_P2[:, 1]
        p, q, centre_distance = segment_distances(a[i], b[i], a[j], b[j])
        return p, q, centre_distance - self.radius_L[i] - self.radius_L[j]

    def candidates(self, data: pin.Data) -> np.ndarray:
        """Indices of the pairs within ``activation_distance`` plus a reach margin (``CANDIDATE_MARGIN``)."""
        return np.flatnonzero(self.distances(data)[2] < self.config.activation_distance + CANDIDATE_MARGIN)

    def rows(self, model: pin.Model, data: pin.Data, candidates: np.ndarray | None = None,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """``(A, lower, upper)`` on ``dq`` for the pairs (of ``candidates``, default all) within the
        activation distance; joint Jacobians and frame placements of ``data`` up to date."""
        key = None if candidates is None else candidates.tobytes()
        if self._layout_key != key or self._layout is None:  # links of these pairs, computed once per set
            pair_P2 = self.pair_P2 if candidates is None else self.pair_P2[candidates]
            floor_P = self.floor_P if candidates is None else self.floor_P[candidates]
            links, inverse = np.unique(pair_P2, return_inverse=True)
            inverse_P2 = inverse.reshape(-1, 2)
            local_L23 = np.stack([self.local_a_L3[links], self.local_b_L3[links]], axis=1)
            radii_P = self.radius_L[pair_P2].sum(axis=1)
            frames = [self.frame_ids[link] for link in links]
            self._layout, self._layout_key = (pair_P2, floor_P, frames, inverse_P2, local_L23, radii_P), key
        pair_P2, floor_P, frames, inverse_P2, local_L23, radii_P = self._layout
        if len(pair_P2) == 0:
            return np.zeros((0, model.nv)), np.zeros(0), np.zeros(0)
        oMf = data.oMf
        placements = [oMf[fid] for fid in frames]
        o_L3 = np.array([M.translation for M in placements])
        ends_L23 = np.einsum("lij,lkj->lki", np.array([M.rotation for M in placements]), local_L23) + o_L3[:, None]
        i, j = inverse_P2.T
        p, q, centre = segment_distances(ends_L23[i, 0], ends_L23[i, 1], ends_L23[j, 0], ends_L23[j, 1])
        distance = centre - radii_P
        near = np.flatnonzero(distance < self.config.activation_distance)
        if len(near) == 0:
            return np.zeros((0, model.nv)), np.zeros(0), np.zeros(0)
        normal_R3 = (p[near] - q[near]) / np.maximum(centre[near], 1e-9)[:, None]
        # n . (v_o + w x r) = n . v_o + (r x n) . w: one 6-vector (n, r x n) per row and side
        A = np.zeros((len(near), model.nv))
        for points_R3, link_R, sign in ((p[near], i[near], 1.0), (q[near], j[near], -1.0)):
            r, n = (points_R3 - o_L3[link_R]).T, normal_R3.T
            weights_R6 = np.stack([n[0], n[1], n[2], r[1] * n[2] - r[2] * n[1], r[2] * n[0] - r[0] * n[2],
                                   r[0] * n[1] - r[1] * n[0]], 1)  # fmt: skip
            J_R6V = np.array([pin.getFrameJacobian(model, data, frames[link], _LWA) for link in link_R])
            A += sign * np.einsum("rk,rkv->rv", weights_R6, J_R6V)
        gap = distance[near] - floor_P[near]  # < 0: closer than the floor, pushed out at PUSH_OUT per step
        lower = np.where(gap >= 0, -gap, -PUSH_OUT * gap)
        return A, lower, np.full(len(near), np.inf)


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
