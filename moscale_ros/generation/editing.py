"""Zero-shot editing with the generation model: fixed frames in, the rest generated around them.

A :class:`KnownMotion` says which frames of the new motion are given (the last frames of a
previous motion for continuation; everything outside a time range for range editing). The
generator uses it at two levels:

* latent: the given frames are encoded, ``f_known``; a token of scale k whose whole temporal
  support lies on given latents is not sampled but fixed to the code the quantiser would pick,
  ``argmin_v ||down(f_known - f_hat_<k)_j - e_v||``, so the generated scales are conditioned on it
  (MoScale's zero-shot inpainting/outpainting), and given latents are decoded from ``f_known``;
* joints: the decoded motion starts at the origin facing +z, so it is first moved by the yaw and
  xz translation that best fit the given frames (2-D Procrustes), then the given frames are put
  back exactly and the offset at each seam fades out over ``blend_frames`` (half-cosine), so the
  result passes through the given frames with no jump.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moscale_common.errors import InputError
from moscale_common.skeleton import NUM_JOINTS
from moscale_ros.data.features import joints_to_features


@dataclass
class KnownMotion:
    """``joints`` ``(T, 22, 3)`` on the new motion's frames; ``known`` ``(T,)`` marks the given frames."""

    joints: np.ndarray
    known: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.known.shape[0])


def validate_joints(joints: np.ndarray, name: str, min_frames: int = 1) -> np.ndarray:
    """``(T, 22, 3)`` finite float32 joints, or InputError naming ``name``."""
    try:
        array = np.asarray(joints, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not an array of joint positions ({exc})") from None
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise InputError(f"{name}: expected shape (T, {NUM_JOINTS}, 3), got {tuple(array.shape)}")
    if array.shape[0] < min_frames:
        raise InputError(f"{name}: needs at least {min_frames} frame(s), got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: contains NaN or infinite positions")
    return array


def continuation(prefix_joints: np.ndarray, num_frames: int) -> KnownMotion:
    """The new motion's first ``P`` frames are the prefix; ``num_frames`` counts them."""
    P = prefix_joints.shape[0]
    joints = np.zeros((num_frames, NUM_JOINTS, 3), dtype=np.float32)
    joints[:P] = prefix_joints
    known = np.zeros(num_frames, dtype=bool)
    known[:P] = True
    return KnownMotion(joints, known)


def range_edit(joints: np.ndarray, start_frame: int, end_frame: int) -> KnownMotion:
    """Frames ``[start_frame, end_frame)`` are regenerated, the others kept."""
    known = np.ones(joints.shape[0], dtype=bool)
    known[start_frame:end_frame] = False
    return KnownMotion(np.asarray(joints, dtype=np.float32), known)


# ---- latent level -------------------------------------------------------------------------------


def known_latents(
    tokenizer, known: KnownMotion, num_latents: int, mean_D: torch.Tensor, std_D: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``f_known`` ``(1, N, C)`` and ``known_N`` ``(N,)`` bool: latents whose frames are all given.

    The given frames are encoded as one motion (their features need two consecutive given
    frames). A latent next to a non-given frame is not marked known: the encoder saw padding or
    other content in its receptive field.
    """
    device = mean_D.device
    factor = tokenizer.downsample_factor
    f_known = torch.zeros(1, num_latents, tokenizer.code_dim, device=device)
    known_N = torch.zeros(num_latents, dtype=torch.bool, device=device)
    frames = known.known
    starts = np.flatnonzero(frames & ~np.r_[False, frames[:-1]])
    ends = np.flatnonzero(frames & ~np.r_[frames[1:], False]) + 1
    for start, end in zip(starts, ends):
        first_latent = -(-int(start) // factor)  # ceil: a latent that begins inside the run
        if end - first_latent * factor < 2 * factor + 1:
            continue
        segment = known.joints[first_latent * factor : end]
        feats_TD = torch.from_numpy(joints_to_features(segment)).to(device)
        feats_TD = (feats_TD - mean_D) / std_D
        f_1nC, _ = tokenizer.encode_latents(feats_TD[None], torch.tensor([feats_TD.shape[0]], device=device))
        count = min(feats_TD.shape[0] // factor, num_latents - first_latent)
        margin_left = 0 if start == 0 else 1
        margin_right = 0 if end == frames.shape[0] else 1
        f_known[0, first_latent : first_latent + count] = f_1nC[0, :count]
        known_N[first_latent + margin_left : first_latent + count - margin_right] = True
    return f_known, known_N


def fixed_tokens(
    tokenizer, f_known_1NC: torch.Tensor, known_N: torch.Tensor, f_hat_BNC: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fixed_BL, idx_BL)``: scale positions entirely on known latents and their quantiser codes."""
    B, N, _ = f_hat_BNC.shape
    L_B = torch.full((B,), length, dtype=torch.long, device=f_hat_BNC.device)
    known_BN1 = known_N.to(f_hat_BNC.dtype)[None, :, None].expand(B, N, 1)
    # share of each scale step's support that lies on known latents
    coverage_BL = tokenizer.quantizer.next_scale_input(known_BN1, L_B)[..., 0]
    fixed_BL = coverage_BL > 1.0 - 1e-4
    if not bool(fixed_BL.any()):
        return fixed_BL, torch.zeros_like(fixed_BL, dtype=torch.long)
    return fixed_BL, tokenizer.quantizer.nearest_scale_codes(f_known_1NC - f_hat_BNC, L_B)[1]


# ---- joint level --------------------------------------------------------------------------------


def fit_yaw_translation(source_FJ3: np.ndarray, target_FJ3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation about +y ``R`` and xz translation ``t`` minimising ``sum ||R p + t - q||^2`` over xz.

    2-D Kabsch on the x/z coordinates of all given joints; y (height) is left unchanged.
    """
    p = source_FJ3[..., [0, 2]].reshape(-1, 2).astype(np.float64)
    q = target_FJ3[..., [0, 2]].reshape(-1, 2).astype(np.float64)
    p_mean, q_mean = p.mean(0), q.mean(0)
    h = (p - p_mean).T @ (q - q_mean)
    angle = np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])
    c, s = np.cos(angle), np.sin(angle)
    rot_xz = np.array([[c, -s], [s, c]])
    t_xz = q_mean - rot_xz @ p_mean
    R = np.eye(3)
    R[0, 0], R[0, 2], R[2, 0], R[2, 2] = rot_xz[0, 0], rot_xz[0, 1], rot_xz[1, 0], rot_xz[1, 1]
    return R, np.array([t_xz[0], 0.0, t_xz[1]])


def _seam_weights(known_T: np.ndarray, blend_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: nearest known frame to the left/right (-1 if none) and their half-cosine weights."""
    T = known_T.shape[0]
    idx = np.arange(T)
    left = np.where(known_T, idx, -1)
    left = np.maximum.accumulate(left)
    right = np.where(known_T, idx, T)
    right = np.minimum.accumulate(right[::-1])[::-1]
    gap = np.where((left >= 0) & (right < T), right - left, 2 * max(blend_frames, 1))
    width = np.maximum(np.minimum(float(max(blend_frames, 1)), gap / 2.0), 0.5)
    if blend_frames == 0:
        width = np.full(T, 0.5)

    def weight(distance: np.ndarray) -> np.ndarray:
        u = np.clip(distance / width, 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * u))

    w_left = np.where(left >= 0, weight(idx - left), 0.0)
    w_right = np.where(right < T, weight(right - idx), 0.0)
    return left, np.where(right < T, right, -1), w_left, w_right


def splice(generated_TJ3: np.ndarray, known: KnownMotion, blend_frames: int) -> np.ndarray:
    """The generated motion moved onto the given frames (best yaw + xz fit), the given frames
    restored exactly, and each seam's offset faded out over ``blend_frames``."""
    known_T = known.known
    if not known_T.any():
        return generated_TJ3.astype(np.float32)
    R, t = fit_yaw_translation(generated_TJ3[known_T], known.joints[known_T])
    aligned_TJ3 = generated_TJ3.astype(np.float64) @ R.T + t
    delta_TJ3 = np.where(known_T[:, None, None], known.joints - aligned_TJ3, 0.0)
    left, right, w_left, w_right = _seam_weights(known_T, blend_frames)
    offset_TJ3 = (
        w_left[:, None, None] * delta_TJ3[np.maximum(left, 0)]
        + w_right[:, None, None] * delta_TJ3[np.maximum(right, 0)]
    )
    out_TJ3 = aligned_TJ3 + offset_TJ3
    out_TJ3[known_T] = known.joints[known_T]
    return out_TJ3.astype(np.float32)
