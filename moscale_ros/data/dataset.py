"""Prepared motion-text data: loading the cache and torch datasets over it.

:func:`load_prepared` reads the cache written by :mod:`moscale_ros.data.prepare` (or a HumanML3D
folder, see :mod:`moscale_ros.data.humanml3d`) into a :class:`PreparedData`. :class:`MotionTextDataset`
serves random crops of normalised features with a random description for training, or fixed
windows with a fixed description (``deterministic=True``) for evaluation; :func:`collate_motion_text`
pads a batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from moscale_common.errors import DataError
from moscale_ros.data import humanml3d
from moscale_ros.data.augment import mirror_features, mirror_label, mirror_text
from moscale_ros.data.features import FEATURE_DIM, joints_to_features
from moscale_ros.data.prepare import CACHE_FORMAT, CACHE_VERSION, default_cache_dir
from moscale_ros.data.prepared import SPLITS, Clip, PreparedData
from moscale_ros.data.skeleton import mirror_index


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read prepared-data file ({exc}); re-run `moscale data prepare`") from None


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read prepared-data array ({exc}); re-run `moscale data prepare`") from None


def load_prepared(cache_dir: str | Path | None = None, load_joints: bool = True, mmap: bool = False) -> PreparedData:
    """Load a prepared cache (default ``cache_root()/data/bandai``) or a HumanML3D-layout folder.

    A missing, partial or other-version cache raises DataError saying how to rebuild it."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if humanml3d.is_humanml3d_dir(cache_dir):
        return humanml3d.load_humanml3d(cache_dir, load_joints=load_joints)
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        raise DataError(
            f"{cache_dir}: no prepared motion data here (missing meta.json); run `moscale data prepare` "
            "or point to a HumanML3D folder (new_joint_vecs/, texts/, Mean.npy, Std.npy, train.txt)"
        )
    meta = _read_json(meta_path)
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise DataError(
            f"{cache_dir}: prepared data of format {meta.get('format')!r} version {meta.get('version')!r}; this "
            f"version reads {CACHE_FORMAT} version {CACHE_VERSION}: re-run `moscale data prepare`"
        )
    features = _load_array(cache_dir / "features.npy", mmap)
    joints = _load_array(cache_dir / "joints.npy", mmap) if load_joints else None
    mean = _load_array(cache_dir / "mean.npy", False).astype(np.float32)
    std = _load_array(cache_dir / "std.npy", False).astype(np.float32)
    shapes_ok = features.ndim == 2 and features.shape[1] == FEATURE_DIM
    if not shapes_ok or mean.shape != (FEATURE_DIM,) or std.shape != mean.shape:
        raise DataError(f"{cache_dir}: prepared arrays have unexpected shapes; re-run `moscale data prepare`")
    records = _read_json(cache_dir / "clips.json")
    splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    for rec in records:
        start, n = int(rec["start"]), int(rec["num_features"])
        if start + n > features.shape[0]:
            raise DataError(f"{cache_dir}: clip {rec['name']} points past the end of features.npy; re-run prepare")
        splits.setdefault(rec["split"], []).append(
            Clip(
                name=rec["name"],
                content=rec["content"],
                style=rec["style"],
                split=rec["split"],
                features=features[start : start + n],
                joints=None if joints is None else joints[start : start + n],
                texts=list(rec["texts"]),
                heldout_texts=list(rec.get("heldout_texts", [])),
                dataset=rec.get("dataset", ""),
                source=rec.get("source", ""),
            )
        )
    summary = _read_json(cache_dir / "summary.json") if (cache_dir / "summary.json").is_file() else {}
    return PreparedData(
        splits=splits,
        mean=mean,
        std=std,
        summary=summary,
        contents=sorted({r["content"] for r in records}),
        styles=sorted({r["style"] for r in records}),
        cache_dir=cache_dir,
        fps=float(meta.get("fps", 20.0)),
    )


# ---- whole clips of a split (tokenizer training and evaluation) ------------------------------


def mirrored_features(joints_T223: np.ndarray) -> np.ndarray:
    """Features ``(T-1, 263)`` of the left-right mirror image of a canonical clip: ``x -> -x`` and
    left/right joints swapped (the facing stays +z, so the mirror is canonical too)."""
    mirrored = np.array(joints_T223, dtype=np.float64)
    mirrored[..., 0] *= -1.0
    return joints_to_features(mirrored[:, mirror_index()])


def load_split_features(cache_dir: str | Path, split: str) -> list[np.ndarray]:
    """Un-normalised ``(T, 263)`` features of every clip of ``split`` of a prepared-data folder."""
    return split_features(load_prepared(cache_dir, load_joints=False), split)


def split_features(prepared: PreparedData, split: str, mirror: bool = False) -> list[np.ndarray]:
    """Un-normalised ``(T, 263)`` features of every clip of ``split`` of a ``PreparedData``; with
    ``mirror`` the mirrored copy of each clip (from its joints) is added."""
    clips = prepared.clips(split)
    if not clips:
        raise DataError(f"{prepared.cache_dir}: split {split!r} has no clips")
    if mirror and any(c.joints is None for c in clips):
        raise DataError(f"{prepared.cache_dir}: mirroring needs the clips' joints (load_prepared(load_joints=True))")
    feats = [np.asarray(c.features, dtype=np.float32) for c in clips]
    if mirror:
        feats += [mirrored_features(c.joints) for c in clips if c.joints is not None and len(c.joints) >= 3]
    return feats


def normalization(prepared: PreparedData) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature ``mean``/``std`` of a ``PreparedData``, as float32 tensors."""
    mean_D = torch.as_tensor(np.asarray(prepared.mean), dtype=torch.float32)
    return mean_D, torch.as_tensor(np.asarray(prepared.std), dtype=torch.float32)


# ---- windows with descriptions (transformer and evaluator training, evaluation) -----------------


class MotionTextDataset(torch.utils.data.Dataset):
    """(motion window, description) pairs of one split.

    Training (default): each item is a random window of ``min(T, max_frames)`` frames, floored to a
    multiple of ``length_multiple`` (the tokenizer's downsampling), and a random description. With
    ``deterministic=True`` the window is centred and the description is the clip's first (evaluation).
    ``heldout_text=True`` draws from the held-out descriptions instead (clips without any are dropped).
    Clips shorter than ``min_frames`` are left out. ``mirror_prob`` > 0 mirrors a training item left/right
    with that probability (features, description words and content label, see :mod:`.augment`).
    ``crop_prob`` > 0 cuts a training window, with that probability, to a length drawn uniformly from
    ``min_frames`` to its full length (a length-robust evaluator sees every skill at many durations).

    Items: ``{"feats": (L, 263) float32 tensor, "length": L, "text": str, "content": int, "style": int,
    "name": str}``; features are normalised with the prepared mean/std when ``normalize``.
    """

    def __init__(
        self,
        prepared: PreparedData,
        split: str,
        max_frames: int = 196,
        min_frames: int = 24,
        normalize: bool = True,
        heldout_text: bool = False,
        deterministic: bool = False,
        length_multiple: int = 4,
        mirror_prob: float = 0.0,
        crop_prob: float = 0.0,
    ) -> None:
        if max_frames < min_frames or min_frames < length_multiple:
            raise DataError(
                f"MotionTextDataset: need length_multiple <= min_frames <= max_frames, got "
                f"{length_multiple}, {min_frames}, {max_frames}"
            )
        self.prepared = prepared
        self.split = split
        self.max_frames = max_frames
        self.min_frames = min_frames
        self.normalize = normalize
        self.heldout_text = heldout_text
        self.deterministic = deterministic
        self.length_multiple = length_multiple
        self.mirror_prob = 0.0 if deterministic else float(mirror_prob)
        self.crop_prob = 0.0 if deterministic else float(crop_prob)
        self.clips = [
            c for c in prepared.clips(split)
            if c.num_frames >= min_frames and (c.heldout_texts if heldout_text else c.texts)
        ]  # fmt: skip
        self.content_ids = {name: i for i, name in enumerate(prepared.contents)}
        self.style_ids = {name: i for i, name in enumerate(prepared.styles)}
        self._mean = torch.from_numpy(np.asarray(prepared.mean, dtype=np.float32))
        self._std = torch.from_numpy(np.asarray(prepared.std, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.clips)

    def window(self, clip: Clip) -> tuple[int, int]:
        """(start, length) of the window served for ``clip`` (random unless deterministic)."""
        length = min(clip.num_frames, self.max_frames)
        if self.crop_prob > 0.0 and length > self.min_frames and float(torch.rand(())) < self.crop_prob:
            length = int(torch.randint(self.min_frames, length + 1, ()).item())
        length -= length % self.length_multiple
        slack = clip.num_frames - length
        if self.deterministic:
            return slack // 2, length
        start = int(torch.randint(0, slack + 1, ()).item()) if slack > 0 else 0
        return start, length

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        start, length = self.window(clip)
        window = np.array(clip.features[start : start + length], dtype=np.float32)
        texts = clip.heldout_texts if self.heldout_text else clip.texts
        text = texts[0] if self.deterministic else texts[int(torch.randint(0, len(texts), ()).item())]
        content = clip.content
        if self.mirror_prob > 0.0 and float(torch.rand(())) < self.mirror_prob:
            window, text, content = mirror_features(window), mirror_text(text), mirror_label(content)
        feats = torch.from_numpy(window)
        if self.normalize:
            feats = (feats - self._mean) / self._std
        return {
            "feats": feats,
            "length": length,
            "text": text,
            "content": self.content_ids.get(content, self.content_ids.get(clip.content, -1)),
            "style": self.style_ids.get(clip.style, -1),
            "name": clip.name,
        }


def collate_motion_text(items: list[dict]) -> dict:
    """Pad a list of items to the batch's longest window: ``feats_BTD`` (zeros past each length),
    ``lengths_B`` LongTensor, ``texts`` list[str], ``content_B``/``style_B`` LongTensor, ``names``."""
    lengths_B = torch.tensor([it["length"] for it in items], dtype=torch.long)
    T = int(lengths_B.max())
    D = items[0]["feats"].shape[-1]
    feats_BTD = torch.zeros(len(items), T, D, dtype=items[0]["feats"].dtype)
    for b, it in enumerate(items):
        feats_BTD[b, : it["length"]] = it["feats"]
    return {
        "feats_BTD": feats_BTD,
        "lengths_B": lengths_B,
        "texts": [it["text"] for it in items],
        "content_B": torch.tensor([it["content"] for it in items], dtype=torch.long),
        "style_B": torch.tensor([it["style"] for it in items], dtype=torch.long),
        "names": [it["name"] for it in items],
    }


def content_balanced_weights(contents: list[str], power: float) -> np.ndarray:
    """Sampling probability of each clip, ``w_i = n_c(i)^(-power) / sum_j n_c(j)^(-power)`` with
    ``n_c`` the number of clips of content ``c``: ``power`` 0 is uniform over clips, 1 draws every
    content equally often (a one-clip kick as often as 350 raise-hand clips together); in between
    oversamples rare contents less aggressively."""
    if not 0.0 <= power <= 1.0:
        raise DataError(f"content balancing power must be in [0, 1], got {power}")
    counts: dict[str, int] = {}
    for content in contents:
        counts[content] = counts.get(content, 0) + 1
    weights = np.array([counts[c] ** (-power) for c in contents], dtype=np.float64)
    return weights / weights.sum()


class MotionTextBatches:
    """Collated batches (:func:`collate_motion_text`) of a :class:`MotionTextDataset`; random ones are
    drawn with the global torch RNG (restored on resume), uniformly over clips or, with
    ``content_power`` > 0, oversampling rare contents (:func:`content_balanced_weights`).
    ``transform`` finishes each batch."""

    def __init__(
        self,
        dataset: MotionTextDataset,
        transform: Callable[[dict], dict] | None = None,
        content_power: float = 0.0,
    ) -> None:
        if len(dataset) == 0:
            raise DataError(
                f"{dataset.prepared.cache_dir}: split {dataset.split!r} has no clips of >= {dataset.min_frames} frames"
            )
        self.dataset = dataset
        self.transform = transform
        self.weights_N: torch.Tensor | None = None  # noqa: N815 (shape suffix)
        if content_power > 0:
            weights = content_balanced_weights([c.content for c in dataset.clips], content_power)
            self.weights_N = torch.from_numpy(weights)

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: list[int]) -> dict:
        batch = collate_motion_text([self.dataset[i] for i in indices])
        return batch if self.transform is None else self.transform(batch)

    def sample(self, batch_size: int) -> dict:
        if self.weights_N is not None:
            return self.batch(torch.multinomial(self.weights_N, batch_size, replacement=True).tolist())
        return self.batch(torch.randint(0, len(self.dataset), (batch_size,)).tolist())
