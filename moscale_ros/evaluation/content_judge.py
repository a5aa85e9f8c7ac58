"""Which skill a motion shows: the trained evaluator's content classifier when there is one, else a
nearest-neighbour judge on the real training clips.

Nearest-neighbour judge: a motion's descriptor is the time mean and standard deviation of its
normalised 263-d features (``(f - mean) / std``), ``526``-d, scaled to unit length; its label is
the content of the real training clip with the most similar descriptor (cosine). It needs no
training, knows every content present in the training split (even a one-clip one), and its own
accuracy on the real test clips is reported next to every figure it produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moscale_common.errors import InputError
from moscale_ros.data.features import joints_to_features
from moscale_ros.data.prepared import Clip, PreparedData
from moscale_ros.evaluation.model import Evaluator


def descriptor(feats_TD: np.ndarray, mean_D: np.ndarray, std_D: np.ndarray) -> np.ndarray:
    """Unit-length ``(2D,)`` [time mean, time std] of the normalised features."""
    normalised = (np.asarray(feats_TD, np.float64) - mean_D) / std_D
    vector = np.concatenate([normalised.mean(0), normalised.std(0)])
    return vector / max(np.linalg.norm(vector), 1e-12)


@dataclass
class NearestClipJudge:
    """1-nearest-neighbour content labels against real clips (see the module docstring)."""

    descriptors_ND: np.ndarray  # noqa: N815 (shape suffix)
    labels: list[str]
    mean_D: np.ndarray  # noqa: N815 (shape suffix)
    std_D: np.ndarray  # noqa: N815 (shape suffix)
    name: str = "nearest real training clip (time mean and std of the normalised features)"

    @classmethod
    def from_clips(cls, clips: Sequence[Clip], data: PreparedData) -> NearestClipJudge:
        if not clips:
            raise InputError("content judge: no reference clips")
        rows = [descriptor(c.features, data.mean, data.std) for c in clips]
        return cls(np.stack(rows), [c.content for c in clips], data.mean, data.std)

    def label_features(self, motions: Sequence[np.ndarray]) -> list[str]:
        """Content label of each un-normalised ``(T, 263)`` feature array."""
        query_BD = np.stack([descriptor(m, self.mean_D, self.std_D) for m in motions])
        return [self.labels[int(i)] for i in np.argmax(query_BD @ self.descriptors_ND.T, axis=1)]

    def label_joints(self, motions: Sequence[np.ndarray]) -> list[str]:
        """Content label of each ``(T, 22, 3)`` canonical joint array."""
        return self.label_features([joints_to_features(np.asarray(m, np.float32)) for m in motions])


@dataclass
class EvaluatorJudge:
    """The trained evaluator's content classifier."""

    evaluator: Evaluator
    name: str = "trained evaluator (content classifier)"

    def label_features(self, motions: Sequence[np.ndarray]) -> list[str]:
        limit = self.evaluator.max_frames
        clipped = [np.asarray(m)[:limit] for m in motions]
        indices = self.evaluator.embed_motions(clipped).content_N
        return [self.evaluator.contents[int(i)] for i in indices]

    def label_joints(self, motions: Sequence[np.ndarray]) -> list[str]:
        return self.label_features([joints_to_features(np.asarray(m, np.float32)) for m in motions])


def judge_accuracy(judge: NearestClipJudge | EvaluatorJudge, clips: Sequence[Clip]) -> dict[str, float]:
    """Per-content accuracy of ``judge`` on real clips, plus ``"all"``."""
    labels = judge.label_features([c.features for c in clips])
    per: dict[str, list[bool]] = {}
    for clip, label in zip(clips, labels):
        per.setdefault(clip.content, []).append(label == clip.content)
    result = {content: float(np.mean(hits)) for content, hits in sorted(per.items())}
    result["all"] = float(np.mean([label == c.content for c, label in zip(clips, labels)]))
    return result
