"""Next-scale text-to-motion transformer: all scales' tokens in one sequence.

Input at scale k (1..K), for each of its L_k positions j:
    x_kj = W_lat · down(f_hat_<k, L_k)_j + E_tok[t_kj] + E_level[k] + P((j + 1/2) / L_k)
where ``f_hat_<k`` is the running latent of the coarser scales, ``t_kj`` the token (or the mask id
V while it is unknown), ``E_level`` a scale embedding and ``P`` Fourier features of the position
normalised per scale (so scale 1 of a 2 s and of a 9 s motion are both "the whole motion").

Attention is block-causal across scales (scale k sees scales 1..k) and bidirectional inside a
scale; every block cross-attends to the projected text tokens, and the pooled text plus the
motion length drive adaptive layer norm (adaLN-Zero: shift, scale and a zero-initialised gate per
sub-layer). A learned "null text" stands in for the text when the condition is dropped (training,
probability ``cond_drop_prob``) and for the unconditional half of classifier-free guidance.

At inference :meth:`NextScaleTransformer.start` precomputes the condition-only parts (adaLN
modulation, cross-attention keys/values) and :meth:`step` runs one scale against the cached
self-attention keys/values of the coarser scales; ``commit=True`` appends the scale to the cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from moscale_common.errors import ConfigError
from moscale_ros.models.text_encoder import TextFeatures


@dataclass
class TransformerConfig:
    """Architecture of the next-scale transformer (vocabulary and widths of its inputs included)."""

    width: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    codebook_size: int = 512
    code_dim: int = 512
    text_dim: int = 384
    max_scales: int = 8
    max_latents: int = 64
    num_null_tokens: int = 4
    num_position_freqs: int = 24
    cond_drop_prob: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "width",
            "depth",
            "num_heads",
            "codebook_size",
            "code_dim",
            "text_dim",
            "max_scales",
            "max_latents",
            "num_null_tokens",
            "num_position_freqs",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"transformer.{name}: must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ConfigError(f"transformer.width {self.width} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ConfigError(f"transformer.cond_drop_prob: must be in [0, 1), got {self.cond_drop_prob}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"transformer.dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class Condition:
    """Projected text: cross-attention memory ``(B, N, W)`` with its mask, and the adaLN vector ``(B, W)``."""

    memory_BNW: torch.Tensor  # noqa: N815 (shape suffix)
    memory_mask_BN: torch.Tensor  # noqa: N815 (shape suffix)
    cond_BW: torch.Tensor  # noqa: N815 (shape suffix)


@dataclass
class InferenceState:
    """Per-generation cache: adaLN modulation, text keys/values, and the scales' self-attention keys/values."""

    modulation: list[torch.Tensor]
    head_modulation_B2W: torch.Tensor  # noqa: N815 (shape suffix)
    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]
    memory_mask_B11N: torch.Tensor  # noqa: N815 (shape suffix)
    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    scales_done: int = 0

    @property
    def cached_tokens(self) -> int:
        return 0 if not self.self_kv or self.self_kv[0] is None else self.self_kv[0][0].shape[2]


def fourier_features(pos_BL: torch.Tensor, num_freqs: int, max_freq: float) -> torch.Tensor:
    """``[sin(2π f_i p), cos(2π f_i p)]`` with f_i geometric from 1/2 to ``max_freq``; ``(B, L, 2F)``."""
    freqs_F = torch.exp(
        torch.linspace(math.log(0.5), math.log(max_freq), num_freqs, device=pos_BL.device, dtype=pos_BL.dtype)
    )
    angles_BLF = 2.0 * math.pi * pos_BL.unsqueeze(-1) * freqs_F
    return torch.cat([angles_BLF.sin(), angles_BLF.cos()], dim=-1)


def _modulate(x_BSW: torch.Tensor, shift_BW: torch.Tensor, scale_BW: torch.Tensor) -> torch.Tensor:
    return x_BSW * (1.0 + scale_BW.unsqueeze(1)) + shift_BW.unsqueeze(1)


class Attention(nn.Module):
    """Multi-head attention (PyTorch SDPA); ``kv_BSW`` defaults to ``x`` (self-attention)."""

    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def split_heads(self, x_BSW: torch.Tensor) -> torch.Tensor:
        B, S, W = x_BSW.shape
        return x_BSW.view(B, S, self.num_heads, W // self.num_heads).transpose(1, 2)

    def keys_values(self, x_BSW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k_BSW, v_BSW = self.kv(x_BSW).chunk(2, dim=-1)
        return self.split_heads(k_BSW), self.split_heads(v_BSW)

    def attend(
        self, x_BLW: torch.Tensor, k_BHSd: torch.Tensor, v_BHSd: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        q_BHLd = self.split_heads(self.q(x_BLW))
        p = self.dropout if self.training else 0.0
        out_BHLd = F.scaled_dot_product_attention(q_BHLd, k_BHSd, v_BHSd, attn_mask=mask, dropout_p=p)
        B, H, L, d = out_BHLd.shape
        return self.out(out_BHLd.transpose(1, 2).reshape(B, L, H * d))


class Block(nn.Module):
    """adaLN-Zero self-attention, cross-attention to the text, adaLN-Zero MLP."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        W = cfg.width
        self.norm_self = nn.LayerNorm(W, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(W, cfg.num_heads, cfg.dropout)
        self.norm_cross = nn.LayerNorm(W, eps=1e-6)
        self.cross_attn = Attention(W, cfg.num_heads, cfg.dropout)
        self.norm_mlp = nn.LayerNorm(W, elementwise_affine=False, eps=1e-6)
        hidden = int(W * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(W, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, W))
        self.ada = nn.Linear(W, 6 * W)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def modulation(self, cond_BW: torch.Tensor) -> torch.Tensor:
        """``(B, 6, W)``: shift, scale, gate of self-attention, then of the MLP."""
        return self.ada(F.silu(cond_BW)).unflatten(-1, (6, -1))

    def forward(
        self,
        x_BLW: torch.Tensor,
        mod_B6W: torch.Tensor,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None,
        self_mask: torch.Tensor | None,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """New ``x`` and the self-attention keys/values ``(B, H, S_past + L, d)`` it attended to."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod_B6W.unbind(1)
        h_BLW = _modulate(self.norm_self(x_BLW), shift_a, scale_a)
        k_BHSd, v_BHSd = self.self_attn.keys_values(h_BLW)
        if past_kv is not None:
            k_BHSd = torch.cat([past_kv[0], k_BHSd], dim=2)
            v_BHSd = torch.cat([past_kv[1], v_BHSd], dim=2)
        x_BLW = x_BLW + gate_a.unsqueeze(1) * self.drop(self.self_attn.attend(h_BLW, k_BHSd, v_BHSd, self_mask))
        x_BLW = x_BLW + self.drop(self.cross_attn.attend(self.norm_cross(x_BLW), *memory_kv, memory_mask))
        h_BLW = _modulate(self.norm_mlp(x_BLW), shift_m, scale_m)
        return x_BLW + gate_m.unsqueeze(1) * self.drop(self.mlp(h_BLW)), (k_BHSd, v_BHSd)


class NextScaleTransformer(nn.Module):
    """Predicts every scale's code indices from the coarser scales, the text and the motion length."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        W = cfg.width
        self.mask_id = cfg.codebook_size
        self.text_norm = nn.LayerNorm(cfg.text_dim)
        self.text_proj = nn.Linear(cfg.text_dim, W)
        self.pooled_norm = nn.LayerNorm(cfg.text_dim)
        self.pooled_proj = nn.Linear(cfg.text_dim, W)
        self.null_tokens_ND = nn.Parameter(0.02 * torch.randn(cfg.num_null_tokens, cfg.text_dim))
        self.null_pooled_D = nn.Parameter(0.02 * torch.randn(cfg.text_dim))
        self.length_proj = nn.Linear(2 * cfg.num_position_freqs, W)
        self.latent_in = nn.Linear(cfg.code_dim, W)
        self.token_embed = nn.Embedding(cfg.codebook_size + 1, W)
        self.level_embed = nn.Embedding(cfg.max_scales, W)
        self.position_proj = nn.Linear(2 * cfg.num_position_freqs, W)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head_norm = nn.LayerNorm(W, elementwise_affine=False, eps=1e-6)
        self.head_ada = nn.Linear(W, 2 * W)
        self.head = nn.Linear(W, cfg.codebook_size)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.level_embed.weight, std=0.02)
        nn.init.zeros_(self.head_ada.weight)
        nn.init.zeros_(self.head_ada.bias)

    # ----- condition -------------------------------------------------------------------------
    def condition(
        self,
        text: TextFeatures,
        num_latents_B: torch.Tensor,
        drop_B: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Condition:
        """Project text features; rows with ``drop_B`` use the learned null text instead.

        In training mode with ``drop_B=None``, rows are dropped with probability ``cond_drop_prob``.
        """
        tokens_BND, mask_BN, pooled_BD = text.tokens_BND, text.mask_BN, text.pooled_BD
        B = tokens_BND.shape[0]
        if drop_B is None and self.training and self.cfg.cond_drop_prob > 0:
            u_B = torch.rand(B, device=tokens_BND.device, generator=generator)
            drop_B = u_B < self.cfg.cond_drop_prob
        if drop_B is not None and bool(drop_B.any()):
            n_null = self.cfg.num_null_tokens
            if tokens_BND.shape[1] < n_null:
                pad = n_null - tokens_BND.shape[1]
                tokens_BND = F.pad(tokens_BND, (0, 0, 0, pad))
                mask_BN = F.pad(mask_BN, (0, pad), value=False)
            null_BND = torch.zeros_like(tokens_BND)
            null_BND[:, :n_null] = self.null_tokens_ND.to(tokens_BND.dtype)
            null_mask_BN = torch.zeros_like(mask_BN)
            null_mask_BN[:, :n_null] = True
            drop_B11 = drop_B.view(B, 1, 1)
            tokens_BND = torch.where(drop_B11, null_BND, tokens_BND)
            mask_BN = torch.where(drop_B.view(B, 1), null_mask_BN, mask_BN)
            pooled_BD = torch.where(
                drop_B.view(B, 1), self.null_pooled_D.to(pooled_BD.dtype).expand_as(pooled_BD), pooled_BD
            )
        memory_BNW = self.text_proj(self.text_norm(tokens_BND))
        length_B1 = (num_latents_B.to(memory_BNW.dtype) / self.cfg.max_latents).unsqueeze(1)
        length_BW = self.length_proj(fourier_features(length_B1, self.cfg.num_position_freqs, 4.0).squeeze(1))
        cond_BW = self.pooled_proj(self.pooled_norm(pooled_BD)) + length_BW
        return Condition(memory_BNW, mask_BN, cond_BW)

    # ----- inputs ----------------------------------------------------------------------------
    def embed_scale(
        self, latent_in_BLC: torch.Tensor, tokens_BL: torch.Tensor, scale: int, positions_BL: torch.Tensor
    ) -> torch.Tensor:
        """Input of one scale (0-based ``scale``); ``positions_BL`` are normalised to (0, 1)."""
        if scale >= self.cfg.max_scales:
            raise ConfigError(f"scale {scale + 1} exceeds transformer.max_scales={self.cfg.max_scales}")
        pos_BLW = self.position_proj(fourier_features(positions_BL, self.cfg.num_position_freqs, self.cfg.max_latents))
        return self.latent_in(latent_in_BLC) + self.token_embed(tokens_BL) + self.level_embed.weight[scale] + pos_BLW

    def logits(self, x_BLW: torch.Tensor, head_mod_B2W: torch.Tensor) -> torch.Tensor:
        shift_BW, scale_BW = head_mod_B2W.unbind(1)
        return self.head(_modulate(self.head_norm(x_BLW), shift_BW, scale_BW))

    # ----- training: all scales at once ---------------------------------------------------------
    def forward(
        self,
        cond: Condition,
        latents_in: list[torch.Tensor],
        tokens_in: list[torch.Tensor],
        scale_lengths_BK: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Logits of every scale, ``[(B, L_k, V)]``, in one block-causal pass.

        ``latents_in[k]`` ``(B, L_k, C)`` and ``tokens_in[k]`` ``(B, L_k)`` are padded to the longest
        sample; ``scale_lengths_BK[b, k]`` is sample b's real length of scale k (positions past it
        are padding: never attended to, their logits meaningless).
        """
        device = cond.cond_BW.device
        pieces, scale_ids, valid = [], [], []
        for k, (lat_BLC, tok_BL) in enumerate(zip(latents_in, tokens_in)):
            B, L = tok_BL.shape
            j_L = torch.arange(L, device=device)
            length_B1 = scale_lengths_BK[:, k : k + 1].to(lat_BLC.dtype)
            positions_BL = (j_L.to(lat_BLC.dtype) + 0.5) / length_B1
            pieces.append(self.embed_scale(lat_BLC, tok_BL, k, positions_BL))
            scale_ids.append(torch.full((L,), k, device=device))
            valid.append(j_L.unsqueeze(0) < scale_lengths_BK[:, k : k + 1])
        x_BSW = torch.cat(pieces, dim=1)
        scale_S = torch.cat(scale_ids)
        valid_BS = torch.cat(valid, dim=1)
        allowed_SS = scale_S.unsqueeze(0) <= scale_S.unsqueeze(1)
        mask_B1SS = (allowed_SS.unsqueeze(0) & valid_BS.unsqueeze(1)).unsqueeze(1)
        memory_mask_B11N = cond.memory_mask_BN[:, None, None, :]
        for block in self.blocks:
            memory_kv = block.cross_attn.keys_values(cond.memory_BNW)
            x_BSW, _ = block(x_BSW, block.modulation(cond.cond_BW), None, mask_B1SS, memory_kv, memory_mask_B11N)
        logits_BSV = self.logits(x_BSW, self.head_ada(F.silu(cond.cond_BW)).unflatten(-1, (2, -1)))
        return list(logits_BSV.split([t.shape[1] for t in tokens_in], dim=1))

    # ----- inference: one scale at a time with a KV cache ----------------------------------------
    def start(self, cond: Condition) -> InferenceState:
        """Precompute everything that depends only on the condition."""
        return InferenceState(
            modulation=[block.modulation(cond.cond_BW) for block in self.blocks],
            head_modulation_B2W=self.head_ada(F.silu(cond.cond_BW)).unflatten(-1, (2, -1)),
            memory_kv=[block.cross_attn.keys_values(cond.memory_BNW) for block in self.blocks],
            memory_mask_B11N=cond.memory_mask_BN[:, None, None, :],
            self_kv=[None] * len(self.blocks),
        )

    def step(
        self, state: InferenceState, latent_in_BLC: torch.Tensor, tokens_BL: torch.Tensor, commit: bool
    ) -> torch.Tensor:
        """Logits ``(B, L, V)`` of the next scale given the cached coarser ones; ``commit`` caches it."""
        B, L = tokens_BL.shape
        scale = state.scales_done
        positions_BL = ((torch.arange(L, device=tokens_BL.device, dtype=latent_in_BLC.dtype) + 0.5) / L).expand(B, L)
        x_BLW = self.embed_scale(latent_in_BLC, tokens_BL, scale, positions_BL)
        for i, block in enumerate(self.blocks):
            x_BLW, kv = block(
                x_BLW, state.modulation[i], state.self_kv[i], None, state.memory_kv[i], state.memory_mask_B11N
            )
            if commit:
                state.self_kv[i] = kv
        if commit:
            state.scales_done += 1
        return self.logits(x_BLW, state.head_modulation_B2W)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
