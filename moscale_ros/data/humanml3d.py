"""Loader for the standard HumanML3D folder layout, so its users train with the same commands.

Layout (as produced by the HumanML3D scripts)::

    <root>/new_joint_vecs/<id>.npy   (T, 263) features
    <root>/new_joints/<id>.npy       (T, 22, 3) joint positions (optional)
    <root>/texts/<id>.txt            one line per caption: "caption#tokens#from#to" (seconds; 0 0 = whole clip)
    <root>/Mean.npy, <root>/Std.npy  (263,)
    <root>/train.txt, val.txt, test.txt   clip ids, one per line

A caption with a time range (``from``/``to`` not both zero) becomes its own clip over that range
(named ``<id>#<from>-<to>``). Ids listed in a split file whose files are missing, and clips with no
caption, are left out and listed in the summary (``missing``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moscale_common.errors import DataError
from moscale_ros.data.features import FEATURE_DIM
from moscale_ros.data.prepared import SPLITS, Clip, PreparedData

FPS = 20.0
UNKNOWN = "unknown"


def is_humanml3d_dir(root: str | Path) -> bool:
    root = Path(root)
    return (root / "new_joint_vecs").is_dir() and (root / "texts").is_dir()


def _read_captions(path: Path) -> list[tuple[str, float, float]]:
    captions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split("#")
        caption = parts[0].strip()
        try:
            start = float(parts[2]) if len(parts) > 2 and parts[2].strip() else 0.0
            end = float(parts[3]) if len(parts) > 3 and parts[3].strip() else 0.0
        except ValueError:
            raise DataError(f"{path}, line {line_no}: bad time range {parts[2:4]!r} (expected seconds)") from None
        start, end = (0.0, 0.0) if np.isnan(start) or np.isnan(end) else (start, end)
        if caption:
            captions.append((caption, start, end))
    return captions


def _load(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})") from None


def load_humanml3d(root: str | Path, load_joints: bool = True, splits: tuple[str, ...] = SPLITS) -> PreparedData:
    """A HumanML3D folder as :class:`PreparedData` (content and style are ``unknown``, no held-out texts)."""
    root = Path(root)
    if not is_humanml3d_dir(root):
        raise DataError(f"{root}: not a HumanML3D folder (needs new_joint_vecs/ and texts/)")
    mean = _load(root / "Mean.npy", "HumanML3D Mean.npy").astype(np.float32)
    std = _load(root / "Std.npy", "HumanML3D Std.npy").astype(np.float32)
    if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,):
        raise DataError(f"{root}: Mean.npy/Std.npy must have shape ({FEATURE_DIM},), got {mean.shape}, {std.shape}")
    for split in splits:
        if not (root / f"{split}.txt").is_file():
            raise DataError(f"{root / f'{split}.txt'}: HumanML3D split file missing")
    out: dict[str, list[Clip]] = {s: [] for s in splits}
    missing: list[dict] = []
    for split in splits:
        split_file = root / f"{split}.txt"
        ids = [ln.strip() for ln in split_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        for clip_id in ids:
            feats_path = root / "new_joint_vecs" / f"{clip_id}.npy"
            text_path = root / "texts" / f"{clip_id}.txt"
            if not feats_path.is_file() or not text_path.is_file():
                absent = feats_path if not feats_path.is_file() else text_path
                missing.append({"name": clip_id, "reason": f"{absent} missing"})
                continue
            feats = _load(feats_path, "HumanML3D features").astype(np.float32)
            if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
                raise DataError(f"{feats_path}: expected features of shape (T, {FEATURE_DIM}), got {feats.shape}")
            if not np.isfinite(feats).all():
                raise DataError(f"{feats_path}: non-finite (NaN or inf) feature values")
            joints = None
            joints_path = root / "new_joints" / f"{clip_id}.npy"
            if load_joints and joints_path.is_file():
                joints = _load(joints_path, "HumanML3D joints").astype(np.float32)
                if joints.shape[1:] != (22, 3) or joints.shape[0] < feats.shape[0]:
                    raise DataError(
                        f"{joints_path}: expected joints of shape ({feats.shape[0]}, 22, 3), got {joints.shape}"
                    )
                joints = joints[: feats.shape[0]]
            whole, segments = [], {}
            for caption, start, end in _read_captions(text_path):
                if start == 0.0 and end == 0.0:
                    whole.append(caption)
                else:
                    segments.setdefault((start, end), []).append(caption)
            if whole:
                out[split].append(
                    Clip(
                        clip_id,
                        UNKNOWN,
                        UNKNOWN,
                        split,
                        feats,
                        whole,
                        joints=joints,
                        dataset="humanml3d",
                        source=str(feats_path),
                    )
                )
            for (start, end), captions in segments.items():
                a, b = int(start * FPS), int(end * FPS)
                if b - a < 2 or a >= feats.shape[0]:
                    continue
                out[split].append(
                    Clip(
                        f"{clip_id}#{start:g}-{end:g}",
                        UNKNOWN,
                        UNKNOWN,
                        split,
                        feats[a:b],
                        captions,
                        joints=None if joints is None else joints[a:b],
                        dataset="humanml3d",
                        source=str(feats_path),
                    )
                )
            if not whole and not segments:
                missing.append({"name": clip_id, "reason": f"{text_path} has no caption"})
    all_clips = [c for clips in out.values() for c in clips]
    frames = sum(c.num_frames + 1 for c in all_clips)
    summary = {
        "clips": len(all_clips),
        "hours": frames / FPS / 3600.0,
        "frames": frames,
        "fps": FPS,
        "skipped": len(missing),
        "skipped_clips": missing,
        "splits": {
            s: {"clips": len(v), "hours": sum(c.num_frames + 1 for c in v) / FPS / 3600.0} for s, v in out.items()
        },
        "per_content": {UNKNOWN: {s: len(v) for s, v in out.items()}},
        "per_dataset": {"humanml3d": len(all_clips)},
        "per_style": {UNKNOWN: len(all_clips)},
    }
    return PreparedData(out, mean, std, summary, [UNKNOWN], [UNKNOWN], cache_dir=root, fps=FPS)
