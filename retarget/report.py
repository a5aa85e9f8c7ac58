"""Quality report of a retargeted trajectory, measured with Pinocchio on what is sent.

Measured on the control-rate output: largest joint-limit violation (rad), largest joint speed over
its limit, foot slide during contact (horizontal path length of the sole centre over each contact
run, cm), ground penetration (lowest sole corner below z = 0, cm), static balance (centre of mass
projected on the ground inside the convex hull of the soles in contact, with its signed margin).
Measured on the IK keyframes (where targets are defined): tracking errors (cm) of hands and elbows
(relative to the shoulder, after scaling), feet (ankle frames), knees and the hip midpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pinocchio as pin

from retarget.collision import SelfCollision
from retarget.contacts import runs
from retarget.robot import Robot

SIDES = ("left", "right")


@dataclass
class QualityReport:
    """Figures of one trajectory; ``as_dict()`` is JSON-ready, ``format()`` is for people."""

    robot: str
    num_points: int
    duration_s: float
    control_rate: float
    max_joint_limit_violation_rad: float
    max_speed_ratio: float
    max_speed_joint: str
    foot_slide_max_cm: float
    foot_slide_mean_cm: float
    ground_penetration_max_cm: float
    tracking_median_cm: dict[str, float]
    tracking_max_cm: dict[str, float]
    com_over_support_fraction: float
    com_support_margin_min_cm: float
    contact_fraction: dict[str, float]
    clamped: dict[str, dict[str, float]] = field(default_factory=dict)
    standing: bool = False  # both feet pinned for the whole motion: balance constraint on
    # keyframes whose CoM ended > 5 mm outside the shrunk support polygon, or, where that is empty, > 1 cm
    # short of the best margin any CoM could have (retarget/balance.py)
    balance_keyframes_outside: int = 0
    balance_best_margin_cm: float = 0.0  # the shrunk polygon's inradius less the ZMP allowance; < 0: empty
    balance_shortfall_max_cm: float = 0.0  # the largest distance outside it, or short of its deepest line
    self_distance_min_cm: dict[str, dict[str, float | str]] = field(default_factory=dict)  # group: closest pair
    self_distance_pairs_cm: dict[str, float] = field(default_factory=dict)  # every pair that came within 6 cm
    self_penetrations: int = 0  # control-rate points where some capsule pair overlaps
    resample_correction_rad: float = (
        0.0  # joints changed after the IK (clipping of splined coarse keyframes; 0 on the IK grid)
    )
    warnings: list[str] = field(default_factory=list)
    scale: dict[str, float] = field(default_factory=dict)
    split: str = "off"  # two halves at once (retargeter.py): "joined at <keyframe>", "no join (<gap>)" or "off"
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        t = self.tracking_median_cm
        lines = [
            f"robot {self.robot}: {self.num_points} points, {self.duration_s:.2f} s at {self.control_rate:g} Hz",
            f"  joint-limit violation max   {self.max_joint_limit_violation_rad:.2e} rad",
            f"  joint speed / limit max     {self.max_speed_ratio:.3f} ({self.max_speed_joint})",
            f"  foot slide in contact       max {self.foot_slide_max_cm:.2f} cm, mean {self.foot_slide_mean_cm:.2f} cm",
            f"  ground penetration max      {self.ground_penetration_max_cm:.2f} cm",
            "  tracking median (max) cm    "
            + ", ".join(f"{k} {v:.2f} ({self.tracking_max_cm[k]:.1f})" for k, v in t.items()),
            f"  CoM over support polygon    {100 * self.com_over_support_fraction:.0f}% of contact points, "
            f"min margin {self.com_support_margin_min_cm:.1f} cm",
        ]
        if self.standing and self.balance_best_margin_cm < 0:
            lines.append(f"  standing: balance constraint on; the support shrunk by the margin and the ZMP allowance "
                         f"is empty (best margin {self.balance_best_margin_cm:.1f} cm): CoM at most "
                         f"{self.balance_shortfall_max_cm:.1f} cm short of its deepest line, more than 1 cm in "
                         f"{self.balance_keyframes_outside} keyframes")  # fmt: skip
        elif self.standing:
            lines.append(f"  standing: balance constraint on, CoM outside the shrunk support in "
                         f"{self.balance_keyframes_outside} keyframes (by up to "
                         f"{self.balance_shortfall_max_cm:.1f} cm)")  # fmt: skip
        if self.self_distance_min_cm:
            lines.append(f"  self-distance min (cm), {self.self_penetrations} penetrating points: " + ", ".join(
                f"{g} {d['min_cm']:.1f} ({d['pair']})" for g, d in self.self_distance_min_cm.items()))  # fmt: skip
        if self.clamped:
            lines.append("  limits active (keyframes at position / velocity limit, tracking cost): " + ", ".join(
                f"{j} {c['position_limit']}/{c['velocity_limit']} {c['tracking_cost']:.2g}"
                for j, c in self.clamped.items()))  # fmt: skip
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def convex_hull(points_P2: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise) of 2-D points, monotone chain."""
    pts = sorted(map(tuple, np.round(points_P2, 9)))
    if len(pts) < 3:
        return np.asarray(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1])


def support_margin(point_2: np.ndarray, polygon_P2: np.ndarray) -> float:
    """Signed distance (m) of a point to a convex CCW polygon's boundary: > 0 inside, < 0 outside."""
    edges = np.roll(polygon_P2, -1, axis=0) - polygon_P2
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.linalg.norm(edges, axis=1, keepdims=True)
    inside = -((point_2 - polygon_P2) * normals).sum(axis=1)  # >= 0 for every edge when inside
    if inside.min() >= 0:
        return float(inside.min())
    # outside: distance to the nearest edge segment
    rel = point_2 - polygon_P2
    s = np.clip((rel * edges).sum(1) / (edges * edges).sum(1), 0.0, 1.0)
    return -float(np.linalg.norm(rel - s[:, None] * edges, axis=1).min())


UNMEASURED = {  # a plan retargeted with ``measure=False`` (a coarse plan a finer one replaces)
    "foot_slide_max_cm": float("nan"),
    "foot_slide_mean_cm": float("nan"),
    "ground_penetration_max_cm": float("nan"),
    "com_over_support_fraction": float("nan"),
    "com_support_margin_min_cm": float("nan"),
}


def measure_output(robot: Robot, configurations_NQ: np.ndarray, contact_N2: np.ndarray,
                   collision: SelfCollision | None = None) -> dict:  # fmt: skip
    """Foot slide, penetration and balance of control-rate configurations with contact flags; with
    ``collision``, the smallest capsule distance per pair group (and its pair) and penetrating points."""
    model = robot.model
    data = model.createData()
    sole_N2C3 = np.zeros((len(configurations_NQ), 2, len(robot.sole_corners["left"]), 3))
    com_N3 = np.zeros((len(configurations_NQ), 3))
    pairs = len(collision.pair_P2) if collision is not None else 0
    links = len(collision.frame_ids) if collision is not None else 0
    R_NL33, o_NL3 = np.zeros((len(configurations_NQ), links, 3, 3)), np.zeros((len(configurations_NQ), links, 3))
    for n, q in enumerate(configurations_NQ):
        com_N3[n] = pin.centerOfMass(model, data, q)
        pin.updateFramePlacements(model, data)
        if collision is not None:
            R_NL33[n], o_NL3[n] = collision.link_poses(data)
        for s, side in enumerate(SIDES):
            M = data.oMf[robot.foot_frame_ids[side]]
            sole_N2C3[n, s] = robot.sole_corners[side] @ M.rotation.T + M.translation
    distance_NP = collision.distances_of_poses(R_NL33, o_NL3) if pairs else np.zeros((len(configurations_NQ), 0))
    centre_N23 = sole_N2C3.mean(axis=2)
    slides = []
    for s in range(2):
        for a, b in runs(contact_N2[:, s]):
            if b - a >= 2:
                steps = np.linalg.norm(np.diff(centre_N23[a:b, s, :2], axis=0), axis=1)
                slides.append(steps.sum())
    margins, inside = [], []
    for n in np.flatnonzero(contact_N2.any(axis=1)):
        corners = sole_N2C3[n, contact_N2[n]].reshape(-1, 3)[:, :2]
        margin = support_margin(com_N3[n, :2], convex_hull(corners))
        margins.append(margin)
        inside.append(margin >= 0)
    closest = {}
    if pairs:
        min_P = distance_NP.min(axis=0)
        for group in dict.fromkeys(collision.group_P):
            members = [p for p, g in enumerate(collision.group_P) if g == group]
            best = min(members, key=lambda p: min_P[p])
            closest[group] = {"pair": collision.pair_names[best], "min_cm": 100 * float(min_P[best])}
    return {
        "self_distance_min_cm": closest,
        "self_distance_pairs_cm": {
            collision.pair_names[p]: 100 * float(min_P[p])
            for p in np.flatnonzero(min_P < collision.config.activation_distance)
        }
        if pairs
        else {},  # fmt: skip
        "self_penetrations": int((distance_NP < 0).any(axis=1).sum()) if pairs else 0,
        "penetrating_N": (distance_NP < 0).any(axis=1),  # not a report field: which points (the retargeter pops it)
        "foot_slide_max_cm": 100 * max(slides, default=0.0),
        "foot_slide_mean_cm": 100 * float(np.mean(slides)) if slides else 0.0,
        "ground_penetration_max_cm": 100 * max(0.0, -float(sole_N2C3[..., 2].min())),
        "com_over_support_fraction": float(np.mean(inside)) if inside else 0.0,
        "com_support_margin_min_cm": 100 * min(margins, default=0.0),
    }
