"""Settings of generation (not of the model): refinement, guidance, sampling, limits, seams; and the
sampling overrides a caller (the node, ``moscale generate``, ``moscale eval``) puts on top of them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from moscale_common.config import from_dict, to_dict
from moscale_common.errors import ConfigError

RefineSchedule = Literal["cosine", "linspace_cosine"]  # tokens re-masked between passes (generation.sampling)


@dataclass
class GenerationConfig:
    """How :class:`~moscale_ros.generation.generator.MotionGenerator` samples.

    ``refine_iterations[k]``: in-scale refinement passes of scale k+1 (the last entry repeats for
    further scales; all 1 = plain one-shot next-scale prediction); ``refine_schedule`` how many tokens
    each pass re-masks (:mod:`~moscale_ros.generation.sampling`). Guidance decays linearly from
    ``guidance`` at scale 1 to ``guidance_end`` at scale K; a scale of exactly 1 skips the
    unconditional pass. ``temperature`` 0 is greedy. ``default_seconds`` is used when a request
    gives no duration and the model has no length estimator. ``blend_frames``: frames over which
    a generated motion is eased onto fixed frames (continuation, range editing). ``num_threads``:
    torch CPU threads while generating (set per step and restored; 0 leaves torch's setting):
    the default model's small matrices run fastest on one thread, and one thread keeps its
    latency when other processes load the cores (``moscale bench generation`` measures both).
    """

    refine_iterations: list[int] = field(default_factory=lambda: [1, 1, 2, 2])
    refine_schedule: RefineSchedule = "cosine"
    guidance: float = 4.0
    guidance_end: float = 3.0
    top_p: float = 0.9
    temperature: float = 1.0
    max_text_chars: int = 300
    min_seconds: float = 0.4
    max_seconds: float | None = None
    default_seconds: float = 4.0
    blend_frames: int = 8
    num_threads: int = 1

    def __post_init__(self) -> None:
        if not self.refine_iterations or any(n < 1 for n in self.refine_iterations):
            raise ConfigError(f"generation.refine_iterations: expected positive integers, got {self.refine_iterations}")
        for name in ("guidance", "guidance_end", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"generation.{name}: must be a finite number >= 0, got {value!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"generation.top_p: must be in (0, 1], got {self.top_p!r}")
        if self.max_text_chars < 1:
            raise ConfigError(f"generation.max_text_chars: must be >= 1, got {self.max_text_chars}")
        if not (math.isfinite(self.min_seconds) and self.min_seconds > 0):
            raise ConfigError(f"generation.min_seconds: must be > 0, got {self.min_seconds!r}")
        max_ok = self.max_seconds is None or (math.isfinite(self.max_seconds) and self.max_seconds >= self.min_seconds)
        if not max_ok:
            raise ConfigError(
                f"generation.max_seconds: must be >= min_seconds ({self.min_seconds}) or null, got {self.max_seconds!r}"
            )
        if not (math.isfinite(self.default_seconds) and self.default_seconds >= self.min_seconds):
            raise ConfigError(f"generation.default_seconds: must be >= min_seconds, got {self.default_seconds!r}")
        if self.num_threads < 0:
            raise ConfigError(f"generation.num_threads: must be >= 0, got {self.num_threads}")
        if self.blend_frames < 0:
            raise ConfigError(f"generation.blend_frames: must be >= 0, got {self.blend_frames}")

    def iterations_for(self, num_scales: int) -> list[int]:
        """Refinement passes of each of ``num_scales`` scales."""
        its = list(self.refine_iterations)
        return (its + [its[-1]] * num_scales)[:num_scales]


@dataclass(frozen=True)
class SamplingOverrides:
    """Sampling settings that replace a checkpoint's :class:`GenerationConfig` ones; ``None`` keeps
    the checkpoint's. One type for the node (its parameters turn ROS's ``-1`` / ``[0]`` placeholders
    into ``None``, see :mod:`moscale_ros.node.parameters`), ``moscale generate`` and ``moscale eval``
    (flags named as the fields, :meth:`from_args`)."""

    refine_iterations: list[int] | None = None
    refine_schedule: RefineSchedule | None = None
    guidance: float | None = None
    guidance_end: float | None = None
    top_p: float | None = None
    temperature: float | None = None

    def changes(self) -> dict[str, Any]:
        """``{field: value}`` of the fields that are set."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def apply(self, config: GenerationConfig) -> GenerationConfig:
        """``config`` with the set fields replaced, schema-checked (ConfigError names a bad value)."""
        changes = self.changes()
        if not changes:
            return config
        return from_dict(GenerationConfig, {**to_dict(config), **changes}, where="generation overrides")

    @classmethod
    def from_args(cls, args: Any) -> SamplingOverrides:
        """The overrides of parsed command-line flags named as the fields (absent or None: unset)."""
        return cls(**{f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)})
