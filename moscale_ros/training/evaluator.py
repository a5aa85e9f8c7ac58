"""``moscale train evaluator``: train the text-motion evaluator (see :mod:`.model`) on prepared clips.

One step: a batch of training windows (whole clips up to ``max_frames``, random crop of longer ones,
optionally mirrored left/right) with one random training description each; loss

    InfoNCE(t, m; tau, same-label pairs left out) + w_cls (CE(content) + CE(style concept)).

Validation (deterministic centred windows, each clip's first description) reports the loss,
R-precision top-1/3 in groups of 32 and the classifiers' accuracies; ``best.safetensors`` keeps the
lowest ``val_loss``. The run directory (default ``cache/runs/evaluator``) gets ``evaluator.safetensors``,
the slim checkpoint ``moscale eval`` loads.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from moscale_common.config import to_dict
from moscale_common.errors import ConfigError
from moscale_ros.data.dataset import MotionTextBatches, MotionTextDataset, load_prepared, normalization
from moscale_ros.data.prepared import PreparedData
from moscale_ros.data.text import style_concept
from moscale_ros.evaluation.metrics import r_precision
from moscale_ros.evaluation.model import (
    CHECKPOINT_KIND,
    EVALUATOR_FILE,
    EvaluatorConfig,
    TextMotionEvaluator,
    contrastive_loss,
    evaluator_configs,
    save_evaluator,
)
from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig
from moscale_ros.models.transformer import count_parameters
from moscale_ros.training.common import Checkpointed, LoopConfig, TrainingSession, run_training, train_command


@dataclass
class EvaluatorDataConfig:
    """Prepared clips and the windows cut from them."""

    cache_dir: str | None = None
    min_frames: int = 24
    max_frames: int = 196
    mirror_prob: float = 0.5
    crop_prob: float = 0.0
    val_split: str = "val"

    def __post_init__(self) -> None:
        if not 4 <= self.min_frames <= self.max_frames:
            raise ConfigError(
                f"data.min_frames/max_frames: need 4 <= min <= max, got {self.min_frames}/{self.max_frames}"
            )
        if not 0.0 <= self.mirror_prob <= 1.0:
            raise ConfigError(f"data.mirror_prob: must be in [0, 1], got {self.mirror_prob}")
        if not 0.0 <= self.crop_prob <= 1.0:
            raise ConfigError(f"data.crop_prob: must be in [0, 1], got {self.crop_prob}")


@dataclass
class EvaluatorLossConfig:
    """Contrastive temperature and the classifiers' weight."""

    temperature: float = 0.1
    classifier_weight: float = 1.0
    filter_same_label: bool = True

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"loss.temperature: must be > 0, got {self.temperature}")
        if self.classifier_weight < 0:
            raise ConfigError(f"loss.classifier_weight: must be >= 0, got {self.classifier_weight}")


@dataclass
class EvaluatorTrainConfig:
    """The whole of ``config/train/evaluator.yaml``."""

    text_encoder: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(cache_size=0))
    model: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    data: EvaluatorDataConfig = field(default_factory=EvaluatorDataConfig)
    loss: EvaluatorLossConfig = field(default_factory=EvaluatorLossConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    precision: Literal["fp32", "bf16"] = "fp32"


def style_concepts(styles: list[str]) -> tuple[list[str], torch.Tensor]:
    """The sorted style concepts of dataset style labels, and ``(S_labels,)`` label -> concept index."""
    concepts = sorted({style_concept(s) for s in styles})
    return concepts, torch.tensor([concepts.index(style_concept(s)) for s in styles], dtype=torch.long)


def evaluator_batches(
    prepared: PreparedData,
    split: str,
    cfg: EvaluatorDataConfig,
    style_map: torch.Tensor,
    deterministic: bool,
    mirror_prob: float = 0.0,
    crop_prob: float = 0.0,
) -> MotionTextBatches:
    """Normalised windows of one split with their description and labels (style as concept index)."""

    def style_concept_labels(batch: dict) -> dict:
        batch["style_B"] = style_map[batch["style_B"]]
        return batch

    dataset = MotionTextDataset(
        prepared,
        split,
        cfg.max_frames,
        cfg.min_frames,
        deterministic=deterministic,
        mirror_prob=mirror_prob,
        crop_prob=crop_prob,
    )
    return MotionTextBatches(dataset, style_concept_labels)


def evaluator_loss(
    model: TextMotionEvaluator, pooled_BD: torch.Tensor, batch: dict, cfg: EvaluatorLossConfig, device: torch.device
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    """Loss of a batch, its parts, and the text and motion embeddings."""
    feats_BTD, lengths_B = batch["feats_BTD"].to(device), batch["lengths_B"].to(device)
    content_B, style_B = batch["content_B"].to(device), batch["style_B"].to(device)
    out = model.encode_motion(feats_BTD, lengths_B)
    text_BE = model.encode_text(pooled_BD.to(device))
    same_BB = torch.zeros(len(content_B), len(content_B), dtype=torch.bool, device=device)
    if cfg.filter_same_label:
        same_BB = (content_B[:, None] == content_B[None, :]) & (style_B[:, None] == style_B[None, :])
    nce = contrastive_loss(text_BE.float(), out.embedding_BE.float(), same_BB, cfg.temperature)
    content_ce = F.cross_entropy(out.content_logits_BC.float(), content_B)
    style_ce = F.cross_entropy(out.style_logits_BS.float(), style_B)
    loss = nce + cfg.classifier_weight * (content_ce + style_ce)
    parts = {
        "loss": loss.item(),
        "nce": nce.item(),
        "content_ce": content_ce.item(),
        "style_ce": style_ce.item(),
        "content_acc": float((out.content_logits_BC.argmax(-1) == content_B).float().mean()),
        "style_acc": float((out.style_logits_BS.argmax(-1) == style_B).float().mean()),
    }
    return loss, parts, text_BE.detach(), out.embedding_BE.detach()


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the evaluator; writes ``last``/``best``/``evaluator.safetensors`` in the run dir."""
    return train_command(args, EvaluatorTrainConfig, "evaluator", _train)


def _train(cfg: EvaluatorTrainConfig, session: TrainingSession) -> int:
    device, run_dir = session.device, session.run_dir
    prepared = load_prepared(cfg.data.cache_dir, load_joints=False)
    styles, style_map = style_concepts(prepared.styles)
    train_data = evaluator_batches(
        prepared, "train", cfg.data, style_map, False, cfg.data.mirror_prob, cfg.data.crop_prob
    )
    val_data = evaluator_batches(prepared, cfg.data.val_split, cfg.data, style_map, True)
    text_encoder = TextEncoder(cfg.text_encoder, device=device)
    model_cfg = replace(
        cfg.model,
        text_dim=text_encoder.dim,
        max_frames=cfg.data.max_frames,
        num_contents=len(prepared.contents),
        num_styles=len(styles),
    )
    model = TextMotionEvaluator(model_cfg).to(device)
    mean_D, std_D = normalization(prepared)
    print(
        f"evaluator: {count_parameters(model) / 1e6:.2f} M trainable parameters; text encoder {text_encoder.name}; "
        f"{len(train_data)} training clips, {len(val_data)} {cfg.data.val_split} clips; {len(prepared.contents)} "
        f"contents, {len(styles)} style concepts; device {device}, {session.threads} CPU threads",
        file=sys.stderr,
    )
    pooled_cache: dict[str, torch.Tensor] = {}

    def pooled(texts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in pooled_cache))
        if missing:
            pooled_cache.update(zip(missing, text_encoder.encode(missing).pooled_BD.float().cpu()))
        return torch.stack([pooled_cache[t] for t in texts])

    optimizer = session.adamw(model.parameters())
    configs = evaluator_configs(model, cfg.text_encoder, prepared.contents, styles)
    configs["train"] = to_dict(cfg)
    norm = {"mean": mean_D, "std": std_D}
    amp = cfg.precision == "bf16"

    def train_step(step: int) -> dict[str, float]:
        model.train()
        batch = train_data.sample(cfg.train.batch_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts, _, _ = evaluator_loss(model, pooled(batch["texts"]), batch, cfg.loss, device)
        session.step(optimizer, loss, model.parameters())
        return parts

    @torch.no_grad()
    def validate() -> dict[str, float]:
        model.eval()
        sums: dict[str, float] = {}
        texts, motions = [], []
        for start in range(0, len(val_data), cfg.train.batch_size):
            rows = list(range(start, min(start + cfg.train.batch_size, len(val_data))))
            batch = val_data.batch(rows)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                _, parts, text_BE, motion_BE = evaluator_loss(model, pooled(batch["texts"]), batch, cfg.loss, device)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * len(rows)
            texts.append(text_BE.float().cpu().numpy())
            motions.append(motion_BE.float().cpu().numpy())
        metrics = {f"val_{k}": v / len(val_data) for k, v in sums.items()}
        top_K = r_precision(np.concatenate(texts), np.concatenate(motions), rng=np.random.default_rng(0))
        metrics.update({"val_r1": float(top_K[0]), "val_r3": float(top_K[2])})
        return metrics

    saved = Checkpointed(CHECKPOINT_KIND, {"evaluator": model}, optimizer, configs, {"normalization": norm})
    result = run_training(session, cfg, saved, train_step, validate, best_key="val_loss", desc="evaluator")
    slim = save_evaluator(
        run_dir.path / EVALUATOR_FILE,
        model,
        mean_D,
        std_D,
        cfg.text_encoder,
        prepared.contents,
        styles,
        extra={
            "step": result.step,
            "elapsed_s": result.elapsed_s,
            "data": str(prepared.cache_dir),
            "val": result.last_val,
        },
    )
    shown = ", ".join(f"{k}={v:.4g}" for k, v in result.last_val.items())
    print(
        f"evaluator: step {result.step} ({result.stopped_by}); {result.elapsed_s / 60:.1f} min of training; "
        f"wrote {run_dir.last} and {slim}\nvalidation: {shown}"
    )
    return 0
