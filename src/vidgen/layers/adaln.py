"""Adaptive LayerNorm: conditioning by predicted shift, scale and gate (DiT, CogVideoX).

    shift, scale, gate = AdaLNModulation(c)            # each (B, D)
    x = x + gate * block(modulate(norm(x), shift, scale))

adaLN-Zero initialises the modulation projection at zero, so gates start at 0 and every block
starts as the identity. The expert variant (CogVideoX) predicts a separate (shift, scale, gate)
for each token group (text tokens, video tokens) from the same conditioning vector, letting one
shared transformer treat two modalities differently.
"""

from __future__ import annotations

import torch
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`x (B, N, D) * (1 + scale (B, D)) + shift (B, D)`."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class AdaLNModulation(nn.Module):
    """Conditioning `(B, Dc)` -> `num_chunks` tensors of `(B, D)` via SiLU + Linear.

    `zero_init=True` is adaLN-Zero: the block is the identity at initialisation.
    """

    def __init__(self, cond_dim: int, dim: int, num_chunks: int, zero_init: bool = True, bias: bool = True):
        super().__init__()
        self.num_chunks = num_chunks
        self.act = nn.SiLU()
        self.linear = nn.Linear(cond_dim, num_chunks * dim, bias=bias)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            if bias:
                nn.init.zeros_(self.linear.bias)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(self.act(cond)).chunk(self.num_chunks, dim=-1)


class AdaLayerNorm(nn.Module):
    """LayerNorm whose shift and scale come from a conditioning vector (DiT's final layer).

    `forward(x (B, N, D), cond (B, Dc)) -> (B, N, D)`.
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6, elementwise_affine: bool = False,
                 zero_init: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)
        self.modulation = AdaLNModulation(cond_dim, dim, 2, zero_init=zero_init)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond)
        return modulate(self.norm(x), shift, scale)


class AdaLNZero(nn.Module):
    """adaLN-Zero for one token group: returns the modulated norm and the residual gate.

    `forward(x (B, N, D), cond (B, Dc)) -> (normed (B, N, D), gate (B, 1, D))`.
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6, elementwise_affine: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)
        self.modulation = AdaLNModulation(cond_dim, dim, 3, zero_init=True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale, gate = self.modulation(cond)
        return modulate(self.norm(x), shift, scale), gate[:, None, :]


class ExpertAdaLN(nn.Module):
    """Expert adaptive LayerNorm (CogVideoX): one shared LayerNorm, separate modulation per group.

    `forward(groups: (x_0 (B, N_0, D), x_1 (B, N_1, D), ...), cond (B, Dc))` returns
    `(normed groups, gates)` where `gates[i]` is `(B, 1, D)`. Group 0 is text, group 1 video in
    CogVideoX. One Linear predicts all groups' (shift, scale, gate), in group order.
    """

    def __init__(self, dim: int, cond_dim: int, num_groups: int = 2, eps: float = 1e-5,
                 elementwise_affine: bool = True, zero_init: bool = True):
        super().__init__()
        self.num_groups = num_groups
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)
        self.modulation = AdaLNModulation(cond_dim, dim, 3 * num_groups, zero_init=zero_init)

    def forward(self, groups: tuple[torch.Tensor, ...], cond: torch.Tensor
                ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        if len(groups) != self.num_groups:
            raise ValueError(f"ExpertAdaLN built for {self.num_groups} token groups, got {len(groups)}")
        chunks = self.modulation(cond)
        normed, gates = [], []
        for i, x in enumerate(groups):
            shift, scale, gate = chunks[3 * i: 3 * i + 3]
            normed.append(modulate(self.norm(x), shift, scale))
            gates.append(gate[:, None, :])
        return tuple(normed), tuple(gates)
