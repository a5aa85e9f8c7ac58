"""``moscale train tokenizer``: train the multi-scale residual VQ tokenizer on prepared motion data.

Batches are random windows of the training clips (normalised features; a clip shorter than the
window is padded and masked). Loss per sample, over valid frames:

    smooth_l1(x_hat, x) + w_pos * smooth_l1(x_hat[ric], x[ric])
      + w_joint * mean ||J(x_hat) - J(x)||_1  (root-aligned joints, metres)   + w_commit * commit

where ``ric`` are the root-relative joint positions (features 4:67) and ``J`` recovers joints
from de-normalised features. With ``loss.prefix_prob`` a sample is decoded from a random prefix
of its scales, so the coarse scales alone also decode to a plausible motion. The codebook itself
learns by EMA (no gradient). Periodic validation reports the per-prefix MPJPE on held-out clips.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from moscale_common.config import to_dict
from moscale_common.errors import ConfigError, DataError
from moscale_ros.data.dataset import load_prepared, normalization, split_features
from moscale_ros.data.features import features_to_joints_torch
from moscale_ros.data.prepare import default_cache_dir
from moscale_ros.evaluation.tokenizer import evaluate_reconstruction, format_report
from moscale_ros.models.resample import lengths_mask
from moscale_ros.models.tokenizer import CHECKPOINT_KIND, MotionTokenizer, TokenizerConfig, save_tokenizer
from moscale_ros.training.common import Checkpointed, LoopConfig, TrainingSession, run_training, train_command

RIC = slice(4, 67)


@dataclass
class TokenizerDataConfig:
    """Where the prepared clips are and how training windows are cut from them."""

    cache_dir: str | None = None
    min_window: int = 64
    max_window: int = 64
    mirror: bool = True
    val_split: str = "val"
    val_max_clips: int | None = 256
    eval_max_frames: int = 196

    def __post_init__(self) -> None:
        if not 4 <= self.min_window <= self.max_window:
            raise ConfigError(
                "data.min_window/max_window: need 4 <= min_window <= max_window, "
                f"got {self.min_window}/{self.max_window}"
            )


@dataclass
class TokenizerLossConfig:
    """Loss weights (see the module docstring)."""

    position_weight: float = 0.5
    joint_weight: float = 0.0
    commit_weight: float = 0.02
    prefix_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prefix_prob <= 1.0:
            raise ConfigError(f"loss.prefix_prob: must be in [0, 1], got {self.prefix_prob}")


@dataclass
class TokenizerTrainConfig:
    """The whole of ``config/train/tokenizer.yaml``."""

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    precision: Literal["fp32", "bf16"] = "fp32"


# ---- data ---------------------------------------------------------------------------------------


class WindowSampler:
    """Random windows of concatenated clips, drawn with the global torch RNG (restored on resume).

    A clip is picked with probability proportional to its number of window positions
    ``max(T_c - W + 1, 1)`` (every frame about equally likely), then a start uniformly.
    """

    def __init__(self, clips: list[np.ndarray], mean_D: torch.Tensor, std_D: torch.Tensor) -> None:
        lengths = [len(c) for c in clips]
        if not clips or min(lengths) < 1:
            raise DataError("no non-empty training clips")
        self.frames_TD = (torch.as_tensor(np.concatenate(clips)) - mean_D) / std_D
        self.lengths_C = torch.tensor(lengths, dtype=torch.long)
        self.offsets_C = torch.cumsum(self.lengths_C, 0) - self.lengths_C

    def sample(self, batch_size: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feats_BWD, lengths_B)``: normalised windows, zero beyond each window's length."""
        positions_C = (self.lengths_C - window + 1).clamp(min=1).double()
        clip_B = torch.multinomial(positions_C, batch_size, replacement=True)
        starts_B = (torch.rand(batch_size, dtype=torch.float64) * positions_C[clip_B]).long()
        lengths_B = (self.lengths_C[clip_B] - starts_B).clamp(max=window)
        steps_W = torch.arange(window)
        within_BW = torch.minimum(steps_W[None], lengths_B[:, None] - 1)
        index_BW = self.offsets_C[clip_B, None] + starts_B[:, None] + within_BW
        valid_BW = steps_W[None] < lengths_B[:, None]
        return self.frames_TD[index_BW] * valid_BW[..., None], lengths_B


# ---- loss ---------------------------------------------------------------------------------------


def tokenizer_loss(
    model: MotionTokenizer,
    feats_BTD: torch.Tensor,
    lengths_B: torch.Tensor,
    cfg: TokenizerLossConfig,
    mean_D: torch.Tensor,
    std_D: torch.Tensor,
    num_scales_B: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss of one batch and its parts (see the module docstring)."""
    out = model(feats_BTD, lengths_B, num_scales_B)
    recon_BTD = out.recon.float()
    valid_BT1 = lengths_mask(lengths_B.to(feats_BTD.device), feats_BTD.shape[1])[..., None].float()
    frames = valid_BT1.sum().clamp(min=1)

    def masked_l1(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        per = torch.nn.functional.smooth_l1_loss(pred, true, reduction="none").mean(-1, keepdim=True)
        return (per * valid_BT1).sum() / frames

    rec = masked_l1(recon_BTD, feats_BTD)
    pos = masked_l1(recon_BTD[..., RIC], feats_BTD[..., RIC])
    loss = rec + cfg.position_weight * pos + cfg.commit_weight * out.commit_loss.float()
    parts = {"rec": rec.item(), "pos": pos.item(), "commit": out.commit_loss.item(), "ppl": out.perplexity}
    if cfg.joint_weight > 0:
        pred_BTJ3 = features_to_joints_torch(recon_BTD * std_D + mean_D)
        true_BTJ3 = features_to_joints_torch(feats_BTD * std_D + mean_D)
        pred_BTJ3 = pred_BTJ3 - pred_BTJ3[:, :, :1]
        true_BTJ3 = true_BTJ3 - true_BTJ3[:, :, :1]
        joint = ((pred_BTJ3 - true_BTJ3).abs().mean((-1, -2))[..., None] * valid_BT1).sum() / frames
        loss = loss + cfg.joint_weight * joint
        parts["joint"] = joint.item()
    parts["loss"] = loss.item()
    return loss, parts


# ---- the command --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Train (or resume) a tokenizer; writes ``last``/``best``/``tokenizer.safetensors`` in the run dir."""
    return train_command(args, TokenizerTrainConfig, "tokenizer", _train)


def _train(cfg: TokenizerTrainConfig, session: TrainingSession) -> int:
    device, run_dir = session.device, session.run_dir
    data_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()

    prepared = load_prepared(data_dir, load_joints=cfg.data.mirror)
    mean_D, std_D = normalization(prepared)
    train_clips = split_features(prepared, "train", mirror=cfg.data.mirror)
    val_clips = split_features(prepared, cfg.data.val_split)
    del prepared
    if cfg.data.val_max_clips is not None:
        picks = np.random.default_rng(cfg.train.seed).permutation(len(val_clips))[: cfg.data.val_max_clips]
        val_clips = [val_clips[i] for i in sorted(picks)]
    sampler = WindowSampler(train_clips, mean_D, std_D)
    frames = int(sampler.lengths_C.sum())
    print(
        f"tokenizer: {len(train_clips)} training clips ({frames} frames, {frames / 20 / 3600:.2f} h at 20 fps), "
        f"{len(val_clips)} validation clips; device {device}, {session.threads} CPU threads, {cfg.precision}",
        file=sys.stderr,
    )

    model = MotionTokenizer(cfg.model).to(device)
    optimizer = session.adamw(model.parameters())
    configs = {"tokenizer": to_dict(cfg.model), "train": to_dict(cfg)}
    norm = {"mean": mean_D, "std": std_D}
    saved = Checkpointed(CHECKPOINT_KIND, {"tokenizer": model}, optimizer, configs, {"normalization": norm})
    mean_dev, std_dev = mean_D.to(device), std_D.to(device)
    amp = cfg.precision == "bf16"

    def train_step(step: int) -> dict[str, float]:
        model.train()
        window = int(torch.randint(cfg.data.min_window // 4, cfg.data.max_window // 4 + 1, ()).item()) * 4
        feats_BTD, lengths_B = sampler.sample(cfg.train.batch_size, window)
        feats_BTD, lengths_B = feats_BTD.to(device, non_blocking=True), lengths_B.to(device)
        num_scales_B = None
        if cfg.loss.prefix_prob > 0:
            draw_B = torch.randint(1, model.num_scales + 1, (len(lengths_B),))
            keep_B = torch.rand(len(lengths_B)) >= cfg.loss.prefix_prob
            num_scales_B = torch.where(keep_B, model.num_scales, draw_B)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts = tokenizer_loss(model, feats_BTD, lengths_B, cfg.loss, mean_dev, std_dev, num_scales_B)
        session.step(optimizer, loss, model.parameters())
        return parts

    last_report: list = []

    def validate() -> dict[str, float]:
        report = evaluate_reconstruction(model, val_clips, mean_D, std_D, cfg.data.eval_max_frames)
        last_report[:] = [report]
        metrics = {f"mpjpe_mm_{p.scales}": p.mpjpe_mm for p in report.prefixes}
        metrics["mpjpe_mm"] = report.prefixes[-1].mpjpe_mm
        metrics["perplexity"] = report.perplexity
        metrics["unused_codes"] = float(report.unused_codes)
        return metrics

    started = time.monotonic()
    result = run_training(session, cfg, saved, train_step, validate, best_key="mpjpe_mm", desc="tokenizer")
    slim = save_tokenizer(
        run_dir.path / "tokenizer.safetensors",
        model,
        mean_D,
        std_D,
        extra={"step": result.step, "elapsed_s": result.elapsed_s},
    )
    report = last_report[0]  # run_loop always validates the final model
    print(
        f"tokenizer: step {result.step} ({result.stopped_by}); {result.elapsed_s / 60:.1f} min of training "
        f"({(time.monotonic() - started) / 60:.1f} min this session); wrote {run_dir.last} and {slim}"
    )
    print(f"validation ({cfg.data.val_split} split):")
    print(format_report(report, cfg.data.eval_max_frames))
    return 0
