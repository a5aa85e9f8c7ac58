"""``moscale train transformer``: train the next-scale transformer (and the length estimator)
on a trained tokenizer's codes of the prepared motion-text clips.

One step, for a batch of (motion window, description):

1. Cross-scale hierarchical refinement: quantise the motion with the frozen tokenizer while a
   random fraction ``rho ~ U(0, corrupt_max)`` (for a ``corrupt_prob`` share of the samples) of
   each coarser scale's codes is replaced by random codes (with ``corrupt_distinct``, always a code
   other than the true one) before the finer scales see the residual. Targets of scale k are the
   quantiser's codes given the corrupted coarser scales, i.e. finer scales learn to correct coarse
   mistakes (MoScale: up to 60 %).
2. In-scale masked modelling (MaskGIT): per sample and scale, a share ``cos(pi/2 u)``,
   ``u ~ U(0, 1)``, of the tokens (all of them with probability ``full_mask_prob``) is selected.
   A selected token becomes the mask token with probability ``mask_fraction``, a random code with
   ``random_fraction``, and stays as it is otherwise (BERT's 80/10/10 is 0.8 / 0.1). A share
   ``visible_noise`` of the other (visible) tokens is replaced by random codes. The visible tokens
   are the quantiser's clean codes (``context: clean``) or the codes it actually accumulated,
   corruption included (``context: corrupted``, as generation sees its own earlier samples). The
   loss is the cross-entropy on the selected tokens and on every visible token that differs from
   its target.
3. Condition dropout: the text is replaced by the learned null text with ``cond_drop_prob``.
4. Length estimator: cross-entropy of the latent length from the pooled text (not dropped).

Validation reports the one-shot (all tokens masked, clean inputs) cross-entropy and accuracy
per scale on held-out windows and the length estimator's error; ``best.safetensors`` keeps the
lowest ``val_loss``. At the end the run directory gets ``model.safetensors``: the slim generator
checkpoint that ``moscale generate --checkpoint`` and ``MotionGenerator.from_checkpoint`` load.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from moscale_common.config import to_dict
from moscale_common.errors import ConfigError
from moscale_common.paths import local_or_resource
from moscale_ros.data.dataset import MotionTextBatches, MotionTextDataset, load_prepared
from moscale_ros.data.prepared import PreparedData
from moscale_ros.generation.bundle import GENERATOR_KIND, generator_configs, load_any_tokenizer, save_generator
from moscale_ros.generation.config import GenerationConfig
from moscale_ros.models.length import LengthEstimator, LengthEstimatorConfig
from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig
from moscale_ros.models.tokenizer import MotionTokenizer
from moscale_ros.models.transformer import NextScaleTransformer, TransformerConfig, count_parameters
from moscale_ros.training.common import Checkpointed, LoopConfig, TrainingSession, run_training, train_command


@dataclass
class TransformerDataConfig:
    """Prepared clips and the windows cut from them (full clips up to ``max_frames``)."""

    cache_dir: str | None = None
    min_frames: int = 24
    max_frames: int = 196
    val_split: str = "val"
    val_max_clips: int | None = 256
    mirror_prob: float = 0.0  # left-right mirrored training windows (description and content mirrored too)
    content_power: float = 0.0  # oversample rare contents: clip weight n_content^-power (1: contents equally)

    def __post_init__(self) -> None:
        if not 4 <= self.min_frames <= self.max_frames:
            raise ConfigError(
                f"data.min_frames/max_frames: need 4 <= min <= max, got {self.min_frames}/{self.max_frames}"
            )
        for name in ("mirror_prob", "content_power"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"data.{name}: must be in [0, 1], got {getattr(self, name)}")


@dataclass
class MaskingConfig:
    """Cross-scale corruption and in-scale masking (see the module docstring)."""

    corrupt_max: float = 0.6
    corrupt_prob: float = 0.5
    full_mask_prob: float = 0.1
    corrupt_distinct: bool = False  # a corrupted code is never the true one
    mask_fraction: float = 1.0  # of the selected tokens: share replaced by the mask token
    random_fraction: float = 0.0  # ... by a random code (the rest stays)
    visible_noise: float = 0.0  # share of the visible tokens replaced by random codes
    context: Literal["clean", "corrupted"] = "clean"  # visible tokens: clean codes or the accumulated ones

    def __post_init__(self) -> None:
        for name in ("corrupt_max", "corrupt_prob", "full_mask_prob", "mask_fraction", "random_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"masking.{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.mask_fraction + self.random_fraction > 1.0 + 1e-9:
            raise ConfigError(
                "masking.mask_fraction + random_fraction: must be <= 1, got "
                f"{self.mask_fraction} + {self.random_fraction}"
            )
        if not 0.0 <= self.visible_noise < 0.5:
            raise ConfigError(f"masking.visible_noise: must be in [0, 0.5), got {self.visible_noise}")


@dataclass
class TransformerLossConfig:
    """Label smoothing of the token loss and the weight of the length estimator's loss."""

    label_smoothing: float = 0.1
    length_weight: float = 0.1


@dataclass
class TransformerTrainConfig:
    """The whole of ``config/train/transformer.yaml``.

    ``model.codebook_size``/``code_dim``/``text_dim``/``max_latents`` and the length estimator's
    sizes are taken from the tokenizer, the text encoder and ``data.max_frames``.
    """

    tokenizer: str = "cache/runs/tokenizer/tokenizer.safetensors"
    text_encoder: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(cache_size=32768))
    model: TransformerConfig = field(default_factory=TransformerConfig)
    length: LengthEstimatorConfig = field(default_factory=LengthEstimatorConfig)
    data: TransformerDataConfig = field(default_factory=TransformerDataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    loss: TransformerLossConfig = field(default_factory=TransformerLossConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    precision: Literal["fp32", "bf16"] = "fp32"


# ---- masking ------------------------------------------------------------------------------------


def random_codes_like(idx_BL: torch.Tensor, codebook_size: int, distinct: bool = False) -> torch.Tensor:
    """Uniformly random codes ``(B, L)``; with ``distinct`` uniform over the codes other than ``idx_BL``'s:
    ``(idx + U{1, V-1}) mod V``."""
    if distinct:
        offset_BL = torch.randint(1, codebook_size, idx_BL.shape, device=idx_BL.device)
        return (idx_BL + offset_BL) % codebook_size
    return torch.randint(0, codebook_size, idx_BL.shape, device=idx_BL.device)


def corrupt_codes(
    idx_BL: torch.Tensor,
    valid_BL: torch.Tensor,
    codebook_size: int,
    corrupt_max: float,
    corrupt_prob: float,
    distinct: bool = False,
) -> torch.Tensor:
    """Replace a share ``rho_b ~ U(0, corrupt_max)`` of sample b's valid codes (for a
    ``corrupt_prob`` share of the samples) by random codes (``distinct``: never the true code)."""
    B, L = idx_BL.shape
    device = idx_BL.device
    rho_B = torch.rand(B, device=device) * corrupt_max * (torch.rand(B, device=device) < corrupt_prob)
    replace_BL = (torch.rand(B, L, device=device) < rho_B[:, None]) & valid_BL
    return torch.where(replace_BL, random_codes_like(idx_BL, codebook_size, distinct), idx_BL)


def mask_tokens(
    idx_BL: torch.Tensor, valid_BL: torch.Tensor, mask_id: int, full_mask_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskGIT masking of one scale: ``(tokens_in_BL, masked_BL)``; at least one valid token per
    sample is masked, a share ``cos(pi/2 u)`` of them, or all with ``full_mask_prob``."""
    B, L = idx_BL.shape
    device = idx_BL.device
    ratio_B = torch.cos(0.5 * math.pi * torch.rand(B, device=device))
    ratio_B = torch.where(torch.rand(B, device=device) < full_mask_prob, torch.ones_like(ratio_B), ratio_B)
    count_B = valid_BL.sum(1)
    num_masked_B = torch.minimum(torch.ceil(ratio_B * count_B).long().clamp(min=1), count_B)
    score_BL = torch.rand(B, L, device=device).masked_fill(~valid_BL, 2.0)
    rank_BL = score_BL.argsort(dim=1).argsort(dim=1)
    masked_BL = (rank_BL < num_masked_B[:, None]) & valid_BL
    return idx_BL.masked_fill(masked_BL, mask_id), masked_BL


def noisy_tokens(
    visible_BL: torch.Tensor,
    target_BL: torch.Tensor,
    valid_BL: torch.Tensor,
    mask_id: int,
    codebook_size: int,
    masking: MaskingConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input tokens of one training scale and where the loss applies: ``(tokens_in_BL, loss_BL)``.

    ``visible_BL`` are the codes a sample shows where nothing is selected (clean or accumulated,
    per ``masking.context``), ``target_BL`` the codes to predict. Selection as :func:`mask_tokens`;
    selected tokens become the mask token (``mask_fraction``), a random code (``random_fraction``)
    or stay; ``visible_noise`` of the rest become random codes. Loss: selected tokens, and visible
    ones that differ from their target. With the defaults (1, 0, 0, clean) this is :func:`mask_tokens`.
    """
    _, selected_BL = mask_tokens(target_BL, valid_BL, mask_id, masking.full_mask_prob)
    tokens_BL = visible_BL
    if masking.visible_noise > 0:
        noise_BL = (torch.rand(visible_BL.shape, device=visible_BL.device) < masking.visible_noise) & valid_BL
        tokens_BL = torch.where(noise_BL, random_codes_like(visible_BL, codebook_size), tokens_BL)
    if masking.mask_fraction < 1.0:
        draw_BL = torch.rand(visible_BL.shape, device=visible_BL.device)
        to_mask_BL = selected_BL & (draw_BL < masking.mask_fraction)
        to_random_BL = (
            selected_BL
            & (draw_BL >= masking.mask_fraction)
            & (draw_BL < masking.mask_fraction + masking.random_fraction)
        )
        tokens_BL = torch.where(to_random_BL, random_codes_like(target_BL, codebook_size), tokens_BL)
    else:
        to_mask_BL = selected_BL
    tokens_BL = tokens_BL.masked_fill(to_mask_BL, mask_id)
    loss_BL = selected_BL | ((tokens_BL != target_BL) & valid_BL & ~to_mask_BL)
    return tokens_BL, loss_BL


# ---- data ---------------------------------------------------------------------------------------


def clip_batches(
    prepared: PreparedData,
    split: str,
    cfg: TransformerDataConfig,
    multiple: int,
    mean_D: torch.Tensor,
    std_D: torch.Tensor,
    deterministic: bool = False,
) -> MotionTextBatches:
    """Random (window, description) batches of one split, normalised with the tokenizer's stats.

    Windows are whole clips up to ``max_frames`` (a random crop of longer clips), floored to a
    multiple of the tokenizer's downsampling.
    """
    mean_D, std_D = mean_D.cpu(), std_D.cpu()

    def normalize(batch: dict) -> dict:
        valid_BT1 = (torch.arange(batch["feats_BTD"].shape[1])[None] < batch["lengths_B"][:, None])[..., None]
        batch["feats_BTD"] = (batch["feats_BTD"] - mean_D) / std_D * valid_BT1
        return batch

    dataset = MotionTextDataset(
        prepared, split, cfg.max_frames, cfg.min_frames, False, deterministic=deterministic, length_multiple=multiple,
        mirror_prob=0.0 if deterministic else cfg.mirror_prob,
    )  # fmt: skip
    return MotionTextBatches(dataset, normalize, content_power=0.0 if deterministic else cfg.content_power)


# ---- one step -----------------------------------------------------------------------------------


@dataclass
class Models:
    tokenizer: MotionTokenizer
    transformer: NextScaleTransformer
    length: LengthEstimator
    text_encoder: TextEncoder


def token_loss(
    models: Models, batch: dict, masking: MaskingConfig, cfg: TransformerLossConfig, device: torch.device, train: bool
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch (training: corruption, masking, condition dropout; validation: clean,
    all tokens masked, no dropout) and its parts, with per-scale accuracy."""
    tokenizer, model = models.tokenizer, models.transformer
    feats_BTD, lengths_B = batch["feats_BTD"].to(device), batch["lengths_B"].to(device)
    with torch.no_grad():
        f_BNC, N_B = tokenizer.encode_latents(feats_BTD, lengths_B)
        corrupt = None
        if train and masking.corrupt_max > 0 and masking.corrupt_prob > 0:
            last = tokenizer.num_scales - 1

            def corrupt(k: int, idx_BL: torch.Tensor, valid_BL: torch.Tensor) -> torch.Tensor:
                if k == last:
                    return idx_BL
                return corrupt_codes(
                    idx_BL,
                    valid_BL,
                    tokenizer.codebook_size,
                    masking.corrupt_max,
                    masking.corrupt_prob,
                    masking.corrupt_distinct,
                )

        quant = tokenizer.quantize(f_BNC, N_B, corrupt_fn=corrupt)
    text = models.text_encoder.encode(batch["texts"]).to(device)
    cond = model.condition(text, N_B, drop_B=None if train else torch.zeros_like(N_B, dtype=torch.bool))
    tokens_in, masked = [], []
    visible = quant.used_idx if masking.context == "corrupted" else quant.idx
    for idx_BL, visible_BL, valid_BL in zip(quant.idx, visible, quant.masks):
        if train:
            tok_BL, masked_BL = noisy_tokens(
                visible_BL, idx_BL, valid_BL, model.mask_id, tokenizer.codebook_size, masking
            )
        else:
            tok_BL, masked_BL = idx_BL.masked_fill(valid_BL, model.mask_id), valid_BL
        tokens_in.append(tok_BL)
        masked.append(masked_BL)
    logits = model(cond, [x.to(cond.cond_BW.dtype) for x in quant.inputs], tokens_in, quant.scale_lengths)
    logits_NV = torch.cat([lg[m] for lg, m in zip(logits, masked)]).float()
    target_N = torch.cat([idx[m] for idx, m in zip(quant.idx, masked)])
    ce = F.cross_entropy(logits_NV, target_N, label_smoothing=cfg.label_smoothing if train else 0.0)
    length_loss = models.length.loss(text.pooled_BD, N_B)
    loss = ce + cfg.length_weight * length_loss
    parts = {"loss": loss.item(), "ce": ce.item(), "length_ce": length_loss.item()}
    with torch.no_grad():
        for k, (lg, idx, m) in enumerate(zip(logits, quant.idx, masked)):
            hits = (lg.argmax(-1) == idx) & m
            parts[f"acc_s{k + 1}"] = float(hits.sum()) / max(1, int(m.sum()))
    return loss, parts


# ---- the command --------------------------------------------------------------------------------


def sized_model_configs(
    cfg: TransformerTrainConfig, tokenizer: MotionTokenizer, text_dim: int
) -> tuple[TransformerConfig, LengthEstimatorConfig]:
    """``cfg.model`` and ``cfg.length`` sized to a tokenizer (codebook, code width, scales, latent rate)
    and a text encoder's width: ``max_latents = ceil(cfg.data.max_frames / downsample_factor)``."""
    factor = tokenizer.downsample_factor
    max_latents = -(-cfg.data.max_frames // factor)
    model_cfg = dataclasses.replace(
        cfg.model,
        codebook_size=tokenizer.codebook_size,
        code_dim=tokenizer.code_dim,
        text_dim=text_dim,
        max_latents=max_latents,
        max_scales=max(cfg.model.max_scales, tokenizer.num_scales),
    )
    length_cfg = dataclasses.replace(cfg.length, text_dim=text_dim, max_latents=max_latents, frames_per_latent=factor)
    return model_cfg, length_cfg


def build_models(
    cfg: TransformerTrainConfig,
    device: torch.device,
    text_encoder: TextEncoder | None = None,
    transformer_cls: type[NextScaleTransformer] = NextScaleTransformer,
) -> tuple[Models, torch.Tensor, torch.Tensor]:
    """The frozen tokenizer and text encoder (``text_encoder`` if given, else built from ``cfg``), and a
    fresh transformer (of ``transformer_cls``) and length estimator sized to them."""
    tokenizer_path = local_or_resource(cfg.tokenizer)
    tokenizer, mean_D, std_D = load_any_tokenizer(tokenizer_path, device)
    tokenizer.requires_grad_(False)
    if text_encoder is None:
        text_encoder = TextEncoder(cfg.text_encoder, device=device)
    model_cfg, length_cfg = sized_model_configs(cfg, tokenizer, text_encoder.dim)
    models = Models(
        tokenizer, transformer_cls(model_cfg).to(device), LengthEstimator(length_cfg).to(device), text_encoder
    )
    return models, mean_D, std_D


@dataclass(frozen=True)
class TrainingOrder:
    """What :func:`run` trains: the transformer class, its loss (signature of :func:`token_loss`), the
    checkpoint kind and the default run directory. The default is next-scale order; the next-token
    baseline of the controlled comparison (:mod:`moscale_ros.training.next_token`) passes its own."""

    transformer_cls: type[NextScaleTransformer] = NextScaleTransformer
    loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]] = token_loss
    kind: str = GENERATOR_KIND
    run_name: str = "transformer"


def run(args: argparse.Namespace, order: TrainingOrder | None = None) -> int:
    """Train (or resume) the transformer; writes ``last``/``best``/``model.safetensors`` in the run dir."""
    order = order or TrainingOrder()
    return train_command(args, TransformerTrainConfig, order.run_name, functools.partial(_train, order=order))


def _train(cfg: TransformerTrainConfig, session: TrainingSession, order: TrainingOrder) -> int:
    device, run_dir = session.device, session.run_dir

    models, mean_D, std_D = build_models(cfg, device, transformer_cls=order.transformer_cls)
    prepared = load_prepared(cfg.data.cache_dir, load_joints=False)
    factor = models.tokenizer.downsample_factor
    train_data = clip_batches(prepared, "train", cfg.data, factor, mean_D, std_D)
    val_data = clip_batches(prepared, cfg.data.val_split, cfg.data, factor, mean_D, std_D, deterministic=True)
    val_indices = list(range(len(val_data)))
    if cfg.data.val_max_clips is not None and len(val_indices) > cfg.data.val_max_clips:
        picks = np.random.default_rng(cfg.train.seed).permutation(len(val_indices))[: cfg.data.val_max_clips]
        val_indices = sorted(int(i) for i in picks)
    print(
        f"transformer: {count_parameters(models.transformer) / 1e6:.2f} M parameters "
        f"(width {models.transformer.cfg.width}, depth {models.transformer.cfg.depth}); text encoder "
        f"{models.text_encoder.name} ({models.text_encoder.dim}-d); {len(train_data)} training clips, "
        f"{len(val_indices)} validation clips; device {device}, {session.threads} CPU threads, {cfg.precision}",
        file=sys.stderr,
    )

    params = list(models.transformer.parameters()) + list(models.length.parameters())
    optimizer = session.adamw(params)
    modules = {"transformer": models.transformer, "length": models.length, "tokenizer": models.tokenizer}
    configs = generator_configs(models.tokenizer, models.transformer, models.length, cfg.text_encoder, cfg.generation)
    configs["train"] = to_dict(cfg)
    norm = {"mean": mean_D, "std": std_D}
    amp = cfg.precision == "bf16"

    def train_step(step: int) -> dict[str, float]:
        models.transformer.train()
        models.length.train()
        batch = train_data.sample(cfg.train.batch_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts = order.loss_fn(models, batch, cfg.masking, cfg.loss, device, train=True)
        session.step(optimizer, loss, params)
        return parts

    @torch.no_grad()
    def validate() -> dict[str, float]:
        models.transformer.eval()
        models.length.eval()
        sums: dict[str, float] = {}
        count = 0
        for start in range(0, len(val_indices), cfg.train.batch_size):
            rows = val_indices[start : start + cfg.train.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                _, parts = order.loss_fn(models, val_data.batch(rows), cfg.masking, cfg.loss, device, train=False)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * len(rows)
            count += len(rows)
        means = {k: v / max(1, count) for k, v in sums.items()}
        metrics = {"val_loss": means.pop("ce"), "val_length_ce": means.pop("length_ce")}
        metrics.update({f"val_{k}": v for k, v in means.items() if k.startswith("acc")})
        return metrics

    saved = Checkpointed(order.kind, modules, optimizer, configs, {"normalization": norm})
    result = run_training(session, cfg, saved, train_step, validate, best_key="val_loss", desc="transformer")
    slim = save_generator(
        run_dir.path / "model.safetensors",
        models.tokenizer,
        models.transformer,
        models.length,
        mean_D,
        std_D,
        cfg.text_encoder,
        cfg.generation,
        kind=order.kind,
        extra={"step": result.step, "elapsed_s": result.elapsed_s, "tokenizer": str(cfg.tokenizer)},
    )
    shown = ", ".join(f"{k}={v:.4g}" for k, v in result.last_val.items())
    print(
        f"transformer: step {result.step} ({result.stopped_by}); {result.elapsed_s / 60:.1f} min of training; "
        f"wrote {run_dir.last} and {slim}\nvalidation: {shown}"
    )
    return 0
