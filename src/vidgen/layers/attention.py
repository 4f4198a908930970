"""Multi-head attention on `F.scaled_dot_product_attention`: the one attention of vidgen.

Self-attention or cross-attention (`context`), any boolean mask from `vidgen.layers.masks`
(True = may attend), optional QK-norm (LayerNorm or RMSNorm per head, as CogVideoX and many large
transformers use to keep attention logits bounded), and optional rotary embeddings applied to the
last R tokens of the sequence (for `[text; video]` sequences RoPE rotates only the video tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.errors import VidgenError
from vidgen.layers.rope import apply_rope

QK_NORMS = (None, "layer", "rms")


def _qk_norm(kind: str | None, head_dim: int, eps: float) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "layer":
        return nn.LayerNorm(head_dim, eps=eps)
    if kind == "rms":
        return nn.RMSNorm(head_dim, eps=eps)
    raise VidgenError(f"qk_norm={kind!r} is not one of {QK_NORMS}")


class Attention(nn.Module):
    """`forward(x (B, N, D), context (B, M, Dc) | None, mask, rope) -> (B, N, D)`."""

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None, context_dim: int | None = None,
                 qk_norm: str | None = None, qkv_bias: bool = True, out_bias: bool = True,
                 eps: float = 1e-6, dropout: float = 0.0):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise VidgenError(f"dim={dim} is not divisible by num_heads={num_heads}")
            head_dim = dim // num_heads
        inner = head_dim * num_heads
        context_dim = context_dim or dim
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.norm_q = _qk_norm(qk_norm, head_dim, eps)
        self.norm_k = _qk_norm(qk_norm, head_dim, eps)
        self.to_out = nn.Linear(inner, dim, bias=out_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                is_causal: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """
        x: (B, N, D) queries (and keys/values for self-attention).
        context: (B, M, Dc) keys/values for cross-attention.
        mask: bool, broadcastable to (B, heads, N, M); True = may attend.
        is_causal: causal self-attention without building a mask (faster kernel path).
        rope: (cos, sin), each (R, head_dim), rotating the last R query and key tokens.
        """
        source = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k = rearrange(self.to_k(source), "b m (h d) -> b h m d", h=self.num_heads)
        v = rearrange(self.to_v(source), "b m (h d) -> b h m d", h=self.num_heads)
        q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:
            q, k = _rotate_tail(q, rope), _rotate_tail(k, rope)
        if mask is not None and mask.dtype != torch.bool:
            raise VidgenError(f"attention masks must be boolean (True = attend), got {mask.dtype}")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


def _rotate_tail(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Apply RoPE to the last R tokens of `x (B, heads, N, D)`; the first N - R are left alone."""
    cos, sin = rope
    num_rotated = cos.shape[0]
    if num_rotated > x.shape[-2]:
        raise VidgenError(f"RoPE covers {num_rotated} tokens but the sequence has {x.shape[-2]}")
    if num_rotated == x.shape[-2]:
        return apply_rope(x, cos, sin)
    head, tail = x[..., :-num_rotated, :], x[..., -num_rotated:, :]
    return torch.cat([head, apply_rope(tail, cos, sin)], dim=-2)


class FeedForward(nn.Module):
    """Transformer MLP: Linear -> GELU (tanh approximation) -> Linear. `(B, N, D) -> (B, N, D)`."""

    def __init__(self, dim: int, hidden_dim: int | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        hidden_dim = hidden_dim or 4 * dim
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(x), approximate="tanh")))
