"""Plausibility of an imported skeleton, and up-axis detection for skeleton maps that do not give it.

A rig mapped onto the canonical joints (metres, y-up) must look like a person standing on the
ground; per clip, on the median over its frames:

* the head is above the pelvis, and the pelvis-head direction is within ``MAX_LEAN_DEG`` of vertical
  (not lying down);
* both ankles are below their knees;
* thigh, shin, upper arm and forearm lengths are within ``BONE_RANGE_M``.

A failure raises DataError with its likely cause, e.g. "the up axis looks like y, not z" (a rig whose
offsets are z-up while its root rotation already turns it y-up), or "unit_to_metres looks wrong".
"""

from __future__ import annotations

import numpy as np

from moscale_common.errors import DataError
from moscale_common.skeleton import JOINT_INDEX

MAX_LEAN_DEG = 60.0
BONE_RANGE_M = (0.1, 0.8)
BONES = {"thigh": ("hip", "knee"), "shin": ("knee", "ankle"), "upper arm": ("shoulder", "elbow"),
         "forearm": ("elbow", "wrist")}  # fmt: skip
AXES = "xyz"


def _median_vector(joints_T223: np.ndarray, tip: str, base: str) -> np.ndarray:
    return np.median(joints_T223[:, JOINT_INDEX[tip]] - joints_T223[:, JOINT_INDEX[base]], axis=0)


def _body_up(joints_T223: np.ndarray) -> np.ndarray:
    """Median direction from the ankles' midpoint to the head (source axes)."""
    feet_T3 = 0.5 * (joints_T223[:, JOINT_INDEX["left_ankle"]] + joints_T223[:, JOINT_INDEX["right_ankle"]])
    return np.median(joints_T223[:, JOINT_INDEX["head"]] - feet_T3, axis=0)


def detect_up_axis(joints_T223: np.ndarray, source: str = "<memory>") -> str:
    """``"y"`` or ``"z"``: the axis the feet-to-head direction of the mapped joints runs along (positive)."""
    up = _body_up(joints_T223)
    axis = int(np.argmax(np.abs(up)))
    if axis == 0 or up[axis] <= 0:
        sign = "-" if up[axis] < 0 else "+"
        raise DataError(
            f"{source}: cannot detect the up axis: the body's feet-to-head direction runs along {sign}"
            f"{AXES[axis]}; only +y and +z are supported (check the skeleton map's joints, or set up_axis)"
        )
    return AXES[axis]


def check_plausible(joints_T223: np.ndarray, where: str, declared_up: str = "auto") -> None:
    """Raise DataError (with the likely cause) unless mapped y-up joints in metres look like a standing person."""
    lengths = {name: float(np.median(np.linalg.norm(joints_T223[:, JOINT_INDEX[f"left_{b}"]]
                                                     - joints_T223[:, JOINT_INDEX[f"left_{a}"]], axis=-1)))
               for name, (a, b) in BONES.items()}  # fmt: skip
    lo, hi = BONE_RANGE_M
    odd = {name: length for name, length in lengths.items() if not lo <= length <= hi}
    if odd:
        listed = ", ".join(f"{name} {length:.3g} m" for name, length in odd.items())
        ratio = np.median(list(lengths.values())) / 0.35
        cause = (
            f"unit_to_metres looks wrong (about {1 / ratio:.3g} times the given value would fit)"
            if ratio > 5 or ratio < 0.2
            else "the skeleton map's joints may name the wrong bones"
        )
        raise DataError(f"{where}: implausible bone lengths ({listed}; expected {lo}-{hi} m): {cause}")
    up = _median_vector(joints_T223, "head", "pelvis")
    lean = float(np.degrees(np.arccos(np.clip(up[1] / max(np.linalg.norm(up), 1e-9), -1.0, 1.0))))
    if lean > MAX_LEAN_DEG:
        axis = int(np.argmax(np.abs(up)))
        if axis == 2 and declared_up in ("y", "z"):  # the rotation for the declared axis put the body on its back
            other = "y" if declared_up == "z" else "z"
            cause = f"the up axis looks like {other}, not {declared_up}"
        elif axis == 1:
            cause = "the body is upside down (head below the pelvis): the up axis looks flipped"
        else:
            cause = f"the body lies along {AXES[axis]}: the up axis looks wrong (or the motion lies down)"
        what = "the head is below the pelvis" if up[1] < 0 else f"the body is lying down ({lean:.0f} deg from vertical)"
        raise DataError(f"{where}: implausible skeleton: {what}: {cause}")
    for side in ("left", "right"):
        height = float(np.median(joints_T223[:, JOINT_INDEX[f"{side}_ankle"], 1]
                                 - joints_T223[:, JOINT_INDEX[f"{side}_knee"], 1]))  # fmt: skip
        if height > 0:
            raise DataError(
                f"{where}: implausible skeleton: the {side} foot is above its knee ({100 * height:.0f} cm): the "
                "skeleton map's leg joints look swapped, or the up axis is wrong"
            )
