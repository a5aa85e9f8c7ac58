"""Left/right mirroring of motions, features, descriptions and labels (data augmentation).

Mirroring is the reflection M = diag(-1, 1, 1) (x -> -x in the canonical frame, where the character's
left is +x) with left and right joints swapped. In feature space it is exact, group by group:
yaw velocity negated; root and joint x components negated; joints permuted; a local rotation R
becomes M R M, i.e. 6D columns (c0, c1) -> ((c0x, -c0y, -c0z), (-c1x, c1y, c1z)); left and right
foot contacts swapped. ``mirror_features(joints_to_features(j)) == joints_to_features(mirror_joints(j))``.
"""

from __future__ import annotations

import re

import numpy as np

from moscale_common.skeleton import NUM_JOINTS
from moscale_ros.data.features import FEATURE_DIM, FOOT_CONTACT, LOCAL_VEL, RIC, ROOT_XZ_VEL, ROOT_YAW_VEL, ROT6D
from moscale_ros.data.skeleton import mirror_index

_MIRROR_WORDS = {"left": "right", "right": "left", "leftward": "rightward", "rightward": "leftward"}
_WORD = re.compile(r"\b(" + "|".join(_MIRROR_WORDS) + r")\b", re.IGNORECASE)


def mirror_joints(joints_TJ3: np.ndarray) -> np.ndarray:
    """Reflect x and swap left/right joints: (T, 22, 3) -> (T, 22, 3)."""
    out = np.asarray(joints_TJ3)[..., mirror_index(), :].copy()
    out[..., 0] *= -1.0
    return out


def mirror_features(feats_TD: np.ndarray) -> np.ndarray:
    """The features of the mirrored motion, computed directly from ``feats_TD`` (..., 263)."""
    f = np.asarray(feats_TD)
    if f.shape[-1] != FEATURE_DIM:
        raise ValueError(f"expected (..., {FEATURE_DIM}) features, got {f.shape}")
    out = f.copy()
    lead = f.shape[:-1]
    perm = mirror_index()
    out[..., ROOT_YAW_VEL] *= -1.0
    out[..., ROOT_XZ_VEL.start] *= -1.0
    ric = f[..., RIC].reshape(*lead, NUM_JOINTS - 1, 3)[..., perm[1:] - 1, :].copy()
    ric[..., 0] *= -1.0
    out[..., RIC] = ric.reshape(*lead, -1)
    rot = f[..., ROT6D].reshape(*lead, NUM_JOINTS - 1, 6)[..., perm[1:] - 1, :].copy()
    rot[..., [1, 2, 3]] *= -1.0
    out[..., ROT6D] = rot.reshape(*lead, -1)
    vel = f[..., LOCAL_VEL].reshape(*lead, NUM_JOINTS, 3)[..., perm, :].copy()
    vel[..., 0] *= -1.0
    out[..., LOCAL_VEL] = vel.reshape(*lead, -1)
    contacts = f[..., FOOT_CONTACT]
    out[..., FOOT_CONTACT] = np.concatenate([contacts[..., 2:4], contacts[..., 0:2]], axis=-1)
    return out


def mirror_text(text: str) -> str:
    """Swap the words left/right (and leftward/rightward), keeping capitalisation."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        new = _MIRROR_WORDS[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    return _WORD.sub(swap, text)


def mirror_label(content: str) -> str:
    """'wave-left-hand' -> 'wave-right-hand'; labels without a side are unchanged."""
    return "-".join(_MIRROR_WORDS.get(part, part) for part in content.split("-"))
