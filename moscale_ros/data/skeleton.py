"""The canonical human skeleton and skeleton maps from source rigs onto it.

Canonical skeleton: HumanML3D's 22 SMPL joints (:data:`CANONICAL_JOINTS`, tree
:data:`CANONICAL_PARENTS`), y-up, metres, 20 fps, ground at y = 0, the first frame's root at
x = z = 0 and facing +z (the character's left is +x).

A skeleton map (YAML under ``config/skeletons/``) names, for every canonical joint, either a joint
of the source rig or a point interpolated between two of them::

    name: my_rig
    unit_to_metres: 0.01        # source units -> metres (cm: 0.01, m: 1, inches: 0.0254)
    up_axis: y                  # y or z; left out: detected from the motion (plausibility.py)
    joints:
      pelvis: Hips
      spine2: {lerp: [Spine, Chest], t: 0.5}   # (1 - t) * Spine + t * Chest
      ...
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moscale_common.config import load_yaml
from moscale_common.errors import ConfigError, DataError
from moscale_common.paths import resource
from moscale_common.skeleton import CANONICAL_FPS, CANONICAL_JOINTS, NUM_JOINTS
from moscale_ros.data.bvh import read_bvh, resampled_forward_kinematics
from moscale_ros.data.plausibility import check_plausible, detect_up_axis

# Kinematic chains (HumanML3D t2m layout): right leg, left leg, spine to head, right arm, left arm.
KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)
# Rest-pose bone directions (unit offset of each joint from its parent, HumanML3D t2m convention):
# legs down, spine up, arms out sideways (left = +x), feet forward (+z).
REST_DIRECTIONS = np.array(
    [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
     [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
     [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]],
    dtype=np.float64,
)  # fmt: skip
LEFT_RIGHT_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21))
FOOT_JOINTS_LEFT = (7, 10)  # ankle, ball of foot
FOOT_JOINTS_RIGHT = (8, 11)
HIP_JOINTS = (2, 1)  # right, left
SHOULDER_JOINTS = (17, 16)  # right, left


def mirror_index() -> np.ndarray:
    """Permutation swapping left and right joints."""
    perm = np.arange(NUM_JOINTS)
    for a, b in LEFT_RIGHT_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def facing_directions(joints_T223: np.ndarray) -> np.ndarray:
    """Unit horizontal facing per frame (T, 3): ``up x across`` with ``across`` from left to right
    hips plus left to right shoulders (HumanML3D's definition)."""
    j = np.asarray(joints_T223, dtype=np.float64)
    across = (j[:, HIP_JOINTS[0]] - j[:, HIP_JOINTS[1]]) + (j[:, SHOULDER_JOINTS[0]] - j[:, SHOULDER_JOINTS[1]])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    forward[:, 1] = 0.0
    norm = np.linalg.norm(forward, axis=-1, keepdims=True)
    return forward / np.maximum(norm, 1e-9)


def yaw_rotation(angle_rad: float | np.ndarray) -> np.ndarray:
    """Rotation matrix/matrices about +y: ``(x, z) -> (x cos + z sin, -x sin + z cos)``."""
    a = np.asarray(angle_rad, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 2], R[..., 1, 1], R[..., 2, 0], R[..., 2, 2] = c, s, 1.0, -s, c
    return R


def canonicalize(joints_T223: np.ndarray) -> np.ndarray:
    """Put y-up metric joints on the floor (lowest joint of the clip at y = 0), the first frame's
    root at x = z = 0 and the first frame facing +z (rotation about y)."""
    j = np.asarray(joints_T223, dtype=np.float64).copy()
    j[..., 1] -= j[..., 1].min()
    j[..., [0, 2]] -= j[0, 0, [0, 2]]
    forward = facing_directions(j[:1])[0]
    heading = np.arctan2(forward[0], forward[2])
    return j @ yaw_rotation(-heading).T


def resample(joints_TJ3: np.ndarray, src_fps: float, dst_fps: float = CANONICAL_FPS) -> np.ndarray:
    """Linear interpolation of positions at ``k / dst_fps`` for every k inside the clip."""
    T = joints_TJ3.shape[0]
    if abs(src_fps - dst_fps) < 1e-6:
        return joints_TJ3.copy()
    duration = (T - 1) / src_fps
    times = np.arange(int(np.floor(duration * dst_fps + 1e-6)) + 1) / dst_fps
    pos = times * src_fps
    lo = np.clip(np.floor(pos).astype(np.int64), 0, T - 1)
    hi = np.clip(lo + 1, 0, T - 1)
    w = (pos - lo)[:, None, None]
    return (1.0 - w) * joints_TJ3[lo] + w * joints_TJ3[hi]


# ----------------------------------------------------------------------------------- skeleton maps


@dataclass(frozen=True)
class JointSource:
    """Canonical joint = ``(1 - t) * a + t * b`` of source joints ``a`` and ``b`` (``b = a``, t = 0 for
    a direct correspondence)."""

    a: str
    b: str
    t: float = 0.0


@dataclass(frozen=True)
class SkeletonMap:
    """A source rig's correspondence to the canonical skeleton (see module docstring)."""

    name: str
    unit_to_metres: float
    up_axis: str
    joints: dict[str, JointSource]
    path: str = "<memory>"

    def source_joints(self) -> set[str]:
        return {n for s in self.joints.values() for n in (s.a, s.b)}

    def matches(self, joint_names: list[str] | tuple[str, ...]) -> bool:
        return self.source_joints() <= set(joint_names)

    def apply(self, world_FJ3: np.ndarray, joint_names: list[str], source: str = "<memory>") -> np.ndarray:
        """Canonical (F, 22, 3) positions in metres, y-up, from source-rig world positions."""
        index = {n: i for i, n in enumerate(joint_names)}
        missing = sorted(self.source_joints() - set(index))
        if missing:
            raise DataError(
                f"{source}: skeleton map {self.name!r} needs joint(s) {', '.join(missing)} that the rig lacks; "
                f"the rig's joints: {', '.join(joint_names)}"
            )
        out = np.empty((world_FJ3.shape[0], NUM_JOINTS, 3))
        for k, name in enumerate(CANONICAL_JOINTS):
            s = self.joints[name]
            out[:, k] = (1.0 - s.t) * world_FJ3[:, index[s.a]] + s.t * world_FJ3[:, index[s.b]]
        out *= self.unit_to_metres
        up = self.up_axis if self.up_axis != "auto" else detect_up_axis(out, source)
        if up == "z":  # rotate -90 deg about x: z-up -> y-up
            out = np.stack([out[..., 0], out[..., 2], -out[..., 1]], axis=-1)
        return out


def parse_skeleton_map(data: dict, where: str = "<memory>") -> SkeletonMap:
    """Validate a skeleton-map mapping; problems raise ConfigError naming ``where`` and the key."""
    allowed = {"name", "unit_to_metres", "up_axis", "joints", "description"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    name = data.get("name", Path(where).stem)
    scale = data.get("unit_to_metres")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ConfigError(f"{where}: unit_to_metres must be a positive number, got {scale!r}")
    up = data.get("up_axis", "auto")
    if up not in ("y", "z", "auto"):
        raise ConfigError(f"{where}: up_axis must be 'y', 'z' or 'auto' (detected; the default), got {up!r}")
    joints = data.get("joints")
    if not isinstance(joints, dict):
        raise ConfigError(f"{where}: 'joints' must map each canonical joint to a source joint")
    missing = [n for n in CANONICAL_JOINTS if n not in joints]
    extra = sorted(set(joints) - set(CANONICAL_JOINTS))
    if missing or extra:
        raise ConfigError(
            f"{where}: joints must name exactly the 22 canonical joints"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    parsed: dict[str, JointSource] = {}
    for key, value in joints.items():
        if isinstance(value, str):
            parsed[key] = JointSource(value, value, 0.0)
            continue
        ok = isinstance(value, dict) and set(value) == {"lerp", "t"} and isinstance(value["lerp"], list)
        ok = ok and len(value["lerp"]) == 2 and all(isinstance(v, str) for v in value["lerp"])
        ok = ok and isinstance(value["t"], (int, float)) and not isinstance(value["t"], bool)
        if not ok:
            raise ConfigError(
                f"{where}: joints.{key}: expected a joint name or {{lerp: [A, B], t: 0..1}}, got {value!r}"
            )
        parsed[key] = JointSource(value["lerp"][0], value["lerp"][1], float(value["t"]))
    return SkeletonMap(name=str(name), unit_to_metres=float(scale), up_axis=up, joints=parsed, path=where)


def skeleton_maps_dir() -> Path:
    return resource("config/skeletons")


@functools.lru_cache(maxsize=64)
def _load_map_file(path: str, mtime_ns: int) -> SkeletonMap:
    return parse_skeleton_map(load_yaml(path), path)


def load_skeleton_map(name_or_path: str | Path) -> SkeletonMap:
    """A shipped map by name (``bandai_namco``) or a YAML file path (parsed once per file version)."""
    path = Path(name_or_path)
    if not path.suffix:
        candidate = skeleton_maps_dir() / f"{name_or_path}.yaml"
        if not candidate.is_file():
            known = ", ".join(sorted(p.stem for p in skeleton_maps_dir().glob("*.yaml")))
            raise ConfigError(f"unknown skeleton map {str(name_or_path)!r}; shipped maps: {known}")
        path = candidate
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read skeleton map ({exc.strerror or exc})") from None
    return _load_map_file(str(path), mtime_ns)


def shipped_skeleton_maps() -> list[SkeletonMap]:
    return [load_skeleton_map(p) for p in sorted(skeleton_maps_dir().glob("*.yaml"))]


def find_skeleton_map(joint_names: list[str], source: str = "<memory>") -> SkeletonMap:
    """The first shipped map whose source joints the rig has; otherwise DataError listing the rig's
    joints (so the user can write a map for it)."""
    maps = shipped_skeleton_maps()
    for skeleton_map in maps:
        if skeleton_map.matches(joint_names):
            return skeleton_map
    raise DataError(
        f"{source}: unknown rig: no skeleton map in {skeleton_maps_dir()} fits its joints "
        f"({', '.join(joint_names)}). Write a map for it (see config/skeletons/bandai_namco.yaml) and "
        f"pass it with --skeleton-map; known maps: {', '.join(m.name for m in maps) or 'none'}"
    )


def bvh_motion_to_canonical(motion, skeleton_map: SkeletonMap | str | Path | None = None) -> np.ndarray:
    """Canonical joints (T, 22, 3) float32 at 20 fps from a parsed :class:`~moscale_ros.data.bvh.BvhMotion`:
    FK resampled to 20 fps in rotation space, skeleton map (units, up axis, joints), then
    :func:`canonicalize`."""
    if skeleton_map is None:
        skeleton_map = find_skeleton_map(motion.names, motion.source)
    elif not isinstance(skeleton_map, SkeletonMap):
        skeleton_map = load_skeleton_map(skeleton_map)
    if not skeleton_map.matches(motion.names):  # check the rig first
        skeleton_map.apply(np.zeros((1, motion.num_joints, 3)), motion.names, motion.source)
    world = resampled_forward_kinematics(motion, CANONICAL_FPS)
    joints = skeleton_map.apply(world, motion.names, motion.source)
    if joints.shape[0] < 2:
        raise DataError(f"{motion.source}: clip too short ({motion.num_frames} frame(s) at {motion.fps:.1f} fps)")
    check_plausible(joints, f"{motion.source} (skeleton map {skeleton_map.name!r})", skeleton_map.up_axis)
    joints = canonicalize(joints)
    if not np.isfinite(joints).all():
        raise DataError(f"{motion.source}: conversion produced non-finite joint positions")
    return joints.astype(np.float32)


def bvh_to_canonical(
    path: str | Path, skeleton_map: SkeletonMap | str | Path | None = None
) -> tuple[np.ndarray, float]:
    """Read a BVH file and return ``(joints_T223 float32, 20.0)`` on the canonical skeleton.

    ``skeleton_map`` is a :class:`SkeletonMap`, a shipped map name, a YAML path, or ``None`` to pick
    the shipped map that fits the rig (an unknown rig raises DataError listing its joint names).
    """
    return bvh_motion_to_canonical(read_bvh(path), skeleton_map), CANONICAL_FPS
