"""Attention masks, one implementation for every model family.

Every mask here is boolean with True meaning "may attend", the convention of
`F.scaled_dot_product_attention`. Masks over queries and keys are `(N, M)` or batched `(B, 1, N, M)`;
`combine_masks` ANDs any number of them with broadcasting.

- full: no mask (None)
- causal: token i sees tokens j <= i (autoregressive decoding, causal tokenizers)
- prefix-LM: the prefix is seen bidirectionally by every token, the rest causally (VideoPoet)
- padding: keys that are padding are never seen (text of different lengths)
- windowed local: along one axis (t, h or w) of a token grid, a token sees only the tokens on the
  same line whose coordinate lies in the same window (VideoPoet's super-resolution transformer)
"""

from __future__ import annotations

import torch

from vidgen.errors import VidgenError

AXES = ("t", "h", "w")


def causal_mask(num_tokens: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, N) lower-triangular mask: query i attends to keys 0..i."""
    return torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=device).tril()


def prefix_lm_mask(num_tokens: int, prefix_length: int | torch.Tensor,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Prefix-LM mask: bidirectional over the first `prefix_length` tokens, causal after.

    `prefix_length` is an int -> `(N, N)`, or a `(B,)` tensor of per-example prefix lengths ->
    `(B, 1, N, N)`.
    """
    causal = causal_mask(num_tokens, device)
    keys = torch.arange(num_tokens, device=device)
    if isinstance(prefix_length, int):
        if not 0 <= prefix_length <= num_tokens:
            raise VidgenError(f"prefix_length={prefix_length} must lie in [0, {num_tokens}]")
        return causal | (keys < prefix_length)[None, :]
    prefix_length = prefix_length.to(device)
    in_prefix = keys[None, :] < prefix_length[:, None]  # (B, M): key j lies in example b's prefix
    return (causal[None] | in_prefix[:, None, :])[:, None]  # (B, 1, N, M)


def padding_mask(key_mask: torch.Tensor) -> torch.Tensor:
    """(B, M) bool key mask (True = real token) -> (B, 1, 1, M), broadcastable over heads and queries."""
    if key_mask.dim() != 2:
        raise VidgenError(f"key padding mask must be (B, M), got shape {tuple(key_mask.shape)}")
    return key_mask.bool()[:, None, None, :]


def grid_coordinates(grid: tuple[int, int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """(T*H*W, 3) integer (t, h, w) coordinates of a token grid flattened in t-h-w order."""
    t, h, w = grid
    coords = torch.meshgrid(torch.arange(t, device=device), torch.arange(h, device=device),
                            torch.arange(w, device=device), indexing="ij")
    return torch.stack(coords, dim=-1).reshape(-1, 3)


def local_window_mask(grid: tuple[int, int, int], axis: str, window: int,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """(N, N) windowed local attention along one axis of a `(T, H, W)` token grid (t-h-w order).

    Token i sees token j when they agree on the two other coordinates and fall in the same
    non-overlapping window of `window` positions along `axis`.
    """
    if axis not in AXES:
        raise VidgenError(f"axis={axis!r} is not one of {AXES}")
    if window < 1:
        raise VidgenError(f"window={window} must be >= 1")
    coords = grid_coordinates(grid, device)
    along = AXES.index(axis)
    others = [a for a in range(3) if a != along]
    same_line = (coords[:, None, others] == coords[None, :, others]).all(-1)
    same_window = (coords[:, None, along] // window) == (coords[None, :, along] // window)
    return same_line & same_window


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """AND together masks of broadcastable shapes; None entries mean "no restriction"."""
    result = None
    for mask in masks:
        if mask is None:
            continue
        result = mask if result is None else (result & mask)
    return result
