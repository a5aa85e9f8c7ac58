"""Resampling along time between sequence lengths, as small cached matrices.

A resampling from ``S`` source steps to ``D`` target steps is a ``(D, S)`` matrix ``M`` applied as
``y = M @ x``. Two kinds are used by the tokenizer and the transformer:

* ``area`` (downsampling): target step ``i`` covers the source interval ``[i*S/D, (i+1)*S/D)``;
  ``M[i, j] = |[j, j+1) ∩ [i*S/D, (i+1)*S/D)| / (S/D)`` (rows sum to 1, exact fractional overlaps).
* ``linear`` (upsampling): half-pixel linear interpolation, the ``align_corners=False`` rule of
  ``torch.nn.functional.interpolate``: source coordinate ``x = (i + 0.5) * S/D - 0.5`` clamped to
  ``[0, S-1]``, weight ``1 - (x - floor x)`` on ``floor x`` and ``x - floor x`` on the next step.

Batches of variable-length sequences use :func:`batch_matrix`: sample ``b`` gets the ``(D_b, S_b)``
matrix in the top-left corner of a zero ``(D_max, S_max)`` block, so padded source steps never
leak into valid outputs and padded target steps come out as exact zeros.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch

Mode = Literal["area", "linear"]


@lru_cache(maxsize=4096)
def _matrix_cpu(mode: Mode, dst_len: int, src_len: int) -> torch.Tensor:
    if dst_len < 1 or src_len < 1:
        raise ValueError(f"resample lengths must be >= 1, got {src_len} -> {dst_len}")
    if mode == "area":
        scale = src_len / dst_len
        starts = torch.arange(dst_len, dtype=torch.float64) * scale
        ends = starts + scale
        j = torch.arange(src_len, dtype=torch.float64)
        overlap = torch.minimum(ends[:, None], j[None, :] + 1) - torch.maximum(starts[:, None], j[None, :])
        overlap = overlap.clamp(min=0)
        return (overlap / scale).float()
    if mode == "linear":
        x = ((torch.arange(dst_len, dtype=torch.float64) + 0.5) * (src_len / dst_len) - 0.5).clamp(0, src_len - 1)
        lower = x.floor().long()
        upper = (lower + 1).clamp(max=src_len - 1)
        frac = x - lower
        matrix = torch.zeros(dst_len, src_len, dtype=torch.float64)
        rows = torch.arange(dst_len)
        matrix.index_put_((rows, lower), 1 - frac, accumulate=True)
        matrix.index_put_((rows, upper), frac, accumulate=True)
        return matrix.float()
    raise ValueError(f"unknown resample mode {mode!r}; expected 'area' or 'linear'")


_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}


def resample_matrix(
    mode: Mode, dst_len: int, src_len: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The cached ``(dst_len, src_len)`` matrix of ``mode`` on ``device``."""
    key = (mode, int(dst_len), int(src_len), str(device), dtype)
    matrix = _DEVICE_CACHE.get(key)
    if matrix is None:
        matrix = _matrix_cpu(mode, int(dst_len), int(src_len)).to(device=device, dtype=dtype)
        if len(_DEVICE_CACHE) < 16384:
            _DEVICE_CACHE[key] = matrix
    return matrix


def batch_matrix(
    mode: Mode,
    dst_lengths_B: torch.Tensor,
    src_lengths_B: torch.Tensor,
    dst_pad: int,
    src_pad: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(B, dst_pad, src_pad)``: per-sample resampling matrices, zero outside each sample's lengths."""
    dst_list = [int(v) for v in dst_lengths_B.tolist()]
    src_list = [int(v) for v in src_lengths_B.tolist()]
    if max(dst_list) > dst_pad or max(src_list) > src_pad:
        raise ValueError(f"lengths exceed padding: dst {max(dst_list)} > {dst_pad} or src {max(src_list)} > {src_pad}")
    pairs = set(zip(dst_list, src_list))
    if len(pairs) == 1 and dst_list[0] == dst_pad and src_list[0] == src_pad:
        return resample_matrix(mode, dst_pad, src_pad, device, dtype).expand(len(dst_list), dst_pad, src_pad)
    out = torch.zeros(len(dst_list), dst_pad, src_pad, device=device, dtype=dtype)
    for dst_len, src_len in pairs:
        rows = [b for b, pair in enumerate(zip(dst_list, src_list)) if pair == (dst_len, src_len)]
        out[rows, :dst_len, :src_len] = resample_matrix(mode, dst_len, src_len, device, dtype)
    return out


def resample(
    x_BSC: torch.Tensor,
    dst_lengths_B: torch.Tensor,
    src_lengths_B: torch.Tensor | None = None,
    mode: Mode = "area",
    dst_pad: int | None = None,
) -> torch.Tensor:
    """Resample each sequence ``x_BSC[b, :S_b]`` to ``D_b`` steps: ``(B, D_max, C)``, zero-padded.

    ``src_lengths_B`` defaults to the full padded length; ``dst_pad`` (default ``max D_b``) sets
    the padded output length.
    """
    B, S, _ = x_BSC.shape
    if src_lengths_B is None:
        src_lengths_B = torch.full((B,), S, dtype=torch.long)
    dst_pad = int(dst_lengths_B.max()) if dst_pad is None else dst_pad
    matrix_BDS = batch_matrix(mode, dst_lengths_B, src_lengths_B, dst_pad, S, x_BSC.device, x_BSC.dtype)
    return torch.bmm(matrix_BDS, x_BSC) if matrix_BDS.stride(0) else matrix_BDS[0] @ x_BSC


def area_downsample(
    x_BSC: torch.Tensor, dst_lengths_B: torch.Tensor, src_lengths_B: torch.Tensor | None = None
) -> torch.Tensor:
    """Area (average-overlap) resampling to ``dst_lengths_B``; see the module docstring."""
    return resample(x_BSC, dst_lengths_B, src_lengths_B, mode="area")


def linear_upsample(
    x_BSC: torch.Tensor, dst_lengths_B: torch.Tensor, src_lengths_B: torch.Tensor | None = None
) -> torch.Tensor:
    """Half-pixel linear interpolation to ``dst_lengths_B``; see the module docstring."""
    return resample(x_BSC, dst_lengths_B, src_lengths_B, mode="linear")


def lengths_mask(lengths_B: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B, L)`` bool, True at valid steps ``t < lengths_B[b]``."""
    max_len = int(lengths_B.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths_B.device)[None, :] < lengths_B[:, None]
