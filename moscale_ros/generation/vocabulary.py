"""What the model was trained to do: per-skill prototypes in the text encoder's space, and a
confidence for every command.

A *skill* is a content label of the training data (walk, wave-right-hand, kick, ...). For every
training description ``d`` of a skill, ``e(d)`` is the text encoder's pooled vector (the one the
generator conditions on). With ``mu`` the mean of all of them and ``u(x) = (x - mu) / |x - mu|``,
a skill's prototypes ``p_{s,1..k}`` are the unit-length k-means centres of ``{u(e(d))}``. A command
``t`` scores, per skill,

    score_s(t) = max_j  u(e(t)) . p_{s,j}        (cosine similarity, in [-1, 1])

its ``confidence`` is the best score, its ``skill`` that skill, and it is *known* when the confidence
is at least ``threshold`` (calibrated on held-out phrasings and out-of-vocabulary commands,
``config/vocabulary_eval.yaml``). A known skill with fewer than ``rare_clips`` training clips is
*weak*: the model has barely seen it and what it generates is unreliable.

The prototypes, centre, clip counts and threshold are stored in the generator's model file as its
``vocabulary`` part (``moscale vocab build``); they do not touch generation. The check reuses the
text features the generator computes anyway (the encoder caches them), so it costs one
``(P, D) x (D,)`` product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from moscale_common.errors import CheckpointError, InputError

VOCABULARY_PART = "vocabulary"
DEFAULT_RARE_CLIPS = 5
NEAREST = 3
Status = Literal["known", "weak", "unknown"]


@dataclass(frozen=True)
class SkillMatch:
    """The vocabulary's verdict on one command (or one part of one)."""

    text: str
    status: Status  # known, weak (known but fewer than rare_clips training clips), unknown
    confidence: float  # cosine similarity to the best skill's nearest prototype
    skill: str  # best-matching skill
    nearest: tuple[tuple[str, float], ...]  # the NEAREST best skills with their scores, best first
    clips: int  # training clips of ``skill``

    @property
    def known(self) -> bool:
        return self.status != "unknown"

    def describe(self) -> str:
        """One line, e.g. ``unknown (confidence 0.31; nearest: kick 0.31, walk 0.28, bow 0.22)``."""
        nearest = ", ".join(f"{name} {score:.2f}" for name, score in self.nearest)
        what = {
            "known": f"known skill {self.skill}",
            "weak": f"known but weak skill {self.skill} (only {self.clips} training clip(s))",
            "unknown": "not a known skill",
        }[self.status]
        return f"{what} (confidence {self.confidence:.2f}; nearest: {nearest})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "known": self.known,
            "status": self.status,
            "confidence": round(self.confidence, 4),
            "skill": self.skill,
            "clips": self.clips,
            "nearest": [{"skill": name, "confidence": round(score, 4)} for name, score in self.nearest],
        }


@dataclass
class Vocabulary:
    """Skills, their prototypes and training statistics (see the module docstring).

    ``prototypes_PD`` unit rows, ``prototype_skill_P`` the skill index of each row, ``center_D`` the
    mean pooled vector ``mu``; ``clips``/``typical_seconds`` per skill (training split); ``styles``
    clip counts per style; ``text_encoder`` the encoder the vectors come from.
    """

    skills: list[str]
    prototypes_PD: np.ndarray  # noqa: N815 (shape suffix)
    prototype_skill_P: np.ndarray  # noqa: N815 (shape suffix)
    center_D: np.ndarray  # noqa: N815 (shape suffix)
    clips: dict[str, int]
    typical_seconds: dict[str, float]
    styles: dict[str, int]
    threshold: float
    text_encoder: str
    rare_clips: int = DEFAULT_RARE_CLIPS
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prototypes_PD = np.asarray(self.prototypes_PD, np.float32)
        self.prototype_skill_P = np.asarray(self.prototype_skill_P, np.int64)
        self.center_D = np.asarray(self.center_D, np.float32)
        P, D = self.prototypes_PD.shape
        if self.prototype_skill_P.shape != (P,) or self.center_D.shape != (D,):
            raise CheckpointError(
                f"vocabulary: prototypes {self.prototypes_PD.shape}, skills {self.prototype_skill_P.shape}, "
                f"centre {self.center_D.shape} do not fit together"
            )
        if P == 0 or self.prototype_skill_P.min() < 0 or self.prototype_skill_P.max() >= len(self.skills):
            raise CheckpointError("vocabulary: prototype skill indices out of range")

    @property
    def dim(self) -> int:
        return int(self.center_D.shape[0])

    def weak_skills(self, rare_clips: int | None = None) -> list[str]:
        """Skills with fewer than ``rare_clips`` (default: the vocabulary's) training clips."""
        n = self.rare_clips if rare_clips is None else rare_clips
        return [s for s in self.skills if self.clips.get(s, 0) < n]

    def scores(self, pooled_BD: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(B, S)`` per-skill scores of pooled text vectors ``(B, D)`` (see the module docstring)."""
        if isinstance(pooled_BD, torch.Tensor):
            pooled_BD = pooled_BD.detach().float().cpu().numpy()
        pooled_BD = np.atleast_2d(np.asarray(pooled_BD, np.float32))
        if pooled_BD.shape[1] != self.dim:
            raise InputError(f"vocabulary: text vectors have {pooled_BD.shape[1]} dimensions, expected {self.dim}")
        centred_BD = pooled_BD - self.center_D
        unit_BD = centred_BD / np.maximum(np.linalg.norm(centred_BD, axis=1, keepdims=True), 1e-12)
        sims_BP = unit_BD @ self.prototypes_PD.T
        scores_BS = np.full((len(unit_BD), len(self.skills)), -1.0, np.float32)
        np.maximum.at(scores_BS.T, self.prototype_skill_P, sims_BP.T)
        return scores_BS

    def match(
        self, texts: list[str], pooled_BD: np.ndarray | torch.Tensor, rare_clips: int | None = None
    ) -> list[SkillMatch]:
        """The verdict on each text from its pooled vector; ``rare_clips`` overrides the stored N."""
        n = self.rare_clips if rare_clips is None else rare_clips
        matches = []
        for text, scores_S in zip(texts, self.scores(pooled_BD)):
            order = np.argsort(-scores_S, kind="stable")[:NEAREST]
            best = self.skills[int(order[0])]
            confidence = float(scores_S[order[0]])
            clips = int(self.clips.get(best, 0))
            status: Status = "unknown" if confidence < self.threshold else ("weak" if clips < n else "known")
            nearest = tuple((self.skills[int(i)], float(scores_S[i])) for i in order)
            matches.append(SkillMatch(text, status, confidence, best, nearest, clips))
        return matches

    # ---- storage in a model file ----------------------------------------------------------------
    def states(self) -> dict[str, torch.Tensor]:
        """The tensors of the ``vocabulary`` part of a model file."""
        return {
            "prototypes": torch.from_numpy(self.prototypes_PD.copy()),
            "prototype_skill": torch.from_numpy(self.prototype_skill_P.copy()),
            "center": torch.from_numpy(self.center_D.copy()),
        }

    def config(self) -> dict[str, Any]:
        """The JSON part of the ``vocabulary`` entry of a model file's configs."""
        return {
            "skills": list(self.skills),
            "clips": dict(self.clips),
            "typical_seconds": dict(self.typical_seconds),
            "styles": dict(self.styles),
            "threshold": float(self.threshold),
            "rare_clips": int(self.rare_clips),
            "text_encoder": self.text_encoder,
            "info": dict(self.info),
        }

    @classmethod
    def from_parts(cls, states: dict[str, torch.Tensor], config: dict[str, Any], where: str) -> Vocabulary:
        """Rebuild from a model file's ``vocabulary`` part and config; CheckpointError if malformed."""
        try:
            return cls(
                skills=[str(s) for s in config["skills"]],
                prototypes_PD=states["prototypes"].float().numpy(),
                prototype_skill_P=states["prototype_skill"].numpy(),
                center_D=states["center"].float().numpy(),
                clips={str(k): int(v) for k, v in config["clips"].items()},
                typical_seconds={str(k): float(v) for k, v in config["typical_seconds"].items()},
                styles={str(k): int(v) for k, v in config.get("styles", {}).items()},
                threshold=float(config["threshold"]),
                text_encoder=str(config["text_encoder"]),
                rare_clips=int(config.get("rare_clips", DEFAULT_RARE_CLIPS)),
                info=dict(config.get("info", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{where}: malformed vocabulary part ({exc!r}); rebuild it with `moscale vocab build`"
            ) from None


def command_summary(text: str, parts: list[Any], matches: list[SkillMatch]) -> dict[str, Any]:
    """What ``moscale vocab check`` and ``moscale generate`` print about a command: ``known`` (every
    part known, weak ones included), ``status``, ``confidence`` and ``nearest`` of the weakest part,
    ``skill`` (the parts' skills joined by " -> "), and every part with its duration and repeats."""
    weakest = min(matches, key=lambda m: (m.status != "unknown", m.status != "weak", m.confidence))
    return {
        "text": text,
        "known": all(m.known for m in matches),
        "status": weakest.status,
        "confidence": round(weakest.confidence, 4),
        "skill": " -> ".join(m.skill for m in matches),
        "nearest": [name for name, _ in weakest.nearest],
        "parts": [
            {**m.to_dict(), "seconds": p.seconds, "repeats": p.repeats, "original": p.original}
            for p, m in zip(parts, matches)
        ],
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as ``known: ...``, ``confidence: ...``, ``skill: ...``, ``nearest: ...`` lines,
    then one line per part when there are several."""
    lines = [
        f"known: {str(summary['known']).lower()} ({summary['status']})",
        f"confidence: {summary['confidence']:.3f}",
        f"skill: {summary['skill']}",
        f"nearest: {', '.join(summary['nearest'])}",
    ]
    if len(summary["parts"]) > 1:
        for part in summary["parts"]:
            said = (f", {part['seconds']:g} s" if part["seconds"] is not None else "") + (
                f", x{part['repeats']}" if part["repeats"] > 1 else ""
            )
            lines.append(f"  part {part['text']!r}{said}: {part['status']} {part['skill']} {part['confidence']:.3f}")
    return lines


def kmeans_unit(unit_ND: np.ndarray, k: int, iterations: int = 25, seed: int = 0) -> np.ndarray:
    """``min(k, N)`` unit-length centres of the unit rows ``unit_ND`` (spherical k-means, k-means++
    initialisation with a fixed seed: deterministic)."""
    n = len(unit_ND)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    centres = [unit_ND[int(rng.integers(n))]]
    for _ in range(1, k):
        distance_N = 1.0 - np.max(unit_ND @ np.stack(centres).T, axis=1)
        weights = np.maximum(distance_N, 0) ** 2
        total = weights.sum()
        pick = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centres.append(unit_ND[pick])
    centres_KD = np.stack(centres)
    for _ in range(iterations):
        assign_N = np.argmax(unit_ND @ centres_KD.T, axis=1)
        for j in range(k):
            members = unit_ND[assign_N == j]
            if len(members):
                mean = members.sum(0)
                centres_KD[j] = mean / max(np.linalg.norm(mean), 1e-12)
    return centres_KD.astype(np.float32)


def build_prototypes(
    descriptions: dict[str, list[str]], pooled: dict[str, np.ndarray], per_skill: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(skills, prototypes_PD, prototype_skill_P, center_D)`` from each skill's description vectors
    ``pooled[skill]`` ``(N_s, D)`` (see the module docstring)."""
    skills = [s for s in descriptions if len(pooled[s])]
    center_D = np.concatenate([pooled[s] for s in skills]).mean(0)
    rows, owners = [], []
    for index, skill in enumerate(skills):
        centred = pooled[skill] - center_D
        unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
        centres = kmeans_unit(unit, per_skill)
        rows.append(centres)
        owners.extend([index] * len(centres))
    return skills, np.concatenate(rows), np.asarray(owners, np.int64), center_D.astype(np.float32)


def calibrate_threshold(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """The threshold that maximises balanced accuracy (1 - (false accept + false reject) / 2),
    midway between the two neighbouring scores; ties go to the lower threshold."""
    candidates = np.unique(np.concatenate([known_scores, unknown_scores]))
    best, best_threshold = -1.0, float(candidates[0])
    for low, high in zip(candidates[:-1], candidates[1:]):
        threshold = 0.5 * (low + high)
        accuracy = 0.5 * (np.mean(known_scores >= threshold) + np.mean(unknown_scores < threshold))
        if accuracy > best:
            best, best_threshold = accuracy, float(threshold)
    return round(best_threshold, 4)


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Area under the ROC curve of known (positive) against unknown: the probability that a known
    command scores above an unknown one (ties count half)."""
    k = np.asarray(known_scores, np.float64)[:, None]
    u = np.asarray(unknown_scores, np.float64)[None, :]
    return float(np.mean((k > u) + 0.5 * (k == u)))
