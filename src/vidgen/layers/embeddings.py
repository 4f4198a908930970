"""Position and timestep embeddings: sinusoidal (1D), timestep MLP, 3D sin-cos grids.

`sinusoidal_embedding` is the one sin/cos embedding; the knobs (`flip_sin_to_cos`, `freq_shift`)
cover the variants in use (DDPM/diffusers timesteps, DiT, MAE/CogVideoX position tables).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidgen.errors import VidgenError


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0,
                         flip_sin_to_cos: bool = True, freq_shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """`(N,)` positions (float allowed) -> `(N, dim)` sinusoidal features.

    Frequencies are `max_period ** (-i / (dim/2 - freq_shift))`; the output is `[cos | sin]` when
    `flip_sin_to_cos` (DiT, CogVideoX timesteps) else `[sin | cos]`. Odd `dim` gets a zero column.
    """
    if positions.dim() != 1:
        raise VidgenError(f"positions must be 1-D (N,), got shape {tuple(positions.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = scale * positions.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)],
                    dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """Diffusion timesteps `(B,)` -> `(B, dim)`: sinusoidal features then a two-layer SiLU MLP."""

    def __init__(self, dim: int, frequency_dim: int = 256, flip_sin_to_cos: bool = True, freq_shift: float = 0.0):
        super().__init__()
        self.frequency_dim, self.flip_sin_to_cos, self.freq_shift = frequency_dim, flip_sin_to_cos, freq_shift
        self.linear_1 = nn.Linear(frequency_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        freqs = sinusoidal_embedding(timesteps.reshape(-1), self.frequency_dim,
                                     flip_sin_to_cos=self.flip_sin_to_cos, freq_shift=self.freq_shift)
        return self.linear_2(self.act(self.linear_1(freqs.to(self.linear_1.weight.dtype))))


def sincos_1d_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """MAE-style position table `(N, dim)`: `[sin | cos]` with frequencies 10000 ** (-2i/dim)."""
    if dim % 2:
        raise VidgenError(f"sin-cos position dimension must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    args = positions.to(torch.float64).reshape(-1)[:, None] * omega[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1).float()


def sincos_2d_table(h_positions: torch.Tensor, w_positions: torch.Tensor, dim: int) -> torch.Tensor:
    """`(H*W, dim)` table for an h-w grid flattened row-major: half the channels encode w, half h.

    The [w | h] order follows MAE/DiT (their meshgrid puts w first), which CogVideoX inherits.
    """
    if dim % 4:
        raise VidgenError(f"2D sin-cos position dimension must be a multiple of 4, got {dim}")
    hh, ww = torch.meshgrid(h_positions, w_positions, indexing="ij")
    return torch.cat([sincos_1d_table(ww, dim // 2), sincos_1d_table(hh, dim // 2)], dim=-1)


def sincos_3d_table(t_positions: torch.Tensor, h_positions: torch.Tensor, w_positions: torch.Tensor,
                    dim: int, temporal_fraction: float = 0.25) -> torch.Tensor:
    """`(T*H*W, dim)` 3D sin-cos positions, flattened t-h-w: `[temporal | spatial]` channels.

    `temporal_fraction` of the channels encode t (CogVideoX-2B: 1/4), the rest (h, w) as in
    `sincos_2d_table`.
    """
    dim_t = round(dim * temporal_fraction)
    dim_s = dim - dim_t
    spatial = sincos_2d_table(h_positions, w_positions, dim_s)  # (H*W, dim_s)
    temporal = sincos_1d_table(t_positions, dim_t)  # (T, dim_t)
    t, s = temporal.shape[0], spatial.shape[0]
    return torch.cat([temporal[:, None, :].expand(t, s, dim_t), spatial[None].expand(t, s, dim_s)],
                     dim=-1).reshape(t * s, dim)
