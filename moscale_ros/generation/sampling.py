"""Token sampling for generation: guidance, nucleus sampling, confidence-based re-masking.

* Classifier-free guidance in logit space: ``l = l_u + s (l_c - l_u)``; ``s`` per scale follows a
  linear schedule from ``start`` (scale 1) to ``end`` (scale K).
* Nucleus (top-p) sampling at temperature ``τ``: keep the smallest set of codes whose
  probability mass reaches ``p``; ``τ = 0`` is greedy.
* In-scale refinement (MaskGIT-style): after iteration ``i`` of ``n``, the least confident of the
  tokens decided in that iteration are masked again: ``⌊L cos(π/2 · (i+1)/n)⌋`` of them with the
  ``cosine`` schedule, ``max(1, round(L cos(π/2 · (i+1)/(n-1))))`` with ``linspace_cosine`` (mask
  ratios ``cos(π/2 t)`` at ``t = linspace(0, 1, n)``, as in MoMask's sampler; it re-masks far fewer
  tokens at small ``n``: at n = 2 one token, where ``cosine`` re-masks 71 %).
"""

from __future__ import annotations

import math

import torch

from moscale_ros.generation.config import RefineSchedule

MIN_TEMPERATURE = 1e-3  # below: greedy (the limit of sampling as τ -> 0)


def guidance_schedule(start: float, end: float, num_scales: int) -> list[float]:
    """Guidance scale per scale, linear from ``start`` to ``end``."""
    if num_scales == 1:
        return [float(start)]
    return [start + (end - start) * k / (num_scales - 1) for k in range(num_scales)]


def guide(logits_2BLV: torch.Tensor, scale: float) -> torch.Tensor:
    """Combine a batch of ``[conditional; unconditional]`` logits into ``(B, L, V)``."""
    cond_BLV, uncond_BLV = logits_2BLV.chunk(2, dim=0)
    return uncond_BLV + scale * (cond_BLV - uncond_BLV)


def top_p_filter(logits_NV: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits with every code outside the top-``p`` nucleus set to ``-inf`` (the top code is always kept)."""
    if top_p >= 1.0:
        return logits_NV
    sorted_NV, order_NV = logits_NV.sort(dim=-1, descending=True)
    cumulative_NV = sorted_NV.softmax(-1).cumsum(-1)
    drop_sorted_NV = (cumulative_NV - sorted_NV.softmax(-1)) >= top_p
    drop_NV = torch.zeros_like(drop_sorted_NV).scatter(-1, order_NV, drop_sorted_NV)
    return logits_NV.masked_fill(drop_NV, float("-inf"))


def sample_tokens(
    logits_BLV: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled codes ``(B, L)`` and their log-probabilities under the (filtered) distribution.
    A temperature below :data:`MIN_TEMPERATURE` is greedy (its limit), so ``logits / τ`` never overflows."""
    B, L, V = logits_BLV.shape
    logits_NV = logits_BLV.reshape(B * L, V).float()
    if temperature < MIN_TEMPERATURE:
        idx_N = logits_NV.argmax(-1)
        log_probs_NV = logits_NV.log_softmax(-1)
    else:
        logits_NV = top_p_filter(logits_NV / temperature, top_p)
        log_probs_NV = logits_NV.log_softmax(-1)
        idx_N = torch.multinomial(log_probs_NV.exp(), 1, generator=generator).squeeze(-1)
    confidence_N = log_probs_NV.gather(-1, idx_N.unsqueeze(-1)).squeeze(-1)
    return idx_N.view(B, L), confidence_N.view(B, L)


def num_masked_after(iteration: int, iterations: int, length: int, schedule: RefineSchedule = "cosine") -> int:
    """Tokens masked again after ``iteration`` (0-based) of ``iterations`` (module docstring); 0 after the last."""
    if iteration >= iterations - 1:
        return 0
    if schedule == "linspace_cosine":
        return max(1, round(length * math.cos(0.5 * math.pi * (iteration + 1) / (iterations - 1))))
    return int(math.floor(length * math.cos(0.5 * math.pi * (iteration + 1) / iterations)))


def remask_least_confident(confidence_BL: torch.Tensor, candidates_BL: torch.Tensor, num_masked: int) -> torch.Tensor:
    """Mask ``(B, L)``: the ``num_masked`` least confident candidate positions per row (capped by the candidates)."""
    if num_masked <= 0:
        return torch.zeros_like(candidates_BL)
    score_BL = confidence_BL.masked_fill(~candidates_BL, float("inf"))
    order_BL = score_BL.argsort(dim=-1)
    rank_BL = torch.empty_like(order_BL).scatter_(
        -1, order_BL, torch.arange(score_BL.shape[1], device=score_BL.device).expand_as(order_BL)
    )
    return (rank_BL < num_masked) & candidates_BL
