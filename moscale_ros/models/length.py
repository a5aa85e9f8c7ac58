"""Motion-length estimator: a categorical distribution over the latent length given the text.

``p(n | text) = softmax(MLP(pooled_text))_n`` for ``n = 1 .. max_latents`` latent steps (each
``frames_per_latent`` frames). Trained with cross-entropy on the dataset's lengths, it gives a
duration when a command names none; the mode is used by default, sampling on request.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moscale_common.errors import ConfigError


@dataclass
class LengthEstimatorConfig:
    """Width of the MLP and the range of lengths it predicts."""

    text_dim: int = 384
    hidden: int = 256
    max_latents: int = 64
    frames_per_latent: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("text_dim", "hidden", "max_latents", "frames_per_latent"):
            if getattr(self, name) < 1:
                raise ConfigError(f"length.{name}: must be >= 1, got {getattr(self, name)}")


class LengthEstimator(nn.Module):
    """Pooled text ``(B, D)`` -> logits ``(B, max_latents)`` over latent lengths 1..max_latents."""

    def __init__(self, cfg: LengthEstimatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.text_dim),
            nn.Linear(cfg.text_dim, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, cfg.max_latents),
        )

    def forward(self, pooled_BD: torch.Tensor) -> torch.Tensor:
        return self.net(pooled_BD)

    def loss(self, pooled_BD: torch.Tensor, num_latents_B: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the true latent lengths (clamped into 1..max_latents)."""
        target_B = num_latents_B.clamp(1, self.cfg.max_latents) - 1
        return F.cross_entropy(self(pooled_BD), target_B.long())

    @torch.no_grad()
    def predict_latents(
        self, pooled_BD: torch.Tensor, min_latents: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Latent lengths ``(B,)``: the mode, or a sample when ``generator`` is given; at least ``min_latents``."""
        logits_BK = self(pooled_BD).float()
        if min_latents > 1:
            logits_BK[:, : min_latents - 1] = float("-inf")
        if generator is None:
            index_B = logits_BK.argmax(-1)
        else:
            index_B = torch.multinomial(logits_BK.softmax(-1), 1, generator=generator).squeeze(-1)
        return index_B + 1
