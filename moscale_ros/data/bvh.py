"""BVH motion files: reader, writer and vectorised forward kinematics.

A BVH file is a joint hierarchy (``OFFSET`` from the parent, ``CHANNELS`` in any order, ``End Site``
leaves) followed by ``Frames`` rows of channel values. Conventions implemented here (those of
MotionBuilder, Blender and the CMU/Bandai exports):

* rotation channels listed as ``Zrotation Xrotation Yrotation`` mean ``R = Rz @ Rx @ Ry`` (intrinsic
  rotations in the listed order, degrees), applied to column vectors;
* a joint's local translation is its ``OFFSET``; each position channel present *replaces* the
  offset component on that axis (root translation, or constant offsets of 6-channel rigs);
* world transform of joint j: ``G_j = G_parent(j) @ [R_j | t_j]``; world position = translation of G_j.

Units are whatever the file uses; a skeleton map converts them (see :mod:`moscale_ros.data.skeleton`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from moscale_common.errors import DataError

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
_AXIS_INDEX = {"X": 0, "Y": 1, "Z": 2}


@dataclass
class BvhMotion:
    """A parsed BVH clip.

    ``names[j]``, ``parents[j]`` (-1 for the root; parents precede children), ``offsets`` (J, 3),
    ``channels[j]`` (channel names of joint j in file order), ``end_sites`` (joint index -> End Site
    offset), ``frame_time`` in seconds and ``values`` (F, C): the motion rows, one column per channel in
    file order (joint by joint).
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    values: np.ndarray
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def channel_offsets(self) -> np.ndarray:
        """Column of the first channel of each joint in ``values``, shape (J+1,) (cumulative)."""
        counts = [len(c) for c in self.channels]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(f"{self.source}: no joint named {name!r}; joints: {', '.join(self.names)}") from None


def _axis_rotations(angles_F_rad: np.ndarray, axis: int) -> np.ndarray:
    """Rotation matrices (F, 3, 3) about one coordinate axis."""
    c, s = np.cos(angles_F_rad), np.sin(angles_F_rad)
    R = np.zeros(angles_F_rad.shape + (3, 3), dtype=np.float64)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def euler_to_matrix(angles_FK_deg: np.ndarray, order: str) -> np.ndarray:
    """``R = R_order[0] @ R_order[1] @ ...`` for intrinsic Euler angles in degrees; (F, 3, 3)."""
    F = angles_FK_deg.shape[0]
    R = np.broadcast_to(np.eye(3), (F, 3, 3)).copy()
    radians = np.deg2rad(angles_FK_deg.astype(np.float64))
    for k, axis_letter in enumerate(order):
        R = R @ _axis_rotations(radians[:, k], _AXIS_INDEX[axis_letter])
    return R


def matrix_to_euler(R_F33: np.ndarray, order: str) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix` (degrees, (F, 3)); uses scipy's intrinsic convention."""
    return Rotation.from_matrix(R_F33).as_euler(order.upper(), degrees=True)


def local_transforms(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame local rotations (F, J, 3, 3) and translations (F, J, 3) of every joint."""
    F, J = motion.num_frames, motion.num_joints
    starts = motion.channel_offsets()
    rotations = np.broadcast_to(np.eye(3), (F, J, 3, 3)).copy()
    translations = np.broadcast_to(motion.offsets.astype(np.float64), (F, J, 3)).copy()
    for j, chans in enumerate(motion.channels):
        rot_cols, rot_order = [], ""
        for k, name in enumerate(chans):
            column = starts[j] + k
            if name in POSITION_CHANNELS:
                translations[:, j, _AXIS_INDEX[name[0]]] = motion.values[:, column]
            elif name in ROTATION_CHANNELS:
                rot_cols.append(column)
                rot_order += name[0]
        if rot_cols:
            rotations[:, j] = euler_to_matrix(motion.values[:, rot_cols], rot_order)
    return rotations, translations


def chain_transforms(parents: np.ndarray, local_R: np.ndarray, local_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World positions (F, J, 3) and rotations (F, J, 3, 3) from local rotations/translations:
    ``R_j = R_parent @ r_j``, ``p_j = p_parent + R_parent @ t_j`` (parents precede children)."""
    F, J = local_R.shape[:2]
    world_R = np.empty((F, J, 3, 3))
    world_p = np.empty((F, J, 3))
    for j in range(J):
        p = int(parents[j])
        if p < 0:
            world_R[:, j] = local_R[:, j]
            world_p[:, j] = local_t[:, j]
        else:
            world_R[:, j] = world_R[:, p] @ local_R[:, j]
            world_p[:, j] = world_p[:, p] + np.einsum("fab,fb->fa", world_R[:, p], local_t[:, j])
    return world_p, world_R


def forward_kinematics(motion: BvhMotion, return_rotations: bool = False):
    """World joint positions (F, J, 3) in the file's units (and world rotations (F, J, 3, 3) if asked).

    Vectorised over frames; one pass over the joints in file order (parents come first).
    """
    world_p, world_R = chain_transforms(motion.parents, *local_transforms(motion))
    return (world_p, world_R) if return_rotations else world_p


def resampled_forward_kinematics(motion: BvhMotion, fps: float) -> np.ndarray:
    """World positions (T, J, 3) at ``fps``, sampled at ``k / fps`` inside the clip: local rotations
    are slerped and translations lerped between the two nearest frames, then chained (bone lengths
    stay exact, unlike interpolating positions)."""
    local_R, local_t = local_transforms(motion)
    F, J = local_R.shape[:2]
    if abs(fps - motion.fps) < 1e-6:
        return chain_transforms(motion.parents, local_R, local_t)[0]
    duration = (F - 1) * motion.frame_time
    times = np.arange(int(np.floor(duration * fps + 1e-6)) + 1) / fps
    pos = times / motion.frame_time
    lo = np.clip(np.floor(pos + 1e-9).astype(np.int64), 0, F - 1)
    hi = np.clip(lo + 1, 0, F - 1)
    w = np.clip(pos - lo, 0.0, 1.0)
    R_lo = Rotation.from_matrix(local_R[lo].reshape(-1, 3, 3))
    R_hi = Rotation.from_matrix(local_R[hi].reshape(-1, 3, 3))
    step = (R_lo.inv() * R_hi).as_rotvec() * np.repeat(w, J)[:, None]
    R = (R_lo * Rotation.from_rotvec(step)).as_matrix().reshape(len(times), J, 3, 3)
    t = (1.0 - w)[:, None, None] * local_t[lo] + w[:, None, None] * local_t[hi]
    return chain_transforms(motion.parents, R, t)[0]


# --------------------------------------------------------------------------------------------- reading

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _float(token: str, where: str) -> float:
    if not _NUMBER.match(token):
        raise DataError(f"{where}: expected a number, got {token!r}")
    return float(token)


def parse_bvh(text: str, source: str = "<memory>") -> BvhMotion:
    """Parse BVH text; any malformed, truncated or non-finite content raises DataError naming ``source``."""
    head, sep, body = text.partition("MOTION")
    if not sep:
        if "HIERARCHY" not in text:
            raise DataError(f"{source}: not a BVH file (no HIERARCHY section)")
        raise DataError(f"{source}: truncated BVH file (no MOTION section)")
    lines = head.splitlines()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    end_sites: dict[int, np.ndarray] = {}
    stack: list[tuple[int, bool]] = []  # open blocks: (joint index, is its End Site)
    pending: tuple[int, bool] | None = None  # block whose "{" is expected next
    seen_hierarchy = False
    for line_no, raw in enumerate(lines, start=1):
        tokens = raw.split()
        if not tokens:
            continue
        where = f"{source}, line {line_no}"
        key = tokens[0]
        if key == "HIERARCHY":
            seen_hierarchy = True
        elif key in ("ROOT", "JOINT"):
            if len(tokens) < 2:
                raise DataError(f"{where}: {key} without a name")
            if key == "JOINT" and not stack:
                raise DataError(f"{where}: JOINT outside the ROOT block")
            if key == "ROOT" and stack:
                raise DataError(f"{where}: ROOT inside another joint")
            name = " ".join(tokens[1:])
            if name in names:
                raise DataError(f"{where}: duplicate joint name {name!r}")
            parent = stack[-1][0] if stack else -1
            if stack and stack[-1][1]:
                raise DataError(f"{where}: JOINT inside an End Site")
            names.append(name)
            parents.append(parent)
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            pending = (len(names) - 1, False)
        elif key == "End":
            if not stack or stack[-1][1]:
                raise DataError(f"{where}: End Site outside a joint")
            pending = (stack[-1][0], True)
        elif key == "{":
            if pending is None:
                raise DataError(f"{where}: unexpected '{{'")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                raise DataError(f"{where}: unbalanced '}}'")
            stack.pop()
        elif key == "OFFSET":
            if len(tokens) != 4:
                raise DataError(f"{where}: OFFSET needs 3 numbers, got {len(tokens) - 1}")
            vec = [_float(t, where) for t in tokens[1:]]
            if not stack:
                raise DataError(f"{where}: OFFSET outside a joint")
            joint, is_end_site = stack[-1]
            if is_end_site:
                end_sites[joint] = np.asarray(vec, dtype=np.float64)
            else:
                offsets[joint] = vec
        elif key == "CHANNELS":
            if not stack or stack[-1][1]:
                raise DataError(f"{where}: CHANNELS outside a joint")
            try:
                count = int(tokens[1])
            except (IndexError, ValueError):
                raise DataError(f"{where}: CHANNELS needs a count") from None
            chans = tokens[2:]
            if len(chans) != count:
                raise DataError(f"{where}: CHANNELS says {count} but lists {len(chans)}")
            bad = [c for c in chans if c not in POSITION_CHANNELS + ROTATION_CHANNELS]
            if bad:
                raise DataError(f"{where}: unknown channel(s) {bad}")
            channels[stack[-1][0]] = chans
        else:
            raise DataError(f"{where}: unexpected token {key!r}")
    if not seen_hierarchy or not names:
        raise DataError(f"{source}: no joint hierarchy found")
    if stack:
        raise DataError(f"{source}: hierarchy not closed ({len(stack)} open block(s))")

    motion_lines = body.strip().split("\n", 2)
    if len(motion_lines) < 2:
        raise DataError(f"{source}: truncated BVH file (MOTION header incomplete)")
    frames_match = re.match(r"^\s*Frames:\s*(\d+)\s*$", motion_lines[0])
    time_match = re.match(r"^\s*Frame Time:\s*(\S+)\s*$", motion_lines[1])
    if not frames_match or not time_match:
        raise DataError(f"{source}: malformed MOTION header (expected 'Frames: N' and 'Frame Time: dt')")
    num_frames = int(frames_match.group(1))
    frame_time = _float(time_match.group(1), f"{source}: Frame Time")
    if not frame_time > 0:
        raise DataError(f"{source}: Frame Time must be positive, got {frame_time}")
    if num_frames == 0:
        raise DataError(f"{source}: zero-length clip (Frames: 0)")
    num_channels = sum(len(c) for c in channels)
    data = motion_lines[2] if len(motion_lines) > 2 else ""
    try:
        values = np.array(data.split(), dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{source}: corrupt motion data ({exc})") from None
    expected = num_frames * num_channels
    if values.size < expected:
        raise DataError(
            f"{source}: truncated motion data: {values.size} values for {num_frames} frames x "
            f"{num_channels} channels ({expected} expected)"
        )
    if values.size > expected:
        raise DataError(
            f"{source}: corrupt motion data: {values.size} values, but {num_frames} frames x "
            f"{num_channels} channels = {expected}"
        )
    values = values.reshape(num_frames, num_channels)
    if not np.isfinite(values).all():
        bad_frame = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise DataError(f"{source}: non-finite value (NaN or inf) in frame {bad_frame}")
    offsets = np.asarray(offsets, dtype=np.float64)
    if not np.isfinite(offsets).all():
        raise DataError(f"{source}: non-finite OFFSET in the hierarchy")
    return BvhMotion(
        names=names,
        parents=np.asarray(parents, dtype=np.int64),
        offsets=offsets,
        channels=channels,
        frame_time=frame_time,
        values=values,
        end_sites=end_sites,
        source=source,
    )


def read_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file (see :func:`parse_bvh`); unreadable or invalid files raise DataError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read BVH file ({exc.strerror or exc})") from None
    return parse_bvh_bytes(raw, str(path))


def parse_bvh_bytes(raw: bytes, source: str) -> BvhMotion:
    """Decode (UTF-8, BOM tolerated) and parse BVH bytes."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a text BVH file (binary or corrupt content)") from None
    return parse_bvh(text, source)


# --------------------------------------------------------------------------------------------- writing


def _fmt(vec) -> str:
    return " ".join(f"{float(v):.6f}" for v in vec)


def format_bvh(motion: BvhMotion, precision: int = 6) -> str:
    """BVH text of ``motion`` (hierarchy then motion rows with ``precision`` decimals).

    The hierarchy is written depth-first (the only order BVH can express); channel columns are
    reordered to match, so reading the file back gives the same motion with joints in that order."""
    children: dict[int, list[int]] = {j: [] for j in range(motion.num_joints)}
    for j, p in enumerate(motion.parents):
        if p >= 0:
            children[int(p)].append(j)
    out = ["HIERARCHY"]
    emitted: list[int] = []  # depth-first order: the order of the channel columns in the file

    def emit(j: int, depth: int) -> None:
        emitted.append(j)
        pad = "  " * depth
        out.append(f"{pad}{'ROOT' if motion.parents[j] < 0 else 'JOINT'} {motion.names[j]}")
        out.append(f"{pad}{{")
        out.append(f"{pad}  OFFSET {_fmt(motion.offsets[j])}")
        if motion.channels[j]:
            out.append(f"{pad}  CHANNELS {len(motion.channels[j])} {' '.join(motion.channels[j])}")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j] or j in motion.end_sites:
            site = motion.end_sites.get(j, np.zeros(3))
            out.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_fmt(site)}", f"{pad}  }}"])
        out.append(f"{pad}}}")

    roots = [j for j in range(motion.num_joints) if motion.parents[j] < 0]
    if len(roots) != 1:
        raise DataError(f"{motion.source}: a BVH needs exactly one root joint, found {len(roots)}")
    emit(roots[0], 0)
    out += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {motion.frame_time:.8f}"]
    starts = motion.channel_offsets()
    columns = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in emitted]).astype(np.int64)
    rows = np.char.mod(f"%.{precision}f", np.round(motion.values[:, columns], precision) + 0.0)
    out.extend(" ".join(row) for row in rows)
    return "\n".join(out) + "\n"


def write_bvh(path: str | Path, motion: BvhMotion, precision: int = 6) -> Path:
    """Write ``motion`` as a BVH file (parents must precede children, one root)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_bvh(motion, precision), encoding="utf-8")
    return path
