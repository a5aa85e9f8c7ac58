"""One file for generation: tokenizer + transformer (+ length estimator) + feature normalisation +
the text encoder's name + default generation settings, as a ``generator`` checkpoint.

Parts: ``tokenizer``, ``transformer``, ``length`` (optional), ``normalization`` (``mean``/``std``),
``vocabulary`` (optional: skill prototypes, :mod:`moscale_ros.generation.vocabulary`);
configs: ``tokenizer``, ``transformer``, ``length``, ``text_encoder``, ``generation``. The
transformer trainer's ``last``/``best`` checkpoints have the same layout (plus optimiser and RNG
states), so any of them loads with :func:`load_generator_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from moscale_common.config import from_dict, to_dict
from moscale_common.errors import CheckpointError, ConfigError
from moscale_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from moscale_ros.generation.config import GenerationConfig
from moscale_ros.generation.vocabulary import VOCABULARY_PART, Vocabulary
from moscale_ros.models.length import LengthEstimator, LengthEstimatorConfig
from moscale_ros.models.text_encoder import TextEncoderConfig
from moscale_ros.models.tokenizer import MotionTokenizer, TokenizerConfig, load_tokenizer
from moscale_ros.models.transformer import NextScaleTransformer, TransformerConfig

GENERATOR_KIND = "generator"
NEXT_TOKEN_KIND = "next-token-generator"  # same layout, a next-token transformer (the comparison's baseline)


@dataclass
class GeneratorParts:
    """Everything a generator checkpoint holds, models in eval mode on the requested device."""

    tokenizer: MotionTokenizer
    transformer: NextScaleTransformer
    length_estimator: LengthEstimator | None
    mean_D: torch.Tensor  # noqa: N815 (shape suffix)
    std_D: torch.Tensor  # noqa: N815 (shape suffix)
    text_encoder: TextEncoderConfig
    generation: GenerationConfig
    extra: dict[str, Any] = field(default_factory=dict)
    vocabulary: Vocabulary | None = None  # the optional ``vocabulary`` part (skill prototypes)


def generator_states(
    tokenizer: MotionTokenizer,
    transformer: NextScaleTransformer,
    length_estimator: LengthEstimator | None,
    mean_D: torch.Tensor,
    std_D: torch.Tensor,
) -> dict[str, dict[str, torch.Tensor]]:
    """The tensor parts of a generator checkpoint."""
    states = {
        "tokenizer": tokenizer.state_dict(),
        "transformer": transformer.state_dict(),
        "normalization": {"mean": mean_D, "std": std_D},
    }
    if length_estimator is not None:
        states["length"] = length_estimator.state_dict()
    return states


def generator_configs(
    tokenizer: MotionTokenizer,
    transformer: NextScaleTransformer,
    length_estimator: LengthEstimator | None,
    text_encoder: TextEncoderConfig,
    generation: GenerationConfig,
) -> dict[str, Any]:
    """The config parts of a generator checkpoint."""
    configs = {
        "tokenizer": to_dict(tokenizer.cfg),
        "transformer": to_dict(transformer.cfg),
        "text_encoder": to_dict(text_encoder),
        "generation": to_dict(generation),
    }
    if length_estimator is not None:
        configs["length"] = to_dict(length_estimator.cfg)
    return configs


def save_generator(
    path: str | Path,
    tokenizer: MotionTokenizer,
    transformer: NextScaleTransformer,
    length_estimator: LengthEstimator | None,
    mean_D: torch.Tensor,
    std_D: torch.Tensor,
    text_encoder: TextEncoderConfig,
    generation: GenerationConfig | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    kind: str = GENERATOR_KIND,
) -> Path:
    """Write a slim generator checkpoint (no optimiser); ``dtype`` casts weights (fp16 to ship);
    ``kind`` marks another generation order with the same layout (the next-token baseline)."""
    return save_checkpoint(
        path,
        kind,
        states=generator_states(tokenizer, transformer, length_estimator, mean_D, std_D),
        configs=generator_configs(
            tokenizer, transformer, length_estimator, text_encoder, generation or GenerationConfig()
        ),
        extra=extra or {},
        dtype=dtype,
    )


def _config(cls, configs: dict, part: str, path: Path):
    if part not in configs:
        raise CheckpointError(f"{path}: generator checkpoint lacks the {part!r} config (has {sorted(configs)})")
    try:
        return from_dict(cls, configs[part], where=f"{path} [{part} config]")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def load_generator_parts(
    path: str | Path, device: str | torch.device = "cpu", kind: str = GENERATOR_KIND
) -> GeneratorParts:
    """Rebuild the models of a generator checkpoint (of ``kind``); anything missing or mismatched raises
    CheckpointError."""
    path = Path(path)
    ckpt = load_checkpoint(path, kind=kind, device="cpu")
    for part in ("tokenizer", "transformer", "normalization"):
        if part not in ckpt.states:
            raise CheckpointError(f"{path}: generator checkpoint lacks its {part!r} part (has {sorted(ckpt.states)})")
    tokenizer = MotionTokenizer(_config(TokenizerConfig, ckpt.configs, "tokenizer", path))
    load_state_strict(tokenizer, ckpt.states["tokenizer"], where=f"{path} [tokenizer]")
    transformer = NextScaleTransformer(_config(TransformerConfig, ckpt.configs, "transformer", path))
    load_state_strict(transformer, ckpt.states["transformer"], where=f"{path} [transformer]")
    length_estimator = None
    if "length" in ckpt.states:
        length_estimator = LengthEstimator(_config(LengthEstimatorConfig, ckpt.configs, "length", path))
        load_state_strict(length_estimator, ckpt.states["length"], where=f"{path} [length]")
        length_estimator = length_estimator.to(device).eval()
    norm = ckpt.states["normalization"]
    if "mean" not in norm or "std" not in norm:
        raise CheckpointError(f"{path}: generator checkpoint lacks the feature mean/std")
    return GeneratorParts(
        tokenizer=tokenizer.to(device).eval(),
        transformer=transformer.to(device).eval(),
        length_estimator=length_estimator,
        mean_D=norm["mean"].float().to(device),
        std_D=norm["std"].float().to(device),
        text_encoder=_config(TextEncoderConfig, ckpt.configs, "text_encoder", path),
        generation=_config(GenerationConfig, ckpt.configs, "generation", path),
        extra=dict(ckpt.extra),
        vocabulary=_vocabulary(ckpt.states, ckpt.configs, path),
    )


def load_any_tokenizer(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MotionTokenizer, torch.Tensor, torch.Tensor]:
    """``(tokenizer, mean_D, std_D)`` from a tokenizer checkpoint or from the tokenizer part of a
    generator file (e.g. the shipped model, so a new transformer can be trained on its codes without
    retraining the tokenizer); weights as float32 in eval mode."""
    if load_checkpoint(path).kind == GENERATOR_KIND:
        parts = load_generator_parts(path, device)
        return parts.tokenizer.float(), parts.mean_D, parts.std_D
    tokenizer, mean_D, std_D = load_tokenizer(path, device)
    return tokenizer.float(), mean_D, std_D


def _vocabulary(states: dict, configs: dict, path: Path) -> Vocabulary | None:
    """The ``vocabulary`` part (``moscale vocab build``), if the file has one."""
    if VOCABULARY_PART not in states:
        return None
    return Vocabulary.from_parts(states[VOCABULARY_PART], configs.get(VOCABULARY_PART, {}), str(path))
