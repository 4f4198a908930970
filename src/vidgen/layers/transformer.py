"""The shared pre-norm transformer block and stack.

One block serves every token transformer in vidgen; what changes between models is the mask, the
positions and the conditioning, never the block:

- MAGVIT's bidirectional masked-token transformer: `mask=None` (or a padding mask for text keys)
- VideoPoet's prefix LM: `mask=prefix_lm_mask(...)` (bidirectional prefix, causal after it)
- VideoPoet's super-resolution transformer: `mask=local_window_mask(grid, axis, window)`
- text conditioning by cross-attention (`cross_attention=True`, `context`, `context_mask`)
- DiT-style adaLN-Zero conditioning on a vector (`adaln=True`, `cond`)

    block = TransformerBlock(dim, heads, mlp_ratio, qk_norm)
    x = x + attn(norm1(x), mask, rope)           # (B, N, D)
    x = x + cross_attn(norm_c(x), context)       # only with cross_attention=True
    x = x + mlp(norm2(x))

With `adaln=True` the two self-attention / MLP norms are replaced by adaLN-Zero: a conditioning
vector predicts (shift, scale, gate) for each of them and the gates start at zero, so every block is
the identity at initialisation (DiT). The cross-attention sub-layer keeps a plain LayerNorm, as in
PixArt-alpha, because its input already carries the condition.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from vidgen.errors import VidgenError
from vidgen.layers.adaln import AdaLayerNorm, AdaLNModulation, modulate
from vidgen.layers.attention import Attention, FeedForward
from vidgen.layers.masks import padding_mask


@dataclasses.dataclass
class TransformerConfig:
    """A stack of `depth` identical pre-norm blocks of width `dim`.

    context_dim: width of the cross-attention keys/values (defaults to `dim`); only with
        `cross_attention=True`.
    cond_dim: width of the adaLN conditioning vector (defaults to `dim`); only with `adaln=True`.
    final_norm: end with a LayerNorm (adaptive when `adaln`), as pre-norm stacks need before a head.
    """

    dim: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    qk_norm: str | None = None
    cross_attention: bool = False
    context_dim: int | None = None
    adaln: bool = False
    cond_dim: int | None = None
    dropout: float = 0.0
    norm_eps: float = 1e-6
    final_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads"):
            if int(getattr(self, name)) < 1:
                raise VidgenError(f"TransformerConfig.{name}={getattr(self, name)} must be a positive integer")
        if self.dim % self.heads:
            raise VidgenError(f"TransformerConfig.dim={self.dim} is not divisible by heads={self.heads}")
        if self.mlp_ratio <= 0:
            raise VidgenError(f"TransformerConfig.mlp_ratio={self.mlp_ratio} must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise VidgenError(f"TransformerConfig.dropout={self.dropout} must be in [0, 1)")


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, MLP; optionally adaLN-Zero conditioned.

    `forward(x (B, N, D), mask, rope, context (B, M, Dc), context_mask (B, M), cond (B, Dcond))
    -> (B, N, D)`.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: str | None = None,
                 cross_attention: bool = False, adaln: bool = False, context_dim: int | None = None,
                 cond_dim: int | None = None, dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.adaln = adaln
        # adaLN supplies the affine part, so its norms have none of their own (DiT).
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=not adaln)
        self.attn = Attention(dim, heads, qk_norm=qk_norm, eps=eps, dropout=dropout)
        self.cross_attn = None
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim, eps=eps)
            self.cross_attn = Attention(dim, heads, context_dim=context_dim or dim, qk_norm=qk_norm, eps=eps,
                                        dropout=dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=not adaln)
        self.mlp = FeedForward(dim, round(dim * mlp_ratio), dropout=dropout)
        self.drop = nn.Dropout(dropout)
        if adaln:
            self.modulation = AdaLNModulation(cond_dim or dim, dim, 6, zero_init=True)

    @torch.no_grad()
    def zero_residual_(self) -> TransformerBlock:
        """Make the block the identity: zero every projection that writes into the residual stream
        (attention, cross-attention and MLP outputs; adaLN blocks already start with zero gates).
        A block added to a trained network this way leaves its function unchanged (growth)."""
        for linear in (self.attn.to_out, self.mlp.fc2, *((self.cross_attn.to_out,) if self.cross_attn else ())):
            linear.weight.zero_()
            if linear.bias is not None:
                linear.bias.zero_()
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        if self.adaln:
            if cond is None:
                raise VidgenError("this TransformerBlock was built with adaln=True and needs `cond` (B, cond_dim)")
            shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)  # each (B, D)
            h = modulate(self.norm1(x), shift1, scale1)
            x = x + gate1[:, None, :] * self.drop(self.attn(h, mask=mask, rope=rope, is_causal=is_causal))
        else:
            x = x + self.drop(self.attn(self.norm1(x), mask=mask, rope=rope, is_causal=is_causal))
        if self.cross_attn is not None:
            if context is None:
                raise VidgenError("this TransformerBlock was built with cross_attention=True and needs `context`")
            keys = padding_mask(context_mask) if context_mask is not None else None
            x = x + self.drop(self.cross_attn(self.norm_cross(x), context=context, mask=keys))
        if self.adaln:
            x = x + gate2[:, None, :] * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))
        else:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x


class Transformer(nn.Module):
    """`config.depth` TransformerBlocks and a final norm. `(B, N, D) -> (B, N, D)`.

    mask: any boolean mask from `vidgen.layers.masks` (True = may attend), `(N, N)` or `(B, 1, N, N)`;
        None = full bidirectional attention. `is_causal=True` without a mask uses SDPA's causal path.
    rope: `(cos, sin)` each `(R, head_dim)`, rotating the last R tokens (see `Attention`).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        c = config
        self.blocks = nn.ModuleList([
            TransformerBlock(c.dim, c.heads, c.mlp_ratio, c.qk_norm, cross_attention=c.cross_attention,
                             adaln=c.adaln, context_dim=c.context_dim, cond_dim=c.cond_dim, dropout=c.dropout,
                             eps=c.norm_eps)
            for _ in range(c.depth)])
        self.norm = None
        if c.final_norm:
            self.norm = (AdaLayerNorm(c.dim, c.cond_dim or c.dim, eps=c.norm_eps) if c.adaln
                         else nn.LayerNorm(c.dim, eps=c.norm_eps))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases for attention and MLP projections (DiT, ViT); the
        adaLN modulations keep their zero initialisation so each block starts as the identity."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and "modulation" not in name:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.config.dim:
            raise VidgenError(f"Transformer input must be (B, N, {self.config.dim}), got {tuple(x.shape)}")
        if mask is not None:
            n = x.shape[1]
            if mask.dtype != torch.bool:
                raise VidgenError(f"attention masks must be boolean (True = attend), got {mask.dtype}")
            if mask.shape[-1] != n or (mask.shape[-2] not in (1, n)):
                raise VidgenError(f"attention mask of shape {tuple(mask.shape)} does not fit a sequence of {n} "
                                  f"tokens; expected (N, N), (B, 1, N, N) or (B, 1, 1, N) with N={n}")
        for block in self.blocks:
            x = block(x, mask=mask, rope=rope, context=context, context_mask=context_mask, cond=cond,
                      is_causal=is_causal)
        if self.norm is not None:
            x = self.norm(x, cond) if self.config.adaln else self.norm(x)
        return x
