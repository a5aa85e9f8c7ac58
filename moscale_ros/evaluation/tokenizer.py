"""Reconstruction of held-out motions by the tokenizer, for every prefix of scales.

For each prefix ``k = 1..K`` the motion is decoded from the codes of scales ``1..k`` (later scales
zero), de-normalised, turned into 22 joint positions (HumanML3D ``recover_from_ric``) and compared
with the joints recovered from the ground-truth features:

* MPJPE (root-aligned, the MoMask convention): ``mean_{t,j} ||(p_tj - p_t0) - (q_tj - q_t0)||``;
* MPJPE (global): ``mean_{t,j} ||p_tj - q_tj||`` (includes the integrated root trajectory);
* feature L1: mean absolute error of the normalised features.

For reference the same errors are given for decoding an all-zero latent (no codes at all): what
the decoder makes of no information, close to an average pose.

Codebook usage over the same motions: perplexity ``exp(H(p))`` of the chosen codes and the number
of codes never chosen. Clips longer than ``max_frames`` are cut into consecutive segments.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from moscale_common.paths import cache_root
from moscale_ros.checkpoint import load_checkpoint
from moscale_ros.data.dataset import load_split_features
from moscale_ros.data.features import features_to_joints_torch
from moscale_ros.data.prepare import default_cache_dir
from moscale_ros.models.quantizer import perplexity
from moscale_ros.models.resample import lengths_mask
from moscale_ros.models.tokenizer import CHECKPOINT_KIND, MotionTokenizer, load_tokenizer
from moscale_ros.runtime import select_device, torch_threads


@dataclass
class PrefixError:
    """Reconstruction error when decoding the first ``scales`` scales."""

    scales: int
    tokens_at_max: int
    mpjpe_mm: float
    mpjpe_global_mm: float
    feature_l1: float


@dataclass
class ReconstructionReport:
    """Per-prefix errors and codebook usage on a set of motions."""

    prefixes: list[PrefixError]
    zero_latent: PrefixError
    num_segments: int
    num_frames: int
    codebook_size: int
    perplexity: float
    used_codes: int
    ema_dead_codes: int
    info: dict = field(default_factory=dict)

    @property
    def unused_codes(self) -> int:
        return self.codebook_size - self.used_codes

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unused_codes"] = self.unused_codes
        return data


def segment_clips(clips: list[np.ndarray], max_frames: int, min_frames: int = 8) -> list[np.ndarray]:
    """Cut each ``(T, D)`` clip into consecutive pieces of ``max_frames`` (a shorter last piece is
    kept when it has at least ``min_frames`` frames)."""
    pieces = []
    for clip in clips:
        for start in range(0, clip.shape[0], max_frames):
            piece = clip[start : start + max_frames]
            if piece.shape[0] >= min_frames:
                pieces.append(piece)
    return pieces


def joint_errors_mm(
    pred_BTJ3: torch.Tensor, true_BTJ3: torch.Tensor, valid_BT: torch.Tensor
) -> tuple[float, float, int]:
    """Sums over valid frames of the per-frame mean joint error (root-aligned, global) in mm, and
    the number of valid frames."""
    aligned_BTJ = ((pred_BTJ3 - pred_BTJ3[:, :, :1]) - (true_BTJ3 - true_BTJ3[:, :, :1])).norm(dim=-1)
    global_BTJ = (pred_BTJ3 - true_BTJ3).norm(dim=-1)
    weight_BT = valid_BT.to(pred_BTJ3.dtype)
    aligned = float((aligned_BTJ.mean(-1) * weight_BT).sum()) * 1000.0
    global_ = float((global_BTJ.mean(-1) * weight_BT).sum()) * 1000.0
    return aligned, global_, int(valid_BT.sum())


@torch.no_grad()
def evaluate_reconstruction(
    model: MotionTokenizer,
    clips: list[np.ndarray],
    mean_D: torch.Tensor,
    std_D: torch.Tensor,
    max_frames: int = 196,
    batch_size: int = 32,
) -> ReconstructionReport:
    """Per-prefix MPJPE and codebook usage of ``model`` on ``clips`` (un-normalised ``(T, 263)``)."""
    if not clips:
        raise ValueError("no clips to evaluate")
    was_training = model.training
    model.eval()
    device = model.device
    mean_D, std_D = mean_D.to(device), std_D.to(device)
    pieces = sorted(segment_clips(clips, max_frames), key=len)
    K = model.num_scales
    sums = np.zeros((K + 1, 3))  # rows: prefixes 1..K, then the all-zero latent
    frames = 0
    counts_V = torch.zeros(model.codebook_size, device=device)
    for start in range(0, len(pieces), batch_size):
        batch = pieces[start : start + batch_size]
        lengths_B = torch.tensor([len(p) for p in batch], dtype=torch.long, device=device)
        T = int(lengths_B.max())
        raw_BTD = torch.zeros(len(batch), T, mean_D.shape[0], device=device)
        for b, piece in enumerate(batch):
            raw_BTD[b, : len(piece)] = torch.as_tensor(piece, device=device)
        valid_BT = lengths_mask(lengths_B, T)
        feats_BTD = (raw_BTD - mean_D) / std_D * valid_BT[..., None]
        true_BTJ3 = features_to_joints_torch(raw_BTD)
        f_BNC, latent_lengths_B = model.encode_latents(feats_BTD, lengths_B)
        quant = model.quantize(f_BNC, latent_lengths_B)
        counts_V += quant.code_counts
        latents = [*quant.prefix_f_hat, torch.zeros_like(f_BNC)]
        for k, f_hat_BNC in enumerate(latents):
            recon_BTD = model.decode_latents(f_hat_BNC, latent_lengths_B, lengths_B)
            pred_BTJ3 = features_to_joints_torch(recon_BTD * std_D + mean_D)
            aligned, global_, n = joint_errors_mm(pred_BTJ3, true_BTJ3, valid_BT)
            l1 = float(((recon_BTD - feats_BTD).abs().mean(-1) * valid_BT).sum())
            sums[k] += (aligned, global_, l1)
        frames += n
    model.train(was_training)
    tokens = np.cumsum(model.scale_lengths(model.latent_lengths(torch.tensor([max_frames])).item()))
    errors = [(sums[k, 0] / frames, sums[k, 1] / frames, sums[k, 2] / frames) for k in range(K + 1)]
    prefixes = [PrefixError(k + 1, int(tokens[k]), *errors[k]) for k in range(K)]
    ema_dead = int((model.quantizer.ema_count_V < model.cfg.dead_code_threshold).sum())
    return ReconstructionReport(
        prefixes=prefixes,
        zero_latent=PrefixError(0, 0, *errors[K]),
        num_segments=len(pieces),
        num_frames=frames,
        codebook_size=model.codebook_size,
        perplexity=perplexity(counts_V.cpu()),
        used_codes=int((counts_V > 0).sum()),
        ema_dead_codes=ema_dead,
    )


def format_report(report: ReconstructionReport, max_frames: int = 196) -> str:
    """The per-prefix table and the codebook line, as printed by ``moscale eval tokenizer``."""
    lines = [
        f"held-out: {report.num_segments} segments of <= {max_frames} frames, {report.num_frames} frames",
        f"{'scales':<8}{'tokens@' + str(max_frames):>12}{'MPJPE mm':>12}{'global mm':>12}{'feat L1':>10}",
    ]
    for p in [report.zero_latent, *report.prefixes]:
        label = {0: "none", 1: "1"}.get(p.scales, f"1..{p.scales}")
        lines.append(
            f"{label:<8}{p.tokens_at_max:>12}{p.mpjpe_mm:>12.1f}{p.mpjpe_global_mm:>12.1f}{p.feature_l1:>10.4f}"
        )
    lines.append(
        f"codebook: {report.codebook_size} codes, perplexity {report.perplexity:.1f}, "
        f"used {report.used_codes}, unused {report.unused_codes} (held-out); "
        f"dead by EMA count: {report.ema_dead_codes}"
    )
    return "\n".join(lines)


# ---- ``moscale eval tokenizer`` -----------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        return _evaluate(args, select_device(args.device))


def _evaluate(args: argparse.Namespace, device: torch.device) -> int:
    path = args.checkpoint or str(cache_root() / "runs" / "tokenizer" / "last.safetensors")
    model, mean_D, std_D = load_tokenizer(path, device)
    extra = load_checkpoint(path, kind=CHECKPOINT_KIND).extra
    clips = load_split_features(args.data or default_cache_dir(), args.split)
    report = evaluate_reconstruction(model, clips, mean_D, std_D, args.max_frames, args.batch_size)
    report.info = {
        "checkpoint": str(path),
        "split": args.split,
        "step": extra.get("step"),
        "training_minutes": round(float(extra.get("elapsed_s", 0.0)) / 60.0, 2),
    }
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        info = report.info
        print(f"tokenizer {info['checkpoint']}: step {info['step']}, {info['training_minutes']} min of training")
        print(f"split: {args.split}")
        print(format_report(report, args.max_frames))
    sys.stdout.flush()
    return 0
