"""Masked 1-D convolutional encoder and decoder of the motion tokenizer (time down/up by ``2**down_t``).

Every layer works on ``(B, C, T)`` with a per-sample valid length; after each layer the padded
steps are set to zero, so a sample's output is the same alone or in a padded batch. The encoder
maps ``T`` frames (padded to a multiple of ``2**down_t``) to ``ceil(T / 2**down_t)`` latents; the
decoder maps ``N`` latents back to ``N * 2**down_t`` frames.
"""

from __future__ import annotations

import torch
from torch import nn


def time_mask(lengths_B: torch.Tensor, max_len: int, like: torch.Tensor) -> torch.Tensor:
    """``(B, 1, max_len)`` float mask of valid steps, dtype/device of ``like``."""
    steps = torch.arange(max_len, device=lengths_B.device)
    return (steps[None, :] < lengths_B[:, None]).to(device=like.device, dtype=like.dtype)[:, None, :]


class ResidualBlock(nn.Module):
    """``x + W_1 act(W_dilated act(x))``, masked: a dilated temporal residual unit."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=dilation, dilation=dilation)
        self.proj = nn.Conv1d(width, width, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x_BWT: torch.Tensor, mask_B1T: torch.Tensor) -> torch.Tensor:
        h_BWT = self.proj(self.act(self.conv(self.act(x_BWT))))
        return (x_BWT + h_BWT) * mask_B1T


class ResidualStack(nn.Module):
    """``depth`` residual blocks with dilations ``growth**i`` (reversed in the decoder)."""

    def __init__(self, width: int, depth: int, growth: int, reverse: bool = False) -> None:
        super().__init__()
        dilations = [growth**i for i in range(depth)]
        if reverse:
            dilations = dilations[::-1]
        self.blocks = nn.ModuleList(ResidualBlock(width, d) for d in dilations)

    def forward(self, x_BWT: torch.Tensor, mask_B1T: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x_BWT = block(x_BWT, mask_B1T)
        return x_BWT


class MotionEncoder(nn.Module):
    """``(B, T, D)`` features -> ``(B, ceil(T/r), C)`` latents, ``r = 2**down_t``.

    With ``normalize`` each latent vector is standardised over its ``C`` channels
    (``(f - mean) / std``, no learned scale), which keeps the latent scale fixed during training:
    without it the encoder output can grow until the EMA codebook no longer keeps up.
    """

    def __init__(
        self, feature_dim: int, width: int, code_dim: int, depth: int, growth: int, down_t: int, normalize: bool = True
    ) -> None:
        super().__init__()
        self.out_norm = nn.LayerNorm(code_dim, elementwise_affine=False) if normalize else nn.Identity()
        self.factor = 2**down_t
        self.stem = nn.Conv1d(feature_dim, width, kernel_size=3, padding=1)
        self.downs = nn.ModuleList(nn.Conv1d(width, width, kernel_size=4, stride=2, padding=1) for _ in range(down_t))
        self.stacks = nn.ModuleList(ResidualStack(width, depth, growth) for _ in range(down_t))
        self.head = nn.Conv1d(width, code_dim, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, feats_BTD: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
        B, T, _ = feats_BTD.shape
        padded = -(-T // self.factor) * self.factor
        x_BDT = nn.functional.pad(feats_BTD.transpose(1, 2), (0, padded - T))
        valid_B = lengths_B
        mask_B1T = time_mask(valid_B, padded, x_BDT)
        x_BWT = self.act(self.stem(x_BDT * mask_B1T)) * mask_B1T
        for down, stack in zip(self.downs, self.stacks):
            valid_B = (valid_B + 1) // 2
            x_BWT = down(x_BWT)
            mask_B1T = time_mask(valid_B, x_BWT.shape[-1], x_BWT)
            x_BWT = stack(x_BWT * mask_B1T, mask_B1T)
        f_BNC = self.out_norm(self.head(x_BWT).transpose(1, 2))
        return f_BNC * mask_B1T.transpose(1, 2)


class MotionDecoder(nn.Module):
    """``(B, N, C)`` latents -> ``(B, N*r, D)`` features, ``r = 2**down_t``."""

    def __init__(self, feature_dim: int, width: int, code_dim: int, depth: int, growth: int, down_t: int) -> None:
        super().__init__()
        self.factor = 2**down_t
        self.stem = nn.Conv1d(code_dim, width, kernel_size=3, padding=1)
        self.stacks = nn.ModuleList(ResidualStack(width, depth, growth, reverse=True) for _ in range(down_t))
        self.ups = nn.ModuleList(nn.Conv1d(width, width, kernel_size=3, padding=1) for _ in range(down_t))
        self.post = nn.Conv1d(width, width, kernel_size=3, padding=1)
        self.head = nn.Conv1d(width, feature_dim, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, latents_BNC: torch.Tensor, latent_lengths_B: torch.Tensor) -> torch.Tensor:
        x_BCN = latents_BNC.transpose(1, 2)
        valid_B = latent_lengths_B
        mask_B1T = time_mask(valid_B, x_BCN.shape[-1], x_BCN)
        x_BWT = self.act(self.stem(x_BCN * mask_B1T)) * mask_B1T
        for stack, up in zip(self.stacks, self.ups):
            x_BWT = stack(x_BWT, mask_B1T)
            x_BWT = nn.functional.interpolate(x_BWT, scale_factor=2, mode="nearest")
            valid_B = valid_B * 2
            mask_B1T = time_mask(valid_B, x_BWT.shape[-1], x_BWT)
            x_BWT = up(x_BWT) * mask_B1T
        x_BWT = self.act(self.post(x_BWT)) * mask_B1T
        return (self.head(x_BWT) * mask_B1T).transpose(1, 2)
