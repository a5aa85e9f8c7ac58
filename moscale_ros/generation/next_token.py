"""Sampling in next-token order (T2M-GPT style) with a trained next-token transformer.

Token by token with a KV cache: classifier-free guidance linear from ``guidance`` at the first
token to ``guidance_end`` at the last, temperature and top-p, all from the same
:class:`~moscale_ros.generation.config.GenerationConfig` as next-scale generation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from moscale_common.errors import InputError
from moscale_ros.generation import sampling
from moscale_ros.generation.bundle import NEXT_TOKEN_KIND, load_generator_parts
from moscale_ros.generation.config import GenerationConfig, SamplingOverrides
from moscale_ros.models.next_token import NextTokenTransformer
from moscale_ros.models.text_encoder import TextEncoder, TextFeatures
from moscale_ros.models.tokenizer import MotionTokenizer
from moscale_ros.runtime import torch_threads


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
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        text_encoder: TextEncoder | None = None,
        overrides: SamplingOverrides | None = None,
        num_threads: int | None = None,
    ) -> NextTokenGenerator:
        """Load a ``next-token-generator`` checkpoint; ``overrides`` replace its sampling settings,
        ``num_threads`` its torch CPU threads."""
        parts = load_generator_parts(path, device, kind=NEXT_TOKEN_KIND)
        transformer = NextTokenTransformer(parts.transformer.cfg)
        transformer.load_state_dict(parts.transformer.state_dict())
        config = (overrides or SamplingOverrides()).apply(parts.generation)
        if num_threads is not None:
            config = replace(config, num_threads=num_threads)
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
