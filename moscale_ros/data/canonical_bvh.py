"""Canonical joint positions -> a BVH clip on the canonical 22-joint skeleton (for export and viewers).

Bone offsets (rest pose): every bone keeps its mean length over the clip. Children of a joint with one
child point along the HumanML3D rest direction (:data:`~moscale_ros.data.skeleton.REST_DIRECTIONS`);
children of a branching joint (pelvis, spine3) keep their first-frame geometry, so the branch is rigid.

Rotations, vectorised over frames: a joint's world rotation maps its children's rest offsets onto
the observed bone vectors: the minimal-arc rotation for one child, the best-fit (Kabsch/SVD) rotation
for several; a leaf inherits its parent's. Local rotation = parent world^T @ world, written as ZXY
Euler angles. FK of the result reproduces positions exactly when bone lengths are constant (real mocap
converted with a skeleton map) and to within the bone-length variation otherwise (generated motion).
The shipped ``canonical`` skeleton map reads these files back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moscale_common.errors import DataError
from moscale_common.skeleton import CANONICAL_FPS, CANONICAL_JOINTS, CANONICAL_PARENTS, NUM_JOINTS
from moscale_ros.data.bvh import BvhMotion, matrix_to_euler, write_bvh
from moscale_ros.data.rotations import kabsch, rotation_between, unit
from moscale_ros.data.skeleton import REST_DIRECTIONS

ROTATION_ORDER = "ZXY"


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {j: [] for j in range(NUM_JOINTS)}
    for j, p in enumerate(CANONICAL_PARENTS):
        if p >= 0:
            children[p].append(j)
    return children


def joints_to_bvh(joints_T223: np.ndarray, fps: float = CANONICAL_FPS, scale: float = 100.0) -> BvhMotion:
    """A :class:`BvhMotion` of the canonical skeleton reproducing ``joints_T223`` (metres, y-up);
    ``scale`` converts metres to the file's unit (100: centimetres)."""
    j = np.asarray(joints_T223, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (NUM_JOINTS, 3) or j.shape[0] < 1:
        raise DataError(f"joints: expected shape (T, {NUM_JOINTS}, 3), got {tuple(j.shape)}")
    if not np.isfinite(j).all():
        raise DataError("joints: non-finite (NaN or inf) positions")
    j = j * scale
    T = j.shape[0]
    children = _children()
    parents = np.asarray(CANONICAL_PARENTS)
    bones = j[:, 1:] - j[:, parents[1:]]  # (T, 21, 3), bone of joint k + 1
    lengths = np.linalg.norm(bones, axis=-1).mean(axis=0)
    offsets = np.zeros((NUM_JOINTS, 3))
    for kids in children.values():
        for c in kids:
            if len(kids) == 1:
                offsets[c] = REST_DIRECTIONS[c] * lengths[c - 1]
            else:
                offsets[c] = unit(bones[0, c - 1]) * lengths[c - 1]
    world = np.empty((T, NUM_JOINTS, 3, 3))
    for k in range(NUM_JOINTS):  # parents precede children
        kids = children[k]
        if not kids:
            world[:, k] = world[:, parents[k]]
        elif len(kids) == 1:
            c = kids[0]
            rest = np.broadcast_to(unit(offsets[c]), (T, 3))
            world[:, k] = rotation_between(rest, unit(bones[:, c - 1]))
        else:
            world[:, k] = kabsch(offsets[kids], bones[:, [c - 1 for c in kids]])
    local = world.copy()
    local[:, 1:] = np.swapaxes(world[:, parents[1:]], -1, -2) @ world[:, 1:]
    euler = matrix_to_euler(local.reshape(-1, 3, 3), ROTATION_ORDER).reshape(T, NUM_JOINTS, 3)
    rotation_channels = [f"{axis}rotation" for axis in ROTATION_ORDER]
    channels = [["Xposition", "Yposition", "Zposition", *rotation_channels]] + [rotation_channels] * (NUM_JOINTS - 1)
    values = np.concatenate([j[:, 0], euler.reshape(T, -1)], axis=1)
    end_sites = {k: np.zeros(3) for k in range(NUM_JOINTS) if not children[k]}
    return BvhMotion(
        names=list(CANONICAL_JOINTS),
        parents=parents.astype(np.int64),
        offsets=offsets,
        channels=[list(c) for c in channels],
        frame_time=1.0 / fps,
        values=values,
        end_sites=end_sites,
        source="<canonical joints>",
    )


def write_canonical_bvh(path: str | Path, joints_T223: np.ndarray, fps: float = CANONICAL_FPS) -> Path:
    """Write canonical joints (T, 22, 3) in metres as a BVH file in centimetres."""
    return write_bvh(path, joints_to_bvh(joints_T223, fps))
