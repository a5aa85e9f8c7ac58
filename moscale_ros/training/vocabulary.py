"""``moscale vocab build``: compute a model file's vocabulary from the training data and store it.

From the prepared data (``moscale data prepare``), training split only: each content label is a
skill; its training descriptions (every clip's ``texts``, deduplicated) are encoded with the model's
text encoder and reduced to ``per_skill`` prototypes (:func:`build_prototypes`). Clip counts, the
median clip length per skill and clip counts per style come from the same split. The threshold is
calibrated on ``config/vocabulary_eval.yaml`` (held-out phrasings and out-of-vocabulary commands,
none of them a training description). The model file is rewritten with a ``vocabulary`` part; its
other tensors and metadata are kept byte for byte (generation does not change).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from moscale_common.errors import ConfigError, DataError
from moscale_common.paths import local_or_resource
from moscale_ros.checkpoint import load_checkpoint, save_checkpoint
from moscale_ros.data.dataset import load_prepared
from moscale_ros.generation.bundle import load_generator_parts
from moscale_ros.generation.vocabulary import (
    DEFAULT_RARE_CLIPS,
    VOCABULARY_PART,
    Vocabulary,
    build_prototypes,
    calibrate_threshold,
)
from moscale_ros.models.text_encoder import TextEncoder

EVAL_PHRASES = "config/vocabulary_eval.yaml"
PER_SKILL = 16


def load_eval_phrases(path: str | Path = EVAL_PHRASES) -> tuple[dict[str, list[str]], list[str]]:
    """``(known {skill: [phrasing]}, unknown [command])`` of the calibration file."""
    path = local_or_resource(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        known = {str(k): [str(t) for t in v] for k, v in data["known"].items()}
        unknown = [str(t) for t in data["unknown"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a vocabulary phrase file with 'known' and 'unknown' lists ({exc!r})") from None
    return known, unknown


def encode_pooled(encoder: TextEncoder, texts: list[str], batch: int = 64, one_by_one: bool = True) -> np.ndarray:
    """``(N, D)`` pooled vectors. ``one_by_one``: each text alone, the exact numbers the generator gets
    for a single command (calibration, evaluation); else ``batch`` texts at a time, padded (the
    training descriptions: equal up to float rounding, several times faster)."""
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            if one_by_one:
                rows.extend(encoder.encode([text]).pooled_BD[0].float().cpu().numpy() for text in chunk)
            else:
                rows.extend(encoder.encode(chunk).pooled_BD.float().cpu().numpy())
            encoder.clear_cache()
    return np.stack(rows) if rows else np.zeros((0, encoder.dim), np.float32)


def calibration_scores(vocabulary: Vocabulary, encoder: TextEncoder, path: str | Path = EVAL_PHRASES) -> dict[str, Any]:
    """Confidence of every phrase of the calibration file: ``known`` rows ``(skill, text, match)``
    (skills the vocabulary lacks are left out and listed in ``missing_skills``), ``unknown`` matches."""
    known, unknown = load_eval_phrases(path)
    missing = sorted(s for s in known if s not in vocabulary.skills)
    known_rows = [(s, t) for s, texts in known.items() if s not in missing for t in texts]
    known_matches = vocabulary.match([t for _, t in known_rows], encode_pooled(encoder, [t for _, t in known_rows]))
    unknown_matches = vocabulary.match(unknown, encode_pooled(encoder, unknown))
    return {
        "known": [(s, t, m) for (s, t), m in zip(known_rows, known_matches)],
        "unknown": unknown_matches,
        "missing_skills": missing,
    }


def build_vocabulary(
    data_dir: str | Path | None,
    encoder: TextEncoder,
    per_skill: int = PER_SKILL,
    rare_clips: int = DEFAULT_RARE_CLIPS,
    eval_phrases: str | Path = EVAL_PHRASES,
) -> Vocabulary:
    """A calibrated :class:`Vocabulary` from the training split of the prepared data."""
    data = load_prepared(data_dir, load_joints=False, mmap=True)
    clips = data.train
    if not clips:
        raise DataError(f"{data.cache_dir}: no training clips")
    descriptions: dict[str, list[str]] = defaultdict(list)
    lengths: dict[str, list[float]] = defaultdict(list)
    for clip in clips:
        descriptions[clip.content].extend(clip.texts)
        lengths[clip.content].append((clip.num_frames + 1) / data.fps)  # features have T-1 frames
    unique = {skill: sorted(set(texts)) for skill, texts in sorted(descriptions.items())}
    pooled = {skill: encode_pooled(encoder, texts, one_by_one=False) for skill, texts in unique.items()}
    skills, prototypes_PD, owner_P, center_D = build_prototypes(unique, pooled, per_skill)
    vocabulary = Vocabulary(
        skills=skills,
        prototypes_PD=prototypes_PD,
        prototype_skill_P=owner_P,
        center_D=center_D,
        clips={s: len(lengths[s]) for s in skills},
        typical_seconds={s: round(float(np.median(lengths[s])), 2) for s in skills},
        styles=dict(sorted(Counter(c.style for c in clips).items())),
        threshold=0.0,
        text_encoder=encoder.name,
        rare_clips=rare_clips,
        info={
            "descriptions": sum(len(t) for t in unique.values()),
            "prototypes_per_skill": per_skill,
            "training_clips": len(clips),
            "data": str(data.cache_dir),
            "calibration": str(eval_phrases),
        },
    )
    scores = calibration_scores(vocabulary, encoder, eval_phrases)
    known = np.array([m.confidence for _, _, m in scores["known"]])
    unknown = np.array([m.confidence for m in scores["unknown"]])
    vocabulary.threshold = calibrate_threshold(known, unknown)
    return vocabulary


def store_vocabulary(model_path: str | Path, vocabulary: Vocabulary, out: str | Path | None = None) -> Path:
    """Write ``model_path`` (or ``out``) with ``vocabulary`` as its ``vocabulary`` part, every other
    part, config and extra as they were (tensors in their stored dtype: bit-identical)."""
    ckpt = load_checkpoint(model_path)
    states = {part: state for part, state in ckpt.states.items() if part != VOCABULARY_PART}
    states[VOCABULARY_PART] = vocabulary.states()
    configs = dict(ckpt.configs)
    configs[VOCABULARY_PART] = vocabulary.config()
    return save_checkpoint(out or model_path, ckpt.kind, states=states, configs=configs, extra=ckpt.extra)


def build_and_store(
    model_path: str | Path,
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    per_skill: int = PER_SKILL,
    rare_clips: int = DEFAULT_RARE_CLIPS,
    eval_phrases: str | Path = EVAL_PHRASES,
) -> tuple[Vocabulary, Path, float]:
    """Build the vocabulary with the model's own text encoder and store it; returns it, the path
    written and the seconds it took."""
    tick = time.perf_counter()
    parts = load_generator_parts(model_path)
    encoder = TextEncoder(parts.text_encoder)
    vocabulary = build_vocabulary(data_dir, encoder, per_skill, rare_clips, eval_phrases)
    path = store_vocabulary(model_path, vocabulary, out)
    return vocabulary, path, time.perf_counter() - tick
