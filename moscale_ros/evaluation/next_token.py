"""Next-token order (T2M-GPT style), the baseline of the controlled comparison.

Same transformer as the next-scale model (:class:`~moscale_ros.models.transformer.NextScaleTransformer`:
blocks, text cross-attention, adaLN from the pooled text and the length, learned null text for
guidance, output head), on the codes ``t_1 .. t_N`` of a *single-scale* tokenizer (one scale of
``N`` latents, the same codebook and latent rate as the multi-scale one). The only differences are
the order and the input:

    x_i = W_lat e[t_{i-1}] + E_tok[t_{i-1}] + E_level[0] + P((i + 1/2) / N),   t_0 = BOS (the mask id, e = 0)
    p(t_i | t_<i, text, N) = softmax(head(block-causal stack with blocks of size 1 = causal)_i)

i.e. the running latent the next-scale model sees (``down(f_hat_<k)``) becomes the latent of the
previous token. Training is teacher forcing with T2M-GPT's input corruption (a random share
``rho ~ U(0, corrupt_max)`` of the input tokens of a ``corrupt_prob`` share of the samples replaced
by random codes; targets stay clean) and the same condition dropout; sampling runs token by token
with a KV cache, classifier-free guidance (linear from ``guidance`` at the first token to
``guidance_end`` at the last), temperature and top-p, all from the same
:class:`~moscale_ros.generation.config.GenerationConfig`.

``moscale train transformer`` trains it through :func:`run` (checkpoint kind ``next-token-generator``,
so the next-scale :class:`~moscale_ros.generation.generator.MotionGenerator` refuses such a file).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moscale_common.errors import ConfigError, InputError
from moscale_ros.generation import sampling
from moscale_ros.generation.config import GenerationConfig
from moscale_ros.models.text_encoder import TextEncoder, TextFeatures
from moscale_ros.models.tokenizer import MotionTokenizer
from moscale_ros.models.transformer import Condition, InferenceState, NextScaleTransformer
from moscale_ros.runtime import torch_threads
from moscale_ros.training.transformer import (
    MaskingConfig,
    Models,
    TrainingOrder,
    TransformerLossConfig,
    corrupt_codes,
)

NEXT_TOKEN_KIND = "next-token-generator"


class NextTokenTransformer(NextScaleTransformer):
    """The next-scale transformer's parameters used in causal next-token order (see the module docstring)."""

    def token_inputs(
        self, prev_tokens_BN: torch.Tensor, prev_latents_BNC: torch.Tensor, num_latents_B: torch.Tensor, offset: int = 0
    ) -> torch.Tensor:
        """``x`` of positions ``offset .. offset + n - 1`` from the previous tokens and their latents."""
        B, n = prev_tokens_BN.shape
        i_N = torch.arange(offset, offset + n, device=prev_tokens_BN.device, dtype=prev_latents_BNC.dtype)
        positions_BN = (i_N[None, :] + 0.5) / num_latents_B[:, None].to(prev_latents_BNC.dtype)
        return self.embed_scale(prev_latents_BNC, prev_tokens_BN, 0, positions_BN)

    def forward(
        self, cond: Condition, prev_tokens_BN: torch.Tensor, prev_latents_BNC: torch.Tensor, num_latents_B: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, N, V)`` of every position under a causal mask (teacher forcing); positions past
        ``num_latents_B`` are padding (never attended to)."""
        x_BNW = self.token_inputs(prev_tokens_BN, prev_latents_BNC, num_latents_B)
        N = x_BNW.shape[1]
        steps_N = torch.arange(N, device=x_BNW.device)
        causal_NN = steps_N[None, :] <= steps_N[:, None]
        valid_BN = steps_N[None, :] < num_latents_B[:, None]
        mask_B1NN = (causal_NN[None] & valid_BN[:, None, :]).unsqueeze(1)
        memory_mask_B11N = cond.memory_mask_BN[:, None, None, :]
        for block in self.blocks:
            memory_kv = block.cross_attn.keys_values(cond.memory_BNW)
            x_BNW, _ = block(x_BNW, block.modulation(cond.cond_BW), None, mask_B1NN, memory_kv, memory_mask_B11N)
        return self.logits(x_BNW, self.head_ada(F.silu(cond.cond_BW)).unflatten(-1, (2, -1)))

    def step_token(
        self,
        state: InferenceState,
        prev_tokens_B1: torch.Tensor,
        prev_latents_B1C: torch.Tensor,
        num_latents_B: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``(B, 1, V)`` of the next position given the cached earlier ones (appended to the cache)."""
        x_B1W = self.token_inputs(prev_tokens_B1, prev_latents_B1C, num_latents_B, offset=state.scales_done)
        for i, block in enumerate(self.blocks):
            x_B1W, state.self_kv[i] = block(
                x_B1W, state.modulation[i], state.self_kv[i], None, state.memory_kv[i], state.memory_mask_B11N
            )
        state.scales_done += 1
        return self.logits(x_B1W, state.head_modulation_B2W)


def shifted_inputs(tokenizer: MotionTokenizer, idx_BN: torch.Tensor, bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prev_tokens_BN, prev_latents_BNC)``: BOS then ``idx[:, :-1]``, and their code vectors (0 for BOS)."""
    B = idx_BN.shape[0]
    prev_BN = torch.cat([torch.full((B, 1), bos_id, dtype=idx_BN.dtype, device=idx_BN.device), idx_BN[:, :-1]], 1)
    latents_BNC = tokenizer.embed(prev_BN.clamp(max=tokenizer.codebook_size - 1))
    return prev_BN, latents_BNC * (prev_BN != bos_id)[..., None].to(latents_BNC.dtype)


def next_token_loss(
    models: Models,
    batch: dict,
    masking: MaskingConfig,
    loss_cfg: TransformerLossConfig,
    device: torch.device,
    train: bool,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced cross-entropy of a batch (training: corrupted inputs and condition dropout;
    validation: clean) plus the length estimator's loss; the parts carry the token accuracy ``acc_s1``."""
    tokenizer, model = models.tokenizer, models.transformer
    if tokenizer.num_scales != 1:
        raise ConfigError(
            f"next-token order needs a single-scale tokenizer (model.scales: [49]); this one has "
            f"{tokenizer.num_scales} scales {tokenizer.cfg.scales}"
        )
    feats_BTD, lengths_B = batch["feats_BTD"].to(device), batch["lengths_B"].to(device)
    with torch.no_grad():
        f_BNC, N_B = tokenizer.encode_latents(feats_BTD, lengths_B)
        quant = tokenizer.quantize(f_BNC, N_B)
        idx_BN, valid_BN = quant.idx[0], quant.masks[0]
        inputs_BN = idx_BN
        if train and masking.corrupt_max > 0 and masking.corrupt_prob > 0:
            inputs_BN = corrupt_codes(
                idx_BN, valid_BN, tokenizer.codebook_size, masking.corrupt_max, masking.corrupt_prob
            )
        prev_BN, prev_latents_BNC = shifted_inputs(tokenizer, inputs_BN, model.mask_id)
    text = models.text_encoder.encode(batch["texts"]).to(device)
    cond = model.condition(text, N_B, drop_B=None if train else torch.zeros_like(N_B, dtype=torch.bool))
    logits_BNV = model(cond, prev_BN, prev_latents_BNC.to(cond.cond_BW.dtype), N_B)
    ce = F.cross_entropy(
        logits_BNV[valid_BN].float(), idx_BN[valid_BN], label_smoothing=loss_cfg.label_smoothing if train else 0.0
    )
    length_loss = models.length.loss(text.pooled_BD, N_B)
    loss = ce + loss_cfg.length_weight * length_loss
    with torch.no_grad():
        hits = float(((logits_BNV.argmax(-1) == idx_BN) & valid_BN).sum()) / max(1, int(valid_BN.sum()))
    return loss, {"loss": loss.item(), "ce": ce.item(), "length_ce": length_loss.item(), "acc_s1": hits}


NEXT_TOKEN_ORDER = TrainingOrder(
    transformer_cls=NextTokenTransformer, loss_fn=next_token_loss, kind=NEXT_TOKEN_KIND, run_name="next_token"
)


def run(args: argparse.Namespace) -> int:
    """``moscale train transformer`` in next-token order (the transformer trainer with :data:`NEXT_TOKEN_ORDER`)."""
    from moscale_ros.training import transformer

    return transformer.run(args, NEXT_TOKEN_ORDER)


@dataclass
class NextTokenGenerator:
    """Text -> motion features in next-token order with a trained :class:`NextTokenTransformer`."""

    tokenizer: MotionTokenizer
    transformer: NextTokenTransformer
    text_encoder: TextEncoder
    mean_D: torch.Tensor  # noqa: N815 (shape suffix)
    std_D: torch.Tensor  # noqa: N815 (shape suffix)
    config: GenerationConfig
    fps: float = 20.0

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", text_encoder: TextEncoder | None = None, **overrides
    ) -> NextTokenGenerator:
        """Load a ``next-token-generator`` checkpoint; ``overrides`` replace generation settings."""
        from moscale_common.config import from_dict, to_dict
        from moscale_ros.generation.bundle import load_generator_parts

        parts = load_generator_parts(path, device, kind=NEXT_TOKEN_KIND)
        transformer = NextTokenTransformer(parts.transformer.cfg)
        transformer.load_state_dict(parts.transformer.state_dict())
        config = parts.generation
        if overrides:
            config = from_dict(GenerationConfig, {**to_dict(config), **overrides}, where="generation overrides")
        if text_encoder is None:
            text_encoder = TextEncoder(parts.text_encoder, device=device)
        return cls(parts.tokenizer, transformer.to(device).eval(), text_encoder, parts.mean_D, parts.std_D, config)

    @property
    def device(self) -> torch.device:
        return self.mean_D.device

    @property
    def frames_per_latent(self) -> int:
        return self.tokenizer.downsample_factor

    @property
    def max_frames(self) -> int:
        return self.transformer.cfg.max_latents * self.frames_per_latent

    @torch.inference_mode()
    def sample_codes(self, texts: Sequence[str], num_latents: int, generator: torch.Generator) -> torch.Tensor:
        """``(B, N)`` codes sampled token by token for texts of one length."""
        cfg = self.config
        B, N, device = len(texts), num_latents, self.device
        guidance = sampling.guidance_schedule(cfg.guidance, cfg.guidance_end, N)
        use_cfg = any(g != 1.0 for g in guidance)
        text = self.text_encoder.encode(list(texts)).to(device)
        N_B = torch.full((B,), N, dtype=torch.long, device=device)
        if use_cfg:
            text = TextFeatures(*(torch.cat([t, t]) for t in (text.tokens_BND, text.mask_BN, text.pooled_BD)))
            N_B = torch.cat([N_B, N_B])
            cond = self.transformer.condition(text, N_B, drop_B=torch.arange(2 * B, device=device) >= B)
        else:
            cond = self.transformer.condition(text, N_B, drop_B=None)
        state = self.transformer.start(cond)
        mask_id = self.transformer.mask_id
        prev_B1 = torch.full((N_B.shape[0], 1), mask_id, dtype=torch.long, device=device)
        prev_latent_B1C = torch.zeros(N_B.shape[0], 1, self.tokenizer.code_dim, device=device)
        codes = []
        for i in range(N):
            logits_B1V = self.transformer.step_token(state, prev_B1, prev_latent_B1C, N_B)
            if use_cfg:
                logits_B1V = sampling.guide(logits_B1V, guidance[i])
            idx_B1, _ = sampling.sample_tokens(logits_B1V, cfg.temperature, cfg.top_p, generator)
            codes.append(idx_B1)
            prev_B1 = torch.cat([idx_B1, idx_B1]) if use_cfg else idx_B1
            prev_latent_B1C = self.tokenizer.embed(prev_B1)
        return torch.cat(codes, dim=1)

    def generate_features(self, texts: Sequence[str], frames: Sequence[int], seed: int) -> list[np.ndarray]:
        """Un-normalised ``(T_i, 263)`` features for each text and frame count; equal lengths run as one batch."""
        if len(texts) != len(frames) or not texts:
            raise InputError(f"next-token generation: {len(texts)} texts but {len(frames)} lengths")
        bad = [f for f in frames if not self.frames_per_latent <= f <= self.max_frames]
        if bad:
            raise InputError(
                f"next-token generation: lengths {bad[:3]} frames outside {self.frames_per_latent}..{self.max_frames}"
            )
        generator = torch.Generator(self.device).manual_seed(int(seed))
        out: list[np.ndarray | None] = [None] * len(texts)
        with torch_threads(self.config.num_threads):
            for length in dict.fromkeys(frames):
                rows = [i for i, f in enumerate(frames) if f == length]
                N = -(-length // self.frames_per_latent)
                idx_BN = self.sample_codes([texts[i] for i in rows], N, generator)
                with torch.inference_mode():
                    lengths_B = torch.full((len(rows),), length, device=self.device)
                    feats_BTD = self.tokenizer.decode_indices([idx_BN], N, lengths_B) * self.std_D + self.mean_D
                for b, i in enumerate(rows):
                    out[i] = feats_BTD[b, :length].float().cpu().numpy()
        return [o for o in out if o is not None]

    def latency(self, text: str, frames: int, seed: int = 0) -> float:
        """Seconds to generate one motion of ``frames`` frames (text encoding included)."""
        start = time.perf_counter()
        self.generate_features([text], [frames], seed)
        return time.perf_counter() - start
