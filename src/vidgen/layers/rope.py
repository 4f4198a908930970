"""Rotary position embeddings (RoPE), 1D and 3D.

Convention: rotation acts on interleaved pairs of channels (x[2i], x[2i+1]) with angle
`position * theta ** (-2i / dim)`; `cos` and `sin` are stored with each frequency repeated twice so
they multiply the head dimension directly. This is the layout CogVideoX (and diffusers' port of it)
uses, so its weights work unchanged.

3D RoPE (CogVideoX-5B) splits the head dimension across time, height and width (default 1/4, 3/8,
3/8) and concatenates the three 1D embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from vidgen.errors import VidgenError


def rope_angles(positions: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Positions `(N,)` (float allowed) -> angles `(N, dim // 2)` for a rotary dimension `dim`."""
    if dim % 2:
        raise VidgenError(f"rotary dimension must be even, got {dim}")
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def angles_to_cos_sin(angles: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles `(N, D/2)` -> `(cos, sin)`, each `(N, D)` with every frequency repeated for its pair."""
    angles = angles.repeat_interleave(2, dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x (..., N, D)` by `cos, sin (N, D)` acting on interleaved channel pairs."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (x0, x1) -> (-x1, x0)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class RotaryEmbedding1D(nn.Module):
    """1D RoPE for sequences: `forward(positions (N,)) -> (cos, sin)`, each `(N, dim)`."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise VidgenError(f"rotary dimension must be even, got {dim}")
        self.dim, self.theta = dim, theta

    def forward(self, positions: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(positions, int):
            positions = torch.arange(positions)
        return angles_to_cos_sin(rope_angles(positions, self.dim, self.theta))


def split_head_dim_3d(head_dim: int, fractions: tuple[float, float, float] = (0.25, 0.375, 0.375)
                      ) -> tuple[int, int, int]:
    """Split a head dimension across (t, h, w) in even sizes that add up to `head_dim`.

    The default is CogVideoX's: t gets head_dim/4, h and w get 3/8 each.
    """
    if head_dim % 2:
        raise VidgenError(f"head_dim must be even for 3D RoPE, got {head_dim}")
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise VidgenError(f"3D RoPE fractions {fractions} must be positive and sum to 1")
    dim_t = 2 * round(head_dim * fractions[0] / 2)
    dim_h = 2 * round(head_dim * fractions[1] / 2)
    dim_w = head_dim - dim_t - dim_h
    if min(dim_t, dim_h, dim_w) <= 0:
        raise VidgenError(f"head_dim={head_dim} is too small to split as {fractions}")
    return dim_t, dim_h, dim_w


class RotaryEmbedding3D(nn.Module):
    """3D RoPE over a (t, h, w) grid of tokens.

    `forward(positions (N, 3))` -> `(cos, sin)`, each `(N, head_dim)`, laid out [t | h | w].
    `grid(T, H, W)` builds integer positions in t-h-w flattening order.
    """

    def __init__(self, head_dim: int, axes_dims: tuple[int, int, int] | None = None, theta: float = 10000.0):
        super().__init__()
        self.axes_dims = tuple(axes_dims) if axes_dims is not None else split_head_dim_3d(head_dim)
        if sum(self.axes_dims) != head_dim or any(d % 2 for d in self.axes_dims):
            raise VidgenError(f"3D RoPE axes_dims={self.axes_dims} must be even and sum to head_dim={head_dim}")
        self.head_dim, self.theta = head_dim, theta

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() != 2 or positions.shape[-1] != 3:
            raise VidgenError(f"3D RoPE positions must be (N, 3), got {tuple(positions.shape)}")
        # Each axis gets its own contiguous block of channels: [t | h | w].
        cos_sin = [angles_to_cos_sin(rope_angles(positions[:, axis], dim, self.theta))
                   for axis, dim in enumerate(self.axes_dims)]
        return torch.cat([c for c, _ in cos_sin], -1), torch.cat([s for _, s in cos_sin], -1)

    @staticmethod
    def grid(t: int, h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
        """(T*H*W, 3) float positions of a token grid flattened in t-h-w order."""
        coords = torch.meshgrid(torch.arange(t, device=device), torch.arange(h, device=device),
                                torch.arange(w, device=device), indexing="ij")
        return torch.stack(coords, dim=-1).reshape(-1, 3).float()
