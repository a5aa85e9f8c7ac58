"""Multi-scale residual vector quantisation over time with one shared EMA codebook.

For a latent sequence ``f`` of ``N`` steps and scale lengths ``L_1 < ... < L_K = N``:

    f_hat_0 = 0
    for k = 1..K:   r_k  = area_down(f - f_hat_{k-1}, L_k)          (L_k, C)
                    idx_k = argmin_v ||r_k - e_v||^2                  nearest code per step
                    f_hat_k = f_hat_{k-1} + linear_up(e[idx_k], N)

``f_hat_k`` is the latent of the first ``k`` scales: decoding it gives the full-length motion at
the detail of those scales. Codes are updated by exponential moving averages of the residual
vectors assigned to them (``m_v <- d m_v + (1-d) n_v``, ``s_v <- d s_v + (1-d) sum r``,
``e_v = s_v / m_v`` with Laplace smoothing), over valid steps of every scale; a code whose
average count ``m_v`` falls below ``dead_code_threshold`` is reset to a random residual vector
of the current batch. Padded steps (beyond a sample's own lengths) take no part anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from moscale_ros.models.resample import area_downsample, lengths_mask, linear_upsample

CorruptFn = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
"""``corrupt_fn(k, idx_BL, valid_BL) -> idx_BL``: replace some codes of scale ``k`` (0-based)."""


def scale_lengths_for(base_lengths: list[int], num_latents: int) -> list[int]:
    """Scale lengths of a sequence of ``num_latents`` latents.

    ``base_lengths`` are the lengths at ``N = base_lengths[-1]`` latents; for ``n`` latents scale
    ``k < K`` gets ``clamp(round(base_k * n / N), 1, n)`` (kept non-decreasing) and the last
    scale gets ``n``. With base ``[6, 12, 24, 49]``: 49 -> [6, 12, 24, 49], 16 -> [2, 4, 8, 16].
    """
    if num_latents < 1:
        raise ValueError(f"num_latents must be >= 1, got {num_latents}")
    full = base_lengths[-1]
    lengths = []
    previous = 1
    for base in base_lengths[:-1]:
        length = min(num_latents, max(previous, 1, (2 * base * num_latents + full) // (2 * full)))
        lengths.append(length)
        previous = length
    lengths.append(num_latents)
    return lengths


@dataclass
class QuantizeResult:
    """Everything one multi-scale quantisation produced (``K`` scales, batch ``B``).

    ``idx[k]``: ``(B, L_k)`` nearest codes of scale ``k``'s residual (the targets; 0 at padding).
    ``used_idx[k]``: the codes actually accumulated (``idx[k]`` after ``corrupt_fn``).
    ``masks[k]``: ``(B, L_k)`` valid steps. ``scale_lengths``: ``(B, K)`` per-sample lengths.
    ``inputs[k]``: ``(B, L_k, C)`` the running latent before scale ``k`` area-downsampled to
    ``L_k`` (``inputs[0]`` is zeros): the next-scale transformer's input for scale ``k``.
    ``prefix_f_hat[k]``: ``(B, N, C)`` latent of scales ``0..k``; ``f_hat = prefix_f_hat[-1]``.
    ``code_counts``: ``(V,)`` how often each code was chosen (valid steps, all scales).
    """

    idx: list[torch.Tensor]
    used_idx: list[torch.Tensor]
    masks: list[torch.Tensor]
    scale_lengths: torch.Tensor
    inputs: list[torch.Tensor]
    prefix_f_hat: list[torch.Tensor]
    code_counts: torch.Tensor

    @property
    def f_hat(self) -> torch.Tensor:
        return self.prefix_f_hat[-1]


def perplexity(counts_V: torch.Tensor) -> float:
    """``exp(H(p))`` of the code-usage distribution ``p = counts / sum``: 1 (one code) .. V (uniform)."""
    total = counts_V.sum()
    if total <= 0:
        return 0.0
    p_V = counts_V.double() / total
    entropy = -(p_V * torch.log(p_V.clamp(min=1e-30))).sum()
    return float(torch.exp(entropy))


class ResidualScaleQuantizer(nn.Module):
    """One shared codebook ``(V, C)``, EMA-updated, applied residually over ``K`` temporal scales."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        base_lengths: list[int],
        ema_decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.base_lengths = list(base_lengths)
        self.ema_decay = ema_decay
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        # All codes start "dead" (count 0): the first training update fills them from the data.
        self.register_buffer("codebook_VC", torch.zeros(codebook_size, code_dim))
        self.register_buffer("ema_count_V", torch.zeros(codebook_size))
        self.register_buffer("ema_sum_VC", torch.zeros(codebook_size, code_dim))
        self.register_buffer("resets", torch.zeros((), dtype=torch.long))

    @property
    def num_scales(self) -> int:
        return len(self.base_lengths)

    def scale_lengths(self, num_latents: int) -> list[int]:
        """See :func:`scale_lengths_for`."""
        return scale_lengths_for(self.base_lengths, num_latents)

    def scale_lengths_batch(self, latent_lengths_B: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` long: the scale lengths of every sample (on the device of the input)."""
        rows = [self.scale_lengths(int(n)) for n in latent_lengths_B.tolist()]
        return torch.tensor(rows, dtype=torch.long, device=latent_lengths_B.device)

    def embed(self, idx_BL: torch.Tensor) -> torch.Tensor:
        """Codebook lookup ``e[idx]``: ``(B, L) -> (B, L, C)``."""
        return nn.functional.embedding(idx_BL, self.codebook_VC)

    def nearest(self, r_NC: torch.Tensor) -> torch.Tensor:
        """``argmin_v ||r - e_v||^2`` for each row (computed in float32)."""
        r_NC = r_NC.float()
        codebook_VC = self.codebook_VC.float()
        dist_NV = r_NC.pow(2).sum(-1, keepdim=True) - 2 * r_NC @ codebook_VC.T + codebook_VC.pow(2).sum(-1)[None, :]
        return dist_NV.argmin(dim=-1)

    @torch.no_grad()
    def quantize(
        self,
        f_BTC: torch.Tensor,
        latent_lengths_B: torch.Tensor,
        corrupt_fn: CorruptFn | None = None,
        update: bool = False,
    ) -> QuantizeResult:
        """Quantise ``f_BTC`` (valid steps ``latent_lengths_B``) scale by scale; see the module docstring.

        ``update=True`` applies the EMA codebook update and dead-code reset (training).
        No gradient flows through here: the tokenizer uses the straight-through estimator.
        Runs in float32 even under autocast.
        """
        with torch.autocast(device_type=f_BTC.device.type, enabled=False):
            return self._quantize(f_BTC, latent_lengths_B, corrupt_fn, update)

    def _quantize(
        self, f_BTC: torch.Tensor, latent_lengths_B: torch.Tensor, corrupt_fn: CorruptFn | None, update: bool
    ) -> QuantizeResult:
        T = f_BTC.shape[1]
        f_BTC = f_BTC.detach().float()
        latent_lengths_B = latent_lengths_B.to(f_BTC.device)
        lengths_BK = self.scale_lengths_batch(latent_lengths_B)
        f_hat_BTC = torch.zeros_like(f_BTC)
        residual_BTC = f_BTC * lengths_mask(latent_lengths_B, T)[..., None]
        idx_list, used_list, mask_list, input_list, prefix_list = [], [], [], [], []
        chosen_residuals, chosen_idx = [], []
        for k in range(self.num_scales):
            L_B = lengths_BK[:, k]
            valid_BL = lengths_mask(L_B)
            input_list.append(self.next_scale_input(f_hat_BTC, L_B, latent_lengths_B))
            r_BLC, idx_BL = self.nearest_scale_codes(residual_BTC, L_B, latent_lengths_B)
            idx_BL = idx_BL.masked_fill(~valid_BL, 0)
            chosen_residuals.append(r_BLC[valid_BL])
            chosen_idx.append(idx_BL[valid_BL])
            used_BL = idx_BL
            if corrupt_fn is not None:
                used_BL = corrupt_fn(k, idx_BL, valid_BL).masked_fill(~valid_BL, 0)
            h_BTC = self.scale_latent(used_BL, latent_lengths_B, L_B, T)
            f_hat_BTC = f_hat_BTC + h_BTC  # = add_scale(f_hat, used_BL); h also leaves the residual
            residual_BTC = residual_BTC - h_BTC
            idx_list.append(idx_BL)
            used_list.append(used_BL)
            mask_list.append(valid_BL)
            prefix_list.append(f_hat_BTC)
        r_NC = torch.cat(chosen_residuals)
        idx_N = torch.cat(chosen_idx)
        counts_V = torch.bincount(idx_N, minlength=self.codebook_size).float()
        if update:
            self._ema_update(r_NC, idx_N, counts_V)
        return QuantizeResult(idx_list, used_list, mask_list, lengths_BK, input_list, prefix_list, counts_V)

    @torch.no_grad()
    def _ema_update(self, r_NC: torch.Tensor, idx_N: torch.Tensor, counts_V: torch.Tensor) -> None:
        decay = self.ema_decay
        sums_VC = nn.functional.one_hot(idx_N, self.codebook_size).to(r_NC.dtype).T @ r_NC
        self.ema_count_V.mul_(decay).add_(counts_V, alpha=1 - decay)
        self.ema_sum_VC.mul_(decay).add_(sums_VC, alpha=1 - decay)
        total = self.ema_count_V.sum()
        smoothed_V = (self.ema_count_V + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook_VC.copy_(self.ema_sum_VC / smoothed_V[:, None].clamp(min=self.eps))
        dead_V = self.ema_count_V < self.dead_code_threshold
        num_dead = int(dead_V.sum())
        if num_dead and r_NC.shape[0]:
            pick = torch.randint(0, r_NC.shape[0], (num_dead,), device=r_NC.device)
            fresh_DC = r_NC[pick]
            self.codebook_VC[dead_V] = fresh_DC
            self.ema_sum_VC[dead_V] = fresh_DC * self.dead_code_threshold
            self.ema_count_V[dead_V] = self.dead_code_threshold
            self.resets.add_(num_dead)

    # ---- the scale step (VAR's ``get_next_autoregressive_input``), shared by training, generation, editing
    def next_scale_input(
        self, f_hat_BNC: torch.Tensor, scale_lengths_B: torch.Tensor, latent_lengths_B: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``down(f_hat, L_k)``: the running latent at scale ``k``'s length, ``(B, N, C) -> (B, L, C)``.

        The next-scale transformer's input for scale ``k`` (and the residual quantised there is
        ``down(f - f_hat, L_k)``). ``latent_lengths_B`` (default ``N``) are the valid latents.
        """
        device = f_hat_BNC.device
        return area_downsample(
            f_hat_BNC, scale_lengths_B.to(device), None if latent_lengths_B is None else latent_lengths_B.to(device)
        )

    def nearest_scale_codes(
        self, residual_BNC: torch.Tensor, scale_lengths_B: torch.Tensor, latent_lengths_B: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_BLC, idx_BL)``: the residual at scale length ``r = down(residual, L_k)`` and its nearest codes."""
        r_BLC = self.next_scale_input(residual_BNC, scale_lengths_B, latent_lengths_B)
        B, _, C = r_BLC.shape
        return r_BLC, self.nearest(r_BLC.reshape(-1, C)).reshape(B, -1)

    def scale_latent(
        self,
        idx_BL: torch.Tensor,
        latent_lengths_B: torch.Tensor,
        scale_lengths_B: torch.Tensor | None = None,
        num_latents: int | None = None,
    ) -> torch.Tensor:
        """``up(e[idx_k], N_b)``: one scale's codes as a latent ``(B, N, C)``, zero past each ``N_b``.

        ``scale_lengths_B`` (default ``L``) are the valid codes (the others count as code 0 and
        take no part); ``num_latents`` pads the result to ``N`` (default ``max N_b``).
        """
        device = self.codebook_VC.device
        idx_BL = idx_BL.to(device)
        if scale_lengths_B is not None:
            scale_lengths_B = scale_lengths_B.to(device)
            idx_BL = idx_BL.masked_fill(~lengths_mask(scale_lengths_B, idx_BL.shape[1]), 0)
        h_BNC = linear_upsample(self.embed(idx_BL), latent_lengths_B.to(device), scale_lengths_B)
        if num_latents is not None and h_BNC.shape[1] < num_latents:
            h_BNC = nn.functional.pad(h_BNC, (0, 0, 0, num_latents - h_BNC.shape[1]))
        return h_BNC

    def add_scale(
        self,
        f_hat_BNC: torch.Tensor,
        idx_BL: torch.Tensor,
        latent_lengths_B: torch.Tensor,
        scale_lengths_B: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``f_hat + up(e[idx_k], N)``: the running latent after scale ``k`` (see :meth:`scale_latent`)."""
        return f_hat_BNC + self.scale_latent(idx_BL, latent_lengths_B, scale_lengths_B, f_hat_BNC.shape[1])

    def indices_to_latent(
        self, idx_per_scale: list[torch.Tensor], latent_lengths_B: torch.Tensor, num_latents: int | None = None
    ) -> torch.Tensor:
        """``sum_k up(e[idx_k], N_b)`` over the given scales (a prefix is fine): ``(B, N, C)``.

        ``idx_per_scale[k]`` is ``(B, L_k)`` padded to the batch's longest scale ``k``; each
        sample's own scale lengths come from ``latent_lengths_B``.
        """
        if len(idx_per_scale) > self.num_scales:
            raise ValueError(f"got {len(idx_per_scale)} scales of indices; the quantizer has {self.num_scales}")
        device = self.codebook_VC.device
        latent_lengths_B = latent_lengths_B.to(device)
        lengths_BK = self.scale_lengths_batch(latent_lengths_B)
        N = int(latent_lengths_B.max()) if num_latents is None else num_latents
        f_hat_BNC = torch.zeros(latent_lengths_B.shape[0], N, self.code_dim, device=device)
        for k, idx_BL in enumerate(idx_per_scale):
            L_B = lengths_BK[:, k]
            if idx_BL.shape[1] < int(L_B.max()):
                raise ValueError(
                    f"scale {k + 1}: indices have {idx_BL.shape[1]} steps, the latent lengths need {int(L_B.max())}"
                )
            f_hat_BNC = self.add_scale(f_hat_BNC, idx_BL, latent_lengths_B, L_B)
        return f_hat_BNC
