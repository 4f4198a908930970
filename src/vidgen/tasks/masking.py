"""Mask builders shared by MAGVIT training and decoding: the mask schedule and COMMIT's masked input.

Mask schedule (MaskGIT): `gamma(r)` is the fraction of tokens that are masked at progress r in [0, 1];
training draws r ~ U(0, 1) per example, decoding step k of K uses r = (k + 1) / K. The cosine schedule
`gamma(r) = cos(pi r / 2)` masks many tokens often, which MaskGIT found to work best.

COMMIT's masked input (MAGVIT eq. 3): with target tokens z, condition tokens z~ (the tokenized padded
condition clip), the condition region C on the token grid and the set M of masked positions,

    input_i = z~_i     if i in M and i in C      (a "refine" position: the model corrects z~_i)
              [MASK]   if i in M and i not in C
              z_i      if i not in M

Training and decoding build their inputs with the same `commit_inputs`; decoding re-inserts z~ at
still-masked condition positions every step simply by calling it again.
"""

from __future__ import annotations

import math

import torch

from vidgen.errors import VidgenError

SCHEDULES = ("cosine", "linear", "square", "sqrt")


def mask_schedule(progress: torch.Tensor | float, schedule: str = "cosine") -> torch.Tensor:
    """gamma(progress): the fraction of tokens still masked, for progress in [0, 1] (1 -> 0 masked)."""
    r = torch.as_tensor(progress, dtype=torch.float64).clamp(0.0, 1.0)
    if schedule == "cosine":
        return torch.cos(r * math.pi / 2)
    if schedule == "linear":
        return 1.0 - r
    if schedule == "square":
        return 1.0 - r ** 2
    if schedule == "sqrt":
        return 1.0 - r.sqrt()
    raise VidgenError(f"mask schedule {schedule!r} is not one of {SCHEDULES}")


def num_masked_tokens(progress: torch.Tensor | float, total: torch.Tensor | int,
                      schedule: str = "cosine") -> torch.Tensor:
    """floor(gamma(progress) * total), as a long tensor (MaskGIT / MAGVIT round down)."""
    ratio = mask_schedule(progress, schedule)
    total = torch.as_tensor(total, dtype=torch.float64, device=ratio.device)
    # A tiny epsilon so that e.g. 0.5 * 64 is not floored to 31 by float error.
    return torch.floor(ratio * total + 1e-9).long()


def lowest_k_mask(scores: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """`(B, N)` scores, `(B,)` counts -> `(B, N)` bool, True at each row's k lowest scores.

    Ties are broken by position (stable sort), so the result is deterministic.
    """
    if scores.dim() != 2:
        raise VidgenError(f"scores must be (B, N), got shape {tuple(scores.shape)}")
    b, n = scores.shape
    k = torch.as_tensor(k, device=scores.device).long().reshape(-1)
    if k.numel() == 1:
        k = k.expand(b)
    if k.numel() != b:
        raise VidgenError(f"need one count per row: got {k.numel()} counts for {b} rows")
    order = scores.argsort(dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=scores.device).expand(b, n))
    return ranks < k[:, None]


def random_training_mask(batch_size: int, num_tokens: int, generator: torch.Generator | None = None,
                         schedule: str = "cosine", device: torch.device | str | None = None) -> torch.Tensor:
    """`(B, N)` bool training mask: per example r ~ U(0, 1), then floor(gamma(r) N) (at least 1) positions
    chosen uniformly at random are masked."""
    r = torch.rand(batch_size, generator=generator, device=device)
    count = num_masked_tokens(r, num_tokens, schedule).clamp(1, num_tokens)
    scores = torch.rand(batch_size, num_tokens, generator=generator, device=device)
    return lowest_k_mask(scores, count)


def commit_inputs(tokens: torch.Tensor, masked: torch.Tensor, mask_token_id: int,
                  condition_tokens: torch.Tensor | None = None,
                  condition_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """COMMIT's masked input (module docstring).

    tokens, condition_tokens: (B, ...) long; masked, condition_mask: (B, ...) bool, same shape.
    Returns `(inputs (B, ...) long, refine (B, ...) bool)`, refine = positions that hold a condition
    token (masked and inside the condition region), which the model is told about.
    """
    masked = masked.bool()
    if condition_mask is None or condition_tokens is None:
        refine = torch.zeros_like(masked)
        return torch.where(masked, torch.full_like(tokens, mask_token_id), tokens), refine
    if condition_tokens.shape != tokens.shape or condition_mask.shape != tokens.shape:
        raise VidgenError(f"condition tokens {tuple(condition_tokens.shape)} and mask "
                          f"{tuple(condition_mask.shape)} "
                          f"must have the shape of the tokens {tuple(tokens.shape)}")
    refine = masked & condition_mask.bool()
    replacement = torch.where(refine, condition_tokens, torch.full_like(tokens, mask_token_id))
    return torch.where(masked, replacement, tokens), refine
