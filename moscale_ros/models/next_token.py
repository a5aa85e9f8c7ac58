"""Next-token order (T2M-GPT style): the baseline of the controlled comparison.

Same transformer as the next-scale model (:class:`~moscale_ros.models.transformer.NextScaleTransformer`:
blocks, text cross-attention, adaLN from the pooled text and the length, learned null text for
guidance, output head), on the codes ``t_1 .. t_N`` of a *single-scale* tokenizer (one scale of
``N`` latents, the same codebook and latent rate as the multi-scale one). The only differences are
the order and the input:

    x_i = W_lat e[t_{i-1}] + E_tok[t_{i-1}] + E_level[0] + P((i + 1/2) / N),   t_0 = BOS (the mask id, e = 0)
    p(t_i | t_<i, text, N) = softmax(head(block-causal stack with blocks of size 1 = causal)_i)

i.e. the running latent the next-scale model sees (``down(f_hat_<k)``) becomes the latent of the
previous token. Training: :mod:`moscale_ros.training.next_token`; sampling:
:mod:`moscale_ros.generation.next_token`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moscale_ros.models.tokenizer import MotionTokenizer
from moscale_ros.models.transformer import Condition, InferenceState, NextScaleTransformer


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
