"""Foot contacts: detection on the scaled human feet, pinning, and ground clearance of the soles.

A foot is in contact at frame t when its scaled ankle is both slow, ``|v_xy| < max_speed``, and
low, ``z - h_ankle < max_height``; runs shorter than ``min_duration_s`` are dropped and gaps up to
``max_gap_s`` are filled. During a contact run the foot target is pinned: one position (run median,
on the ground), one yaw (circular mean), flat sole, so the robot foot cannot slide. The pin's
offset fades out linearly over ``blend_s`` on either side, so targets stay continuous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retarget.scaling import Targets, rot_z


@dataclass
class ContactConfig:
    max_speed: float = 0.45  # m/s, horizontal ankle speed (robot scale)
    max_height: float = 0.05  # m above the standing ankle height (robot scale)
    min_duration_s: float = 0.06
    max_gap_s: float = 0.05
    blend_s: float = 0.15


def runs(mask_T: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` index ranges where a boolean sequence is True."""
    padded = np.concatenate([[False], mask_T, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def detect_contacts(ankle_T23: np.ndarray, fps: float, ankle_height: float, cfg: ContactConfig) -> np.ndarray:
    """Boolean ``(T, 2)`` contact flags (left, right) from scaled ankle targets."""
    vel_T23 = np.gradient(ankle_T23, 1.0 / fps, axis=0)
    speed_T2 = np.linalg.norm(vel_T23[..., :2], axis=-1)
    contact_T2 = (speed_T2 < cfg.max_speed) & (ankle_T23[..., 2] - ankle_height < cfg.max_height)
    for side in range(2):
        flags = contact_T2[:, side]
        for a, b in runs(~flags):
            if 0 < a and b < len(flags) and b - a <= round(cfg.max_gap_s * fps):
                flags[a:b] = True
        for a, b in runs(flags):
            if b - a < round(cfg.min_duration_s * fps):
                flags[a:b] = False
    return contact_T2


def _fade(length: int, blend: int, T: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices and weights (1 at the run, linearly to 0) of the blend zones around a run."""
    idx, w = [], []
    for k in range(1, blend + 1):
        weight = 1.0 - k / (blend + 1)
        if start - k >= 0:
            idx.append(start - k)
            w.append(weight)
        if stop - 1 + k < T:
            idx.append(stop - 1 + k)
            w.append(weight)
    return np.asarray(idx, dtype=int), np.asarray(w)


def pin_feet(targets: Targets, contact_T2: np.ndarray, ankle_height: float, neutral_foot_R: list[np.ndarray],
             fps: float, cfg: ContactConfig) -> Targets:  # fmt: skip
    """Pin each foot's target during its contact runs (position, yaw, flat sole), in place."""
    T = len(targets)
    targets.contact_T2 = contact_T2
    for side in range(2):
        ankle, foot_R = targets.ankle_T23[:, side], targets.foot_R_T233[:, side]
        x_axis = (foot_R @ neutral_foot_R[side].T)[:, :, 0]
        yaw_T = np.arctan2(x_axis[:, 1], x_axis[:, 0])
        for start, stop in runs(contact_T2[:, side]):
            pinned = np.median(ankle[start:stop], axis=0)
            pinned[2] = ankle_height
            yaw = np.arctan2(np.sin(yaw_T[start:stop]).mean(), np.cos(yaw_T[start:stop]).mean())
            idx, w = _fade(stop - start, round(cfg.blend_s * fps), T, start, stop)
            offset_start, offset_stop = pinned - ankle[start], pinned - ankle[stop - 1]
            for i, weight in zip(idx, w):
                ankle[i] += weight * (offset_start if i < start else offset_stop)
            ankle[start:stop] = pinned
            foot_R[start:stop] = rot_z(np.array(yaw)) @ neutral_foot_R[side]
    return targets


def keep_soles_above_ground(targets: Targets, foot_to_ankle_corners: list[np.ndarray]) -> Targets:
    """Raise ankle targets so that no sole corner (given relative to the ankle, foot frame axes) is below z = 0."""
    for side in range(2):
        corners_T43 = np.einsum("tij,cj->tci", targets.foot_R_T233[:, side], foot_to_ankle_corners[side])
        lowest_T = targets.ankle_T23[:, side, 2] + corners_T43[..., 2].min(axis=1)
        targets.ankle_T23[:, side, 2] += np.maximum(0.0, -lowest_T)
    return targets
