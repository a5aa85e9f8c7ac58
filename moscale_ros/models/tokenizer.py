"""The motion tokenizer: conv encoder -> multi-scale residual VQ -> conv decoder.

Shapes (B batch, T frames, D = 263 features, N = ceil(T/4) latents, C code dim, L_k scale length):

    feats_BTD --encode_latents--> f_BNC --quantize--> [idx_BL_k for k = 1..K]
    [idx_BL_1 .. idx_BL_k] --indices_to_latent--> f_hat_BNC --decode_latents--> feats_BTD

Any prefix of scales decodes to a full-length motion (the later scales count as zero): the
first scales are the coarse plan. Features are the normalised 263-d HumanML3D features; the
checkpoint carries the normalisation ``mean``/``std`` (see :func:`load_tokenizer`).

Used by the next-scale transformer: :meth:`MotionTokenizer.scale_lengths`, ``num_scales``,
``codebook_size``, ``code_dim``, :meth:`~MotionTokenizer.encode_latents`,
:meth:`~MotionTokenizer.quantize` (with ``corrupt_fn`` for cross-scale refinement),
:meth:`~MotionTokenizer.embed`, the scale step ``tokenizer.quantizer.next_scale_input`` /
``tokenizer.quantizer.add_scale`` (see :mod:`moscale_ros.models.quantizer`), :meth:`~MotionTokenizer.decode_latents`,
:meth:`~MotionTokenizer.decode_indices`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from moscale_common.config import from_dict, to_dict
from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from moscale_ros.models.conv import MotionDecoder, MotionEncoder
from moscale_ros.models.quantizer import CorruptFn, QuantizeResult, ResidualScaleQuantizer, perplexity
from moscale_ros.models.resample import lengths_mask

CHECKPOINT_KIND = "tokenizer"


@dataclass
class TokenizerConfig:
    """Architecture of the tokenizer (the ``model:`` section of ``config/train/tokenizer.yaml``).

    ``scales``: scale lengths for the longest motion, the last being its latent count
    (``[6, 12, 24, 49]`` = MoScale's for 196 frames); shorter motions get proportionally shorter
    scales (:func:`moscale_ros.models.quantizer.scale_lengths_for`). ``normalize_latents``
    standardises each encoder output vector (keeps the latent scale, and training, stable).
    """

    feature_dim: int = 263
    width: int = 256
    depth: int = 2
    dilation_growth: int = 3
    down_t: int = 2
    code_dim: int = 128
    codebook_size: int = 512
    scales: list[int] = field(default_factory=lambda: [6, 12, 24, 49])
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0
    normalize_latents: bool = True

    def __post_init__(self) -> None:
        for name in ("feature_dim", "width", "depth", "dilation_growth", "code_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.down_t <= 4:
            raise ConfigError(f"model.down_t: must be in 0..4, got {self.down_t}")
        if self.codebook_size < 2:
            raise ConfigError(f"model.codebook_size: must be >= 2, got {self.codebook_size}")
        if not self.scales or any(s < 1 for s in self.scales):
            raise ConfigError(f"model.scales: expected a non-empty list of positive lengths, got {self.scales}")
        if any(b <= a for a, b in zip(self.scales, self.scales[1:])):
            raise ConfigError(f"model.scales: lengths must increase strictly, got {self.scales}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay: must be in (0, 1), got {self.ema_decay}")
        if self.dead_code_threshold < 0:
            raise ConfigError(f"model.dead_code_threshold: must be >= 0, got {self.dead_code_threshold}")


@dataclass
class TokenizerOutput:
    """One training forward pass: ``recon`` ``(B, T, D)``, the commitment loss, the quantisation,
    ``latent_lengths`` ``(B,)``."""

    recon: torch.Tensor
    commit_loss: torch.Tensor
    quant: QuantizeResult
    latent_lengths: torch.Tensor

    @property
    def perplexity(self) -> float:
        return perplexity(self.quant.code_counts)


class MotionTokenizer(nn.Module):
    """Conv encoder/decoder (time / 4) around a multi-scale residual quantiser with one codebook."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sizes = (cfg.feature_dim, cfg.width, cfg.code_dim, cfg.depth, cfg.dilation_growth, cfg.down_t)
        self.encoder = MotionEncoder(*sizes, normalize=cfg.normalize_latents)
        self.decoder = MotionDecoder(*sizes)
        self.quantizer = ResidualScaleQuantizer(
            cfg.codebook_size, cfg.code_dim, cfg.scales, cfg.ema_decay, cfg.dead_code_threshold
        )

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def num_scales(self) -> int:
        return self.quantizer.num_scales

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def code_dim(self) -> int:
        return self.cfg.code_dim

    @property
    def downsample_factor(self) -> int:
        return 2**self.cfg.down_t

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook_VC.device

    def latent_lengths(self, lengths_B: torch.Tensor) -> torch.Tensor:
        """Latents per sample: ``ceil(T_b / 4)``."""
        return (lengths_B + self.downsample_factor - 1) // self.downsample_factor

    def scale_lengths(self, num_latents: int) -> list[int]:
        """Scale lengths ``[L_1, ..., L_K = num_latents]`` of a motion with ``num_latents`` latents."""
        return self.quantizer.scale_lengths(num_latents)

    def scale_lengths_batch(self, latent_lengths_B: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` long: :meth:`scale_lengths` of every sample."""
        return self.quantizer.scale_lengths_batch(latent_lengths_B)

    # ---- encoding ------------------------------------------------------------------------------
    def encode_latents(self, feats_BTD: torch.Tensor, lengths_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous encoder output ``f_BNC`` (zero beyond each sample's latents) and ``latent_lengths_B``."""
        lengths_B = _as_lengths(lengths_B, feats_BTD.shape[0], feats_BTD.shape[1], "lengths_B").to(feats_BTD.device)
        return self.encoder(feats_BTD, lengths_B), self.latent_lengths(lengths_B)

    def quantize(
        self, f_BNC: torch.Tensor, latent_lengths_B: torch.Tensor, corrupt_fn: CorruptFn | None = None
    ) -> QuantizeResult:
        """Multi-scale residual quantisation (no codebook update); see :class:`QuantizeResult`.

        ``result.idx`` is the list of ``(B, L_k)`` codes; ``result.inputs[k]`` the transformer's
        input for scale ``k``. ``corrupt_fn(k, idx_BL, valid_BL) -> idx_BL`` (``k`` 0-based)
        replaces codes of scale ``k`` before the finer scales see the residual.
        """
        return self.quantizer.quantize(f_BNC, latent_lengths_B, corrupt_fn=corrupt_fn, update=False)

    @torch.no_grad()
    def encode(self, feats_BTD: torch.Tensor, lengths_B: torch.Tensor) -> list[torch.Tensor]:
        """Codes per scale: ``[idx_BL_1, ..., idx_BL_K]`` (0 at padded steps)."""
        f_BNC, latent_lengths_B = self.encode_latents(feats_BTD, lengths_B)
        return self.quantize(f_BNC, latent_lengths_B).idx

    # ---- latent-space helpers --------------------------------------------------------------------
    def embed(self, idx_BL: torch.Tensor) -> torch.Tensor:
        """Codebook lookup: ``(B, L)`` -> ``(B, L, C)``."""
        return self.quantizer.embed(idx_BL)

    def indices_to_latent(self, idx_per_scale: list[torch.Tensor], latent_lengths_B: torch.Tensor) -> torch.Tensor:
        """``f_hat_BNC = sum_k upsample(embed(idx_k))`` over the given scales (a prefix is fine)."""
        return self.quantizer.indices_to_latent(idx_per_scale, latent_lengths_B)

    # ---- decoding ------------------------------------------------------------------------------
    def decode_latents(
        self, f_hat_BNC: torch.Tensor, latent_lengths_B: torch.Tensor, lengths_B: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoder: ``(B, N, C)`` -> ``(B, 4N, D)`` features; with ``lengths_B`` cropped to ``max T_b``
        and zero beyond each sample's frames."""
        latent_lengths_B = latent_lengths_B.to(f_hat_BNC.device)
        feats_BTD = self.decoder(f_hat_BNC, latent_lengths_B)
        if lengths_B is not None:
            lengths_B = lengths_B.to(f_hat_BNC.device)
            feats_BTD = feats_BTD[:, : int(lengths_B.max())]
            feats_BTD = feats_BTD * lengths_mask(lengths_B, feats_BTD.shape[1])[..., None].to(feats_BTD.dtype)
        return feats_BTD

    def decode_indices(
        self,
        idx_per_scale: list[torch.Tensor],
        latent_lengths_B: torch.Tensor | int,
        lengths_B: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features from the codes of the first ``k <= K`` scales (later scales count as zero).

        ``latent_lengths_B``: per-sample latent counts (an int applies to every sample).
        """
        batch = idx_per_scale[0].shape[0] if idx_per_scale else 1
        if isinstance(latent_lengths_B, int):
            latent_lengths_B = torch.full((batch,), latent_lengths_B, dtype=torch.long)
        latent_lengths_B = latent_lengths_B.to(self.device)
        f_hat_BNC = self.indices_to_latent(idx_per_scale, latent_lengths_B)
        return self.decode_latents(f_hat_BNC, latent_lengths_B, lengths_B)

    # ---- training ------------------------------------------------------------------------------
    def forward(
        self, feats_BTD: torch.Tensor, lengths_B: torch.Tensor, num_scales_B: torch.Tensor | None = None
    ) -> TokenizerOutput:
        """Encode, quantise (EMA update when training), decode with the straight-through estimator.

        ``num_scales_B`` (optional, 1..K per sample) decodes sample ``b`` from its first
        ``num_scales_B[b]`` scales only (prefix training: such a sample trains the decoder only);
        default: all scales.
        Returns the reconstruction ``(B, T, D)`` (zero beyond ``lengths_B``) and the commitment
        loss ``mean ||f - sg(f_hat)||^2`` over valid latents.
        """
        f_BNC, latent_lengths_B = self.encode_latents(feats_BTD, lengths_B)
        quant = self.quantizer.quantize(f_BNC, latent_lengths_B, update=self.training)
        f_hat_BNC = quant.f_hat.to(f_BNC.dtype)
        valid_BN1 = lengths_mask(latent_lengths_B, f_BNC.shape[1])[..., None].to(f_BNC.dtype)
        commit = ((f_BNC - f_hat_BNC).pow(2) * valid_BN1).sum()
        commit = commit / (valid_BN1.sum() * f_BNC.shape[-1]).clamp(min=1)
        decoder_in_BNC = f_BNC + (f_hat_BNC - f_BNC).detach()  # straight-through estimator
        if num_scales_B is not None:
            # A partial prefix is far from f: passing its gradient straight through to the encoder
            # would push f without bound. Those samples train the decoder only.
            pick_B = (num_scales_B.to(f_BNC.device).long() - 1).clamp(0, self.num_scales - 1)
            prefix_BNC = torch.stack(quant.prefix_f_hat)[pick_B, torch.arange(f_BNC.shape[0], device=f_BNC.device)]
            partial_B11 = (pick_B < self.num_scales - 1)[:, None, None]
            decoder_in_BNC = torch.where(partial_B11, prefix_BNC.to(f_BNC.dtype), decoder_in_BNC)
        recon_BTD = self.decode_latents(decoder_in_BNC, latent_lengths_B, lengths_B.to(f_BNC.device))
        return TokenizerOutput(recon_BTD, commit, quant, latent_lengths_B)


def _opt(lengths_B: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if lengths_B is None else lengths_B.to(like.device)


def _as_lengths(lengths_B: torch.Tensor, batch: int, max_len: int, name: str) -> torch.Tensor:
    lengths_B = torch.as_tensor(lengths_B, dtype=torch.long)
    if lengths_B.shape != (batch,):
        raise InputError(f"{name}: expected shape ({batch},), got {tuple(lengths_B.shape)}")
    if int(lengths_B.min()) < 1 or int(lengths_B.max()) > max_len:
        raise InputError(f"{name}: lengths must be in 1..{max_len}, got {lengths_B.tolist()}")
    return lengths_B


def build_tokenizer(cfg: TokenizerConfig | dict) -> MotionTokenizer:
    """A fresh tokenizer from a config (a dataclass or its plain-data form)."""
    if not isinstance(cfg, TokenizerConfig):
        cfg = from_dict(TokenizerConfig, cfg, where="tokenizer")
    return MotionTokenizer(cfg)


def save_tokenizer(
    path: str | Path, model: MotionTokenizer, mean_D: torch.Tensor, std_D: torch.Tensor, extra: dict | None = None
) -> Path:
    """A slim inference checkpoint: weights, codebook, config and the feature mean/std."""
    return save_checkpoint(
        path,
        CHECKPOINT_KIND,
        states={"tokenizer": model.state_dict(), "normalization": {"mean": mean_D, "std": std_D}},
        configs={"tokenizer": to_dict(model.cfg)},
        extra=extra or {},
    )


def load_tokenizer(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MotionTokenizer, torch.Tensor, torch.Tensor]:
    """``(model in eval mode, mean_D, std_D)`` from a tokenizer checkpoint (training or slim).

    Features for the model are ``(x - mean) / std``; de-normalise outputs with ``y * std + mean``.
    A corrupt file, another kind of checkpoint, or weights that do not fit the stored config
    raise :class:`~moscale_common.errors.CheckpointError` naming the file.
    """
    ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, device="cpu")
    if "tokenizer" not in ckpt.configs or "tokenizer" not in ckpt.states:
        raise CheckpointError(f"{path}: tokenizer checkpoint lacks its 'tokenizer' config or weights")
    try:
        cfg = from_dict(TokenizerConfig, ckpt.configs["tokenizer"], where=f"{path} [tokenizer config]")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    model = MotionTokenizer(cfg)
    load_state_strict(model, ckpt.states["tokenizer"], where=f"{path} [tokenizer]")
    norm = ckpt.states.get("normalization", {})
    if "mean" not in norm or "std" not in norm:
        raise CheckpointError(f"{path}: tokenizer checkpoint lacks the feature normalisation (mean/std)")
    mean_D, std_D = norm["mean"].float(), norm["std"].float()
    if mean_D.shape != (cfg.feature_dim,) or std_D.shape != (cfg.feature_dim,):
        raise CheckpointError(
            f"{path}: normalisation has shape {tuple(mean_D.shape)}/{tuple(std_D.shape)}, expected ({cfg.feature_dim},)"
        )
    return model.to(device).eval(), mean_D.to(device), std_D.to(device)
