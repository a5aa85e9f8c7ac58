"""Small rotation helpers shared by the feature, export and augmentation code (numpy, batched)."""

from __future__ import annotations

import numpy as np


def rotation_between(u_N3: np.ndarray, v_N3: np.ndarray) -> np.ndarray:
    """Minimal-arc rotations (N, 3, 3) taking unit vectors u to unit vectors v (Rodrigues).

    For opposite vectors the rotation is a half turn about an axis perpendicular to u."""
    cross = np.cross(u_N3, v_N3)
    dot = np.sum(u_N3 * v_N3, axis=-1)
    K = np.zeros(u_N3.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -cross[..., 2], cross[..., 1]
    K[..., 1, 0], K[..., 1, 2] = cross[..., 2], -cross[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -cross[..., 1], cross[..., 0]
    opposite = dot < -1.0 + 1e-8
    scale = 1.0 / np.where(opposite, 1.0, 1.0 + dot)
    R = np.eye(3) + K + (K @ K) * scale[..., None, None]
    if opposite.any():
        u = u_N3[opposite]
        helper = np.where(np.abs(u[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        axis = np.cross(u, helper)
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        R[opposite] = 2.0 * axis[:, :, None] * axis[:, None, :] - np.eye(3)
    return R


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def kabsch(rest_K3: np.ndarray, actual_FK3: np.ndarray) -> np.ndarray:
    """Rotations (F, 3, 3) minimising sum_k |R rest_k - actual_k|^2 (SVD of sum_k rest_k actual_k^T)."""
    H = np.einsum("ka,fkb->fab", rest_K3, actual_FK3)
    U, _, Vt = np.linalg.svd(H)
    V, Ut = np.swapaxes(Vt, -1, -2), np.swapaxes(U, -1, -2)
    D = np.broadcast_to(np.eye(3), H.shape).copy()
    D[:, 2, 2] = np.sign(np.linalg.det(V @ Ut))
    return V @ D @ Ut
