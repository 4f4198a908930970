"""Pseudo-3D (factorised space-time) convolution and attention, as in Make-A-Video.

A 2D spatial layer runs on every frame, then a 1D temporal layer runs on every pixel's time line.
The temporal part starts as the identity (Dirac conv kernel; zero output projection on a residual
attention), so a pretrained text-to-image model turned into a video model starts out generating
exactly what it generated per frame, and learns motion from there.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vidgen.layers.attention import Attention


class Pseudo3DConv(nn.Module):
    """Conv2d over (H, W) per frame, then Conv1d over T per pixel. `(B, C, T, H, W) -> (B, C', T, H', W')`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3,
                 stride: int = 1):
        super().__init__()
        self.spatial = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.temporal = nn.Conv1d(out_channels, out_channels, temporal_kernel_size,
                                  padding=temporal_kernel_size // 2)
        # Identity at initialisation: the temporal conv passes each frame through unchanged.
        nn.init.dirac_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)

    def forward(self, x: torch.Tensor, temporal: bool = True) -> torch.Tensor:
        """`temporal=False` skips the temporal conv (image batches: T frames are independent images)."""
        b = x.shape[0]
        x = self.spatial(rearrange(x, "b c t h w -> (b t) c h w"))
        x = rearrange(x, "(b t) c h w -> b c t h w", b=b)
        if not temporal:
            return x
        h, w = x.shape[-2:]
        x = self.temporal(rearrange(x, "b c t h w -> (b h w) c t"))
        return rearrange(x, "(b h w) c t -> b c t h w", h=h, w=w)


class Pseudo3DAttention(nn.Module):
    """Spatial self-attention within each frame, then temporal self-attention along each pixel's
    time line, both residual. `(B, C, T, H, W) -> (B, C, T, H, W)`.

    The temporal attention's output projection starts at zero, so the temporal branch adds nothing
    at initialisation. `rope_t` optionally gives temporal rotary embeddings `(cos, sin)` `(T, head_dim)`.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: str | None = None):
        super().__init__()
        self.norm_spatial = nn.LayerNorm(dim)
        self.spatial = Attention(dim, num_heads, qk_norm=qk_norm)
        self.norm_temporal = nn.LayerNorm(dim)
        self.temporal = Attention(dim, num_heads, qk_norm=qk_norm)
        nn.init.zeros_(self.temporal.to_out.weight)
        nn.init.zeros_(self.temporal.to_out.bias)

    def forward(self, x: torch.Tensor, temporal: bool = True,
                rope_t: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, h = x.shape[0], x.shape[3]
        tokens = rearrange(x, "b c t h w -> (b t) (h w) c")
        tokens = tokens + self.spatial(self.norm_spatial(tokens))
        if temporal:
            tokens = rearrange(tokens, "(b t) (h w) c -> (b h w) t c", b=b, h=h)
            tokens = tokens + self.temporal(self.norm_temporal(tokens), rope=rope_t)
            return rearrange(tokens, "(b h w) t c -> b c t h w", b=b, h=h)
        return rearrange(tokens, "(b t) (h w) c -> b c t h w", b=b, h=h)
