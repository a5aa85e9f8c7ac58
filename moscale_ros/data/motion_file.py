"""Motion files of canonical joints: ``.bvh`` (any rig with a skeleton map), ``.npz`` with ``joints``
``(T, 22, 3)`` and optional ``fps``, or ``.npy`` ``(T, 22, 3)`` at a given rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moscale_common.errors import InputError
from moscale_common.skeleton import CANONICAL_FPS
from moscale_ros.data.skeleton import bvh_to_canonical, resample


def load_motion(path: str | Path, fps: float = CANONICAL_FPS, skeleton_map: str | Path | None = None,
                ) -> tuple[np.ndarray, float]:  # fmt: skip
    """Canonical joints ``(T, 22, 3)`` and their frame rate (``fps`` for a .npy or an .npz without one).

    ``skeleton_map`` (a shipped map's name or a YAML path) maps a .bvh rig; ``None`` picks the shipped
    map that fits. Other formats are canonical already and take none (InputError)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.suffix.lower() == ".bvh":
        return bvh_to_canonical(path, skeleton_map)
    if skeleton_map is not None:
        raise InputError(f"{path}: --skeleton-map applies to .bvh files; .npz/.npy hold canonical joints already")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as data:
                if "joints" not in data:
                    raise InputError(f"{path}: no 'joints' array (found {', '.join(data.files)})")
                return data["joints"], float(data["fps"]) if "fps" in data else fps
        if path.suffix.lower() == ".npy":
            return np.load(path), fps
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    raise InputError(f"{path}: unsupported motion file (use .bvh, .npz or .npy)")


def load_motion_at(path: str | Path, fps: float = CANONICAL_FPS) -> np.ndarray:
    """Float32 canonical joints ``(T, 22, 3)`` of a motion file, resampled to ``fps``."""
    joints, source_fps = load_motion(path, fps)
    joints = np.asarray(joints, dtype=np.float32)
    if abs(source_fps - fps) > 1e-6:
        joints = resample(joints, source_fps, fps)
    return joints
