"""The text-motion evaluator: a motion encoder and a text head into one embedding space (in the
spirit of TMR, Petrovich et al., ICCV 2023), plus content and style classifiers on the motion.

Motion: normalised 263-d features ``(B, T, D)`` -> strided 1-D convolutions (time / 2 per layer)
-> a learned summary token and positions -> transformer encoder (padding masked) -> ``h_BW`` (the
summary token). From ``h``: the motion embedding ``m = normalize(W_m h)``, content logits and
style logits. Text: the frozen sentence encoder's pooled vector ``p`` -> MLP ->
``t = normalize(W_t p)``. Both embeddings lie on the unit sphere of ``R^E``.

Training (:mod:`.train`) uses the symmetric InfoNCE loss on ``t_i . m_j / tau`` where pairs of
another clip with the same content and style label are neither positives nor negatives (TMR filters
such near-duplicate negatives by text similarity; here the labels are known), plus the two
classifiers' cross-entropies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moscale_common.config import from_dict, to_dict
from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from moscale_ros.data.text import style_concept
from moscale_ros.models.resample import lengths_mask
from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig

CHECKPOINT_KIND = "evaluator"
EVALUATOR_FILE = "evaluator.safetensors"  # the slim checkpoint `moscale train evaluator` writes


@dataclass
class EvaluatorConfig:
    """Sizes of the evaluator (the ``model:`` section of ``config/train/evaluator.yaml``).

    ``num_contents``/``num_styles``/``text_dim`` are filled in from the data and the text encoder.
    """

    feature_dim: int = 263
    width: int = 256
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    downsample: int = 2
    embed_dim: int = 256
    text_dim: int = 384
    text_hidden: int = 512
    max_frames: int = 196
    num_contents: int = 1
    num_styles: int = 1

    def __post_init__(self) -> None:
        for name in (
            "feature_dim",
            "width",
            "depth",
            "num_heads",
            "embed_dim",
            "text_dim",
            "text_hidden",
            "max_frames",
            "num_contents",
            "num_styles",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ConfigError(f"model.width {self.width} is not divisible by model.num_heads {self.num_heads}")
        if not 0 <= self.downsample <= 4:
            raise ConfigError(f"model.downsample: must be in 0..4, got {self.downsample}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {self.dropout}")

    @property
    def max_tokens(self) -> int:
        return -(-self.max_frames // 2**self.downsample)


class MotionEncoder(nn.Module):
    """``(B, T, D)`` normalised features (zero past each length) -> summary ``(B, W)``."""

    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        W = cfg.width
        layers: list[nn.Module] = []
        channels = cfg.feature_dim
        for _ in range(cfg.downsample):
            layers += [nn.Conv1d(channels, W, kernel_size=3, stride=2, padding=1), nn.GELU()]
            channels = W
        if not layers:
            layers = [nn.Conv1d(channels, W, kernel_size=1)]
        self.stem = nn.Sequential(*layers)
        self.summary_W = nn.Parameter(0.02 * torch.randn(W))
        self.position_SW = nn.Parameter(0.02 * torch.randn(cfg.max_tokens + 1, W))
        layer = nn.TransformerEncoderLayer(
            W, cfg.num_heads, int(W * cfg.mlp_ratio), cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(W)

    def token_lengths(self, lengths_B: torch.Tensor) -> torch.Tensor:
        """Valid steps after the stem: ``ceil(T_b / 2^downsample)``."""
        factor = 2**self.cfg.downsample
        return (lengths_B + factor - 1) // factor

    def forward(self, feats_BTD: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
        x_BSW = self.stem(feats_BTD.transpose(1, 2)).transpose(1, 2)
        valid_BS = lengths_mask(self.token_lengths(lengths_B), x_BSW.shape[1])
        x_BSW = x_BSW * valid_BS[..., None].to(x_BSW.dtype)
        summary_B1W = self.summary_W.expand(x_BSW.shape[0], 1, -1)
        x_BSW = torch.cat([summary_B1W, x_BSW], dim=1) + self.position_SW[: x_BSW.shape[1] + 1]
        pad_BS = ~torch.cat([torch.ones_like(valid_BS[:, :1]), valid_BS], dim=1)
        return self.norm(self.encoder(x_BSW, src_key_padding_mask=pad_BS)[:, 0])


@dataclass
class MotionOutput:
    """Unit-norm motion embeddings ``(B, E)`` and the classifiers' logits."""

    embedding_BE: torch.Tensor  # noqa: N815 (shape suffix)
    content_logits_BC: torch.Tensor  # noqa: N815 (shape suffix)
    style_logits_BS: torch.Tensor  # noqa: N815 (shape suffix)


class TextMotionEvaluator(nn.Module):
    """Motion encoder + projections into the shared space, the text head and the two classifiers."""

    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.motion_encoder = MotionEncoder(cfg)
        self.motion_proj = nn.Linear(cfg.width, cfg.embed_dim)
        self.content_head = nn.Linear(cfg.width, cfg.num_contents)
        self.style_head = nn.Linear(cfg.width, cfg.num_styles)
        self.text_head = nn.Sequential(
            nn.LayerNorm(cfg.text_dim),
            nn.Linear(cfg.text_dim, cfg.text_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.text_hidden, cfg.embed_dim),
        )

    def encode_motion(self, feats_BTD: torch.Tensor, lengths_B: torch.Tensor) -> MotionOutput:
        h_BW = self.motion_encoder(feats_BTD, lengths_B)
        return MotionOutput(F.normalize(self.motion_proj(h_BW), dim=-1), self.content_head(h_BW), self.style_head(h_BW))

    def encode_text(self, pooled_BD: torch.Tensor) -> torch.Tensor:
        """Unit-norm text embeddings ``(B, E)`` from the sentence encoder's pooled vectors."""
        return F.normalize(self.text_head(pooled_BD), dim=-1)


def contrastive_loss(
    text_BE: torch.Tensor, motion_BE: torch.Tensor, same_label_BB: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE on ``s_ij = t_i . m_j / tau``; off-diagonal pairs flagged in ``same_label_BB``
    are left out of both softmax denominators (they are not negatives)."""
    logits_BB = text_BE @ motion_BE.T / temperature
    B = logits_BB.shape[0]
    eye_BB = torch.eye(B, dtype=torch.bool, device=logits_BB.device)
    logits_BB = logits_BB.masked_fill(same_label_BB & ~eye_BB, float("-inf"))
    targets_B = torch.arange(B, device=logits_BB.device)
    return 0.5 * (F.cross_entropy(logits_BB, targets_B) + F.cross_entropy(logits_BB.T, targets_B))


# ---- checkpoints and the ready-to-use evaluator ------------------------------------------------------------


def save_evaluator(
    path: str | Path,
    model: TextMotionEvaluator,
    mean_D: torch.Tensor,
    std_D: torch.Tensor,
    text_encoder: TextEncoderConfig,
    contents: list[str],
    styles: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """A slim evaluator checkpoint: weights, config, feature mean/std, text encoder name, label names."""
    return save_checkpoint(
        path,
        CHECKPOINT_KIND,
        states={"evaluator": model.state_dict(), "normalization": {"mean": mean_D, "std": std_D}},
        configs=evaluator_configs(model, text_encoder, contents, styles),
        extra=extra or {},
    )


def evaluator_configs(
    model: TextMotionEvaluator, text_encoder: TextEncoderConfig, contents: list[str], styles: list[str]
) -> dict[str, Any]:
    return {
        "evaluator": to_dict(model.cfg),
        "text_encoder": to_dict(text_encoder),
        "labels": {"contents": list(contents), "styles": list(styles)},
    }


@dataclass
class EmbeddedMotions:
    """Evaluator outputs for a list of motions: embeddings ``(N, E)`` and predicted label indices ``(N,)``."""

    embedding_NE: np.ndarray  # noqa: N815 (shape suffix)
    content_N: np.ndarray  # noqa: N815 (shape suffix)
    style_N: np.ndarray  # noqa: N815 (shape suffix)


@dataclass
class Evaluator:
    """A trained evaluator ready for the metrics: embeds motions (un-normalised ``(T, 263)`` features)
    and texts, and classifies motions by content and style (label names in ``contents``/``styles``;
    style labels are style concepts, see :func:`moscale_ros.data.text.style_concept`)."""

    model: TextMotionEvaluator
    text_encoder: TextEncoder
    mean_D: torch.Tensor  # noqa: N815 (shape suffix)
    std_D: torch.Tensor  # noqa: N815 (shape suffix)
    contents: list[str]
    styles: list[str]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _pooled: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.mean_D.device

    @property
    def max_frames(self) -> int:
        return self.model.cfg.max_frames

    def content_index(self, content: str) -> int:
        """Class index of a content label (-1 when the evaluator does not know it)."""
        return self.contents.index(content) if content in self.contents else -1

    def style_index(self, style: str) -> int:
        """Class index of a dataset style label, through its style concept (-1 when unknown)."""
        concept = style_concept(style)
        return self.styles.index(concept) if concept in self.styles else -1

    def pooled_text(self, texts: list[str]) -> torch.Tensor:
        """``(B, D)`` pooled sentence-encoder vectors (memoised per text)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._pooled))
        for start in range(0, len(missing), 256):
            chunk = missing[start : start + 256]
            pooled_BD = self.text_encoder.encode(chunk).pooled_BD.float().cpu()
            self._pooled.update(zip(chunk, pooled_BD))
        return torch.stack([self._pooled[t] for t in texts]).to(self.device)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """``(N, E)`` unit-norm text embeddings."""
        if not texts:
            raise InputError("evaluator: no texts to embed")
        self.model.eval()
        return self.model.encode_text(self.pooled_text(list(texts))).cpu().double().numpy()

    @torch.no_grad()
    def embed_motions(self, motions: list[np.ndarray], batch_size: int = 128) -> EmbeddedMotions:
        """Embeddings and predicted labels of un-normalised ``(T, 263)`` feature arrays (any lengths
        from 4 to ``max_frames``)."""
        if not motions:
            raise InputError("evaluator: no motions to embed")
        dim = self.mean_D.shape[0]
        for i, m in enumerate(motions):
            if m.ndim != 2 or m.shape[1] != dim or not 4 <= m.shape[0] <= self.max_frames:
                raise InputError(
                    f"evaluator: motion {i} has shape {tuple(m.shape)}; expected (T, {dim}) with "
                    f"4 <= T <= {self.max_frames}"
                )
        self.model.eval()
        order = sorted(range(len(motions)), key=lambda i: motions[i].shape[0])
        emb, content, style = [None] * len(motions), [None] * len(motions), [None] * len(motions)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            lengths_B = torch.tensor([motions[i].shape[0] for i in rows], device=self.device)
            feats_BTD = torch.zeros(len(rows), int(lengths_B.max()), dim, device=self.device)
            for b, i in enumerate(rows):
                feats_BTD[b, : motions[i].shape[0]] = torch.as_tensor(np.asarray(motions[i]), device=self.device)
            valid_BT1 = lengths_mask(lengths_B, feats_BTD.shape[1])[..., None]
            feats_BTD = (feats_BTD - self.mean_D) / self.std_D * valid_BT1
            out = self.model.encode_motion(feats_BTD, lengths_B)
            for b, i in enumerate(rows):
                emb[i] = out.embedding_BE[b].double().cpu().numpy()
                content[i] = int(out.content_logits_BC[b].argmax())
                style[i] = int(out.style_logits_BS[b].argmax())
        return EmbeddedMotions(np.stack(emb), np.array(content), np.array(style))


def load_evaluator(
    path: str | Path, device: str | torch.device = "cpu", text_encoder: TextEncoder | None = None
) -> Evaluator:
    """An :class:`Evaluator` from an evaluator checkpoint (training ``last``/``best`` or slim).

    A missing or foreign file, or weights that do not fit the stored config, raise CheckpointError.
    """
    path = Path(path)
    ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, device="cpu")
    for part in ("evaluator", "normalization"):
        if part not in ckpt.states:
            raise CheckpointError(f"{path}: evaluator checkpoint lacks its {part!r} part (has {sorted(ckpt.states)})")
    for part in ("evaluator", "text_encoder", "labels"):
        if part not in ckpt.configs:
            raise CheckpointError(f"{path}: evaluator checkpoint lacks its {part!r} config")
    try:
        cfg = from_dict(EvaluatorConfig, ckpt.configs["evaluator"], where=f"{path} [evaluator config]")
        text_cfg = from_dict(TextEncoderConfig, ckpt.configs["text_encoder"], where=f"{path} [text_encoder config]")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    model = TextMotionEvaluator(cfg)
    load_state_strict(model, ckpt.states["evaluator"], where=f"{path} [evaluator]")
    if text_encoder is None:
        text_encoder = TextEncoder(text_cfg, device=device)
    elif text_encoder.name != text_cfg.name:
        raise CheckpointError(
            f"{path}: evaluator was trained with text encoder {text_cfg.name!r}, got {text_encoder.name!r}"
        )
    if text_encoder.dim != cfg.text_dim:
        raise CheckpointError(
            f"{path}: evaluator expects {cfg.text_dim}-d text features, the text encoder gives {text_encoder.dim}"
        )
    norm = ckpt.states["normalization"]
    labels = ckpt.configs["labels"]
    return Evaluator(
        model=model.to(device).eval(),
        text_encoder=text_encoder,
        mean_D=norm["mean"].float().to(device),
        std_D=norm["std"].float().to(device),
        contents=list(labels.get("contents", [])),
        styles=list(labels.get("styles", [])),
        path=path,
        extra=dict(ckpt.extra),
    )
