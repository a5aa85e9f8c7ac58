"""The prepared dataset in memory: clips with their features, joints and descriptions, per split.

Written by :mod:`moscale_ros.data.prepare`, read by :func:`moscale_ros.data.dataset.load_prepared`
(or :func:`moscale_ros.data.humanml3d.load_humanml3d` for a HumanML3D folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moscale_common.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Clip:
    """One clip: ``features`` (T, 263) float32 (unnormalised), ``joints`` (T, 22, 3) float32 or None
    (joint frame t belongs to feature frame t), training ``texts`` and ``heldout_texts``."""

    name: str
    content: str
    style: str
    split: str
    features: np.ndarray
    texts: list[str]
    heldout_texts: list[str] = field(default_factory=list)
    joints: np.ndarray | None = None
    dataset: str = ""
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


@dataclass
class PreparedData:
    """All splits of a prepared dataset plus its normalisation statistics and summary."""

    splits: dict[str, list[Clip]]
    mean: np.ndarray
    std: np.ndarray
    summary: dict
    contents: list[str]
    styles: list[str]
    cache_dir: Path | None = None
    fps: float = 20.0

    @property
    def train(self) -> list[Clip]:
        return self.splits["train"]

    @property
    def val(self) -> list[Clip]:
        return self.splits["val"]

    @property
    def test(self) -> list[Clip]:
        return self.splits["test"]

    def clips(self, split: str) -> list[Clip]:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; choose from {', '.join(self.splits)}")
        return self.splits[split]

    def normalize(self, feats: np.ndarray) -> np.ndarray:
        return (feats - self.mean) / self.std

    def denormalize(self, feats: np.ndarray) -> np.ndarray:
        return feats * self.std + self.mean
