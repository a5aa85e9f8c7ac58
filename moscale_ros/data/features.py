"""HumanML3D's 263-d motion features from canonical joint positions, and back.

Layout of one frame t (T joint frames give T - 1 feature frames, each using frames t and t + 1):

======  ====  ===================================================================================
slice   size  meaning
======  ====  ===================================================================================
0       1     root yaw velocity, stored as a *half* angle: (phi[t+1] - phi[t]) / 2 (rad/frame)
1:3     2     root xz velocity, in the root frame of t + 1: R(phi[t+1]) (r[t+1] - r[t])
3       1     root height r_y[t]
4:67    63    joints 1..21 relative to the root's xz, rotated into the root frame: R(phi[t]) (p - r_xz)
67:193  126   joints 1..21 local rotations, 6D (first two columns of the rotation matrix), see
              :func:`local_rotations_6d` (not used by the inverse)
193:259 66    joints 0..21 velocities in the root frame of t: R(phi[t]) (p[t+1] - p[t])
259:263 4     foot contacts (left ankle, left foot, right ankle, right foot): |dp|^2 < 0.002 m^2/frame
======  ====  ===================================================================================

``phi[t]`` is the yaw rotation (about +y) taking the body's facing to +z, with the facing smoothed
over time (Gaussian, sigma 20 frames, as in HumanML3D) and offset so that ``phi[0]`` takes frame 0's
unsmoothed facing to +z. The features are therefore invariant to a global yaw and xz shift of the
input. The inverse (:func:`features_to_joints`, HumanML3D's ``recover_from_ric``) integrates yaw and
root velocities from the identity, so it returns the motion with frame 0 facing +z and its root at
x = z = 0: for canonical input (:func:`moscale_ros.data.skeleton.canonicalize`) that is the input
itself, up to float precision.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from moscale_common.errors import DataError
from moscale_common.skeleton import NUM_JOINTS
from moscale_ros.data.rotations import rotation_between, unit
from moscale_ros.data.skeleton import (
    FOOT_JOINTS_LEFT,
    FOOT_JOINTS_RIGHT,
    KINEMATIC_CHAINS,
    REST_DIRECTIONS,
    facing_directions,
    yaw_rotation,
)

FEATURE_DIM = 263
FOOT_CONTACT_THRESHOLD = 0.002  # squared displacement per 20 fps frame, m^2 (HumanML3D)
FACING_SMOOTH_SIGMA = 20.0  # frames

# Feature groups: name -> slice. Normalisation averages the std inside each group.
ROOT_YAW_VEL = slice(0, 1)
ROOT_XZ_VEL = slice(1, 3)
ROOT_HEIGHT = slice(3, 4)
RIC = slice(4, 4 + (NUM_JOINTS - 1) * 3)
ROT6D = slice(RIC.stop, RIC.stop + (NUM_JOINTS - 1) * 6)
LOCAL_VEL = slice(ROT6D.stop, ROT6D.stop + NUM_JOINTS * 3)
FOOT_CONTACT = slice(LOCAL_VEL.stop, LOCAL_VEL.stop + 4)
FEATURE_GROUPS = {
    "root_yaw_vel": ROOT_YAW_VEL,
    "root_xz_vel": ROOT_XZ_VEL,
    "root_height": ROOT_HEIGHT,
    "ric": RIC,
    "rot6d": ROT6D,
    "local_vel": LOCAL_VEL,
    "foot_contact": FOOT_CONTACT,
}
assert FOOT_CONTACT.stop == FEATURE_DIM


def root_yaw(joints_T223: np.ndarray) -> np.ndarray:
    """phi[t] (T,): minus the heading of the smoothed facing, offset so that phi[0] is minus the
    *unsmoothed* heading of frame 0 (phi[0] = 0 for canonical input)."""
    raw = facing_directions(joints_T223)
    smooth = gaussian_filter1d(raw, FACING_SMOOTH_SIGMA, axis=0, mode="nearest") if raw.shape[0] > 1 else raw
    heading = np.unwrap(np.arctan2(smooth[:, 0], smooth[:, 2]))
    heading0 = np.arctan2(raw[0, 0], raw[0, 2])
    return -(heading - heading[0] + heading0)


def local_rotations_6d(joints_T223: np.ndarray, phi_T: np.ndarray) -> np.ndarray:
    """Joints 1..21 local rotations as 6D (T, 21, 6), HumanML3D-style inverse kinematics done in the
    root's facing frame (so invariant to global yaw): along each kinematic chain, starting from the
    identity, a bone's frame is the minimal-arc rotation from its rest direction to its direction
    R(phi) (p_child - p_parent); its local rotation is parent frame^T @ frame."""
    T = joints_T223.shape[0]
    facing = np.einsum("tab,tjb->tja", yaw_rotation(phi_T), joints_T223)
    local = np.broadcast_to(np.eye(3), (T, NUM_JOINTS, 3, 3)).copy()
    for chain in KINEMATIC_CHAINS:
        frame = local[:, 0]
        for parent, child in zip(chain[:-1], chain[1:]):
            rest = np.broadcast_to(REST_DIRECTIONS[child], (T, 3))
            bone_frame = rotation_between(rest, unit(facing[:, child] - facing[:, parent]))
            local[:, child] = np.swapaxes(frame, -1, -2) @ bone_frame
            frame = bone_frame
    return np.concatenate([local[:, 1:, :, 0], local[:, 1:, :, 1]], axis=-1)


def joints_to_features(joints_T223: np.ndarray) -> np.ndarray:
    """HumanML3D 263-d features (T - 1, 263) float32 of canonical joint positions (T, 22, 3)."""
    j = np.asarray(joints_T223, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"joints: expected shape (T, {NUM_JOINTS}, 3), got {tuple(j.shape)}")
    if j.shape[0] < 2:
        raise DataError(f"joints: need at least 2 frames for features, got {j.shape[0]}")
    if not np.isfinite(j).all():
        raise DataError("joints: non-finite (NaN or inf) positions")
    T = j.shape[0]
    phi = root_yaw(j)
    R = yaw_rotation(phi)  # (T, 3, 3)
    root = j[:, 0]

    delta = j[1:] - j[:-1]
    contact_left = (np.sum(delta[:, FOOT_JOINTS_LEFT] ** 2, axis=-1) < FOOT_CONTACT_THRESHOLD).astype(np.float64)
    contact_right = (np.sum(delta[:, FOOT_JOINTS_RIGHT] ** 2, axis=-1) < FOOT_CONTACT_THRESHOLD).astype(np.float64)

    relative = j.copy()
    relative[..., 0] -= root[:, None, 0]
    relative[..., 2] -= root[:, None, 2]
    ric = np.einsum("tab,tjb->tja", R, relative)[:, 1:].reshape(T, -1)

    yaw_vel = (phi[1:] - phi[:-1])[:, None] / 2.0
    root_vel = np.einsum("tab,tb->ta", R[1:], root[1:] - root[:-1])[:, [0, 2]]
    local_vel = np.einsum("tab,tjb->tja", R[:-1], delta).reshape(T - 1, -1)
    rot6d = local_rotations_6d(j, phi).reshape(T, -1)

    feats = np.concatenate(
        [yaw_vel, root_vel, root[:-1, 1:2], ric[:-1], rot6d[:-1], local_vel, contact_left, contact_right], axis=-1
    )
    return feats.astype(np.float32)


def features_to_joints(feats_T263: np.ndarray) -> np.ndarray:
    """Joint positions (T, 22, 3) float32 from features (HumanML3D ``recover_from_ric``)."""
    f = np.asarray(feats_T263, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != FEATURE_DIM:
        raise DataError(f"features: expected shape (T, {FEATURE_DIM}), got {tuple(f.shape)}")
    T = f.shape[0]
    half_angle = np.zeros(T)
    half_angle[1:] = np.cumsum(f[:-1, 0])
    R_inv = yaw_rotation(-2.0 * half_angle)
    step = np.zeros((T, 3))
    step[1:, [0, 2]] = f[:-1, 1:3]
    root = np.cumsum(np.einsum("tab,tb->ta", R_inv, step), axis=0)
    root[:, 1] = f[:, 3]
    ric = f[:, RIC].reshape(T, NUM_JOINTS - 1, 3)
    body = np.einsum("tab,tjb->tja", R_inv, ric)
    body[..., 0] += root[:, None, 0]
    body[..., 2] += root[:, None, 2]
    return np.concatenate([root[:, None], body], axis=1).astype(np.float32)


def features_to_joints_torch(feats_BTD: torch.Tensor) -> torch.Tensor:
    """Batched, differentiable :func:`features_to_joints`: (B, T, 263) -> joints_BTJ3 (B, T, 22, 3),
    on the input's device and dtype (padding frames past a clip's length do not affect earlier frames)."""
    if feats_BTD.ndim != 3 or feats_BTD.shape[-1] != FEATURE_DIM:
        raise DataError(f"features: expected shape (B, T, {FEATURE_DIM}), got {tuple(feats_BTD.shape)}")
    B, T, _ = feats_BTD.shape
    zeros_B1 = feats_BTD.new_zeros(B, 1)
    half_angle_BT = torch.cat([zeros_B1, torch.cumsum(feats_BTD[:, :-1, 0], dim=1)], dim=1)
    cos_BT, sin_BT = torch.cos(2.0 * half_angle_BT), torch.sin(2.0 * half_angle_BT)
    # Inverse yaw R(-a): (x, z) -> (x cos a - z sin a, x sin a + z cos a)
    vx_BT = torch.cat([zeros_B1, feats_BTD[:, :-1, 1]], dim=1)
    vz_BT = torch.cat([zeros_B1, feats_BTD[:, :-1, 2]], dim=1)
    root_x_BT = torch.cumsum(vx_BT * cos_BT - vz_BT * sin_BT, dim=1)
    root_z_BT = torch.cumsum(vx_BT * sin_BT + vz_BT * cos_BT, dim=1)
    root_BT3 = torch.stack([root_x_BT, feats_BTD[..., 3], root_z_BT], dim=-1)
    ric_BTJ3 = feats_BTD[..., RIC].reshape(B, T, NUM_JOINTS - 1, 3)
    x, y, z = ric_BTJ3.unbind(-1)
    c, s = cos_BT[..., None], sin_BT[..., None]
    body_BTJ3 = torch.stack([x * c - z * s + root_x_BT[..., None], y, x * s + z * c + root_z_BT[..., None]], dim=-1)
    return torch.cat([root_BT3[:, :, None], body_BTJ3], dim=2)
