"""Condition regions: which pixels of a clip a task gives, how they are padded, which tokens they reach.

A region is a small callable object `region((T, H, W), generator) -> (T, H, W) bool`, True = condition
pixel (given). It works on any grid, pixel or token, so the same region describes "the first frame"
of a 16x64x64 clip and of a 4x8x8 token grid. Fractions follow MAGVIT's released code: the central
box and the strips span [L/4, 3L/4) of an axis, moving regions are half an axis wide and slide from
one end of their range to the other over the clip.

Regions compose: inpainting is the complement of an outpainting region, so `Complement(CentralBox())`
is "everything but the centre".

Pixels -> tokens (MAGVIT, COMMIT): a token is a condition token when its supervoxel (the pixels it
compresses) contains at least one condition pixel, i.e. the token is not made of padding only
(the paper's `not ispad(z~_i)`). `pixel_to_token_mask` implements that for regular tokenizers
(T = t * s_t) and for causal ones whose first frame is a token frame of its own (T = 1 + (t - 1) * s_t,
MAGVIT-v2 / VideoPoet).

Padding (MAGVIT's released defaults, selected per task by `Task.padding`):
    "replicate"    each missing pixel copies the nearest condition pixel along t, then h, then w
                   (frame prediction: the last condition frame is repeated; outpainting: edge padding)
    "interpolate"  along t, missing frames between two condition frames are linear interpolations of
                   them (frame interpolation); the rest as "replicate"
    "constant"     missing pixels are 0 (mid-grey in [-1, 1]) (inpainting, dynamic outpainting)
"""

from __future__ import annotations

import dataclasses

import torch

from vidgen.errors import VidgenError

Grid = tuple[int, int, int]
PADDINGS = ("replicate", "interpolate", "constant")
AXES = ("t", "h", "w")


def _check_grid(grid: Grid) -> Grid:
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise VidgenError(f"grid must be three positive sizes (T, H, W), got {grid}")
    return grid  # type: ignore[return-value]


def _band(length: int) -> tuple[int, int]:
    """The central band [L/4, 3L/4) of an axis (MAGVIT's central box and strips)."""
    start, end = length // 4, (3 * length) // 4
    if end <= start:  # tiny grids: keep at least one position
        start, end = length // 2, length // 2 + 1
    return start, end


def _slide_starts(num_frames: int, length: int, window: int, reverse: bool) -> torch.Tensor:
    """Start of a `window`-wide region at each of `num_frames` frames, sliding over [0, length - window]."""
    starts = torch.linspace(0, length - window, num_frames).round().long()
    return starts.flip(0) if reverse else starts


# ----------------------------------------------------------------------------- regions


@dataclasses.dataclass(frozen=True)
class FirstFrames:
    """The first `num_frames` frames (frame prediction)."""

    num_frames: int = 1

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        t, h, w = _check_grid(grid)
        if not 0 < self.num_frames < t:
            raise VidgenError(f"FirstFrames(num_frames={self.num_frames}) needs 0 < num_frames < T={t}")
        mask = torch.zeros(t, h, w, dtype=torch.bool)
        mask[: self.num_frames] = True
        return mask


@dataclasses.dataclass(frozen=True)
class FirstAndLastFrames:
    """The first and the last `num_frames` frames (frame interpolation)."""

    num_frames: int = 1

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        t, h, w = _check_grid(grid)
        if not 0 < 2 * self.num_frames < t:
            raise VidgenError(f"FirstAndLastFrames(num_frames={self.num_frames}) needs 0 < 2 * num_frames < T={t}")
        mask = torch.zeros(t, h, w, dtype=torch.bool)
        mask[: self.num_frames] = True
        mask[t - self.num_frames:] = True
        return mask


@dataclasses.dataclass(frozen=True)
class CentralBox:
    """The central box [H/4, 3H/4) x [W/4, 3W/4) of every frame (central outpainting)."""

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        t, h, w = _check_grid(grid)
        (h0, h1), (w0, w1) = _band(h), _band(w)
        mask = torch.zeros(t, h, w, dtype=torch.bool)
        mask[:, h0:h1, w0:w1] = True
        return mask


@dataclasses.dataclass(frozen=True)
class CentralStrip:
    """A full-length strip through the centre of every frame.

    axis="w": the columns [W/4, 3W/4) (a vertical strip: vertical outpainting generates left and right);
    axis="h": the rows [H/4, 3H/4) (a horizontal strip: horizontal outpainting generates top and bottom).
    """

    axis: str = "w"

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        t, h, w = _check_grid(grid)
        mask = torch.zeros(t, h, w, dtype=torch.bool)
        if self.axis == "w":
            w0, w1 = _band(w)
            mask[:, :, w0:w1] = True
        elif self.axis == "h":
            h0, h1 = _band(h)
            mask[:, h0:h1, :] = True
        else:
            raise VidgenError(f"CentralStrip axis={self.axis!r} must be 'h' or 'w'")
        return mask


def _random_motion(generator: torch.Generator | None, axes: tuple[str, ...]) -> tuple[str, bool]:
    """(axis along which the region moves, reversed?) drawn from `generator`; without a generator the
    canonical motion of MAGVIT's code: along w, left to right."""
    if generator is None:
        return "w", False
    draw = torch.randint(0, 2 * len(axes), (1,), generator=generator, device=generator.device).item()
    return axes[draw // 2], bool(draw % 2)


@dataclasses.dataclass(frozen=True)
class MovingStrip:
    """A strip half an axis wide that slides across the frame over the clip (dynamic outpainting).

    With a generator the strip is vertical (sliding along w) or horizontal (sliding along h) and moves
    forwards or backwards, drawn from the generator; without one it is a vertical strip moving left to
    right, as in MAGVIT's code. `axes` limits the directions it may move along.
    """

    axes: tuple[str, ...] = ("w", "h")

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        t, h, w = _check_grid(grid)
        axis, reverse = _random_motion(generator, self.axes)
        length = w if axis == "w" else h
        width = max(1, length // 2)
        starts = _slide_starts(t, length, width, reverse)  # (T,)
        positions = torch.arange(length)
        inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < starts[:, None] + width)  # (T, L)
        if axis == "w":
            return inside[:, None, :].expand(t, h, w).clone()
        return inside[:, :, None].expand(t, h, w).clone()


@dataclasses.dataclass(frozen=True)
class MovingBox:
    """A box of half the height and half the width, centred on one axis and sliding along the other over
    the clip (the missing region of dynamic inpainting). Motion drawn from the generator as in
    `MovingStrip`; without one it moves left to right through the middle rows (MAGVIT's code)."""

    axes: tuple[str, ...] = ("w", "h")

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        t, h, w = _check_grid(grid)
        axis, reverse = _random_motion(generator, self.axes)
        moving_length, fixed_length = (w, h) if axis == "w" else (h, w)
        width = max(1, moving_length // 2)
        starts = _slide_starts(t, moving_length, width, reverse)
        positions = torch.arange(moving_length)
        inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < starts[:, None] + width)  # (T, L)
        f0, f1 = _band(fixed_length)
        band = torch.zeros(fixed_length, dtype=torch.bool)
        band[f0:f1] = True
        if axis == "w":
            return inside[:, None, :] & band[None, :, None]
        return inside[:, :, None] & band[None, None, :]


@dataclasses.dataclass(frozen=True)
class Complement:
    """Every pixel outside `region` (inpainting = the complement of an outpainting region)."""

    region: object

    def __call__(self, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
        return ~self.region(grid, generator)


# ----------------------------------------------------------------------------- pixels -> tokens


def supervoxel_size(pixel_grid: Grid, token_grid: Grid) -> tuple[int, int, int, bool]:
    """(s_t, s_h, s_w, causal): pixels per token along each axis, and whether the first frame forms a
    token frame of its own (causal tokenizers: T = 1 + (t - 1) * s_t)."""
    (T, H, W), (t, h, w) = _check_grid(pixel_grid), _check_grid(token_grid)
    if H % h or W % w:
        raise VidgenError(f"pixel grid {(T, H, W)} does not divide into token grid {(t, h, w)} spatially")
    if T % t == 0:
        return T // t, H // h, W // w, False
    if t > 1 and (T - 1) % (t - 1) == 0:
        return (T - 1) // (t - 1), H // h, W // w, True
    raise VidgenError(f"pixel grid {(T, H, W)} does not map onto token grid {(t, h, w)}: T must be t * s or "
                      f"1 + (t - 1) * s (causal tokenizers)")


def pixel_to_token_mask(pixel_mask: torch.Tensor, token_grid: Grid) -> torch.Tensor:
    """`(..., T, H, W)` bool condition pixels -> `(..., t, h, w)` bool condition tokens.

    A token is a condition token when its supervoxel holds at least one condition pixel (MAGVIT:
    tokens made only of padding are not condition tokens).
    """
    if pixel_mask.dim() < 3:
        raise VidgenError(f"pixel mask must be (..., T, H, W), got shape {tuple(pixel_mask.shape)}")
    T, H, W = pixel_mask.shape[-3:]
    t, h, w = _check_grid(token_grid)
    st, sh, sw, causal = supervoxel_size((T, H, W), (t, h, w))
    lead = pixel_mask.shape[:-3]
    mask = pixel_mask.bool()
    if causal:
        first, rest = mask[..., :1, :, :], mask[..., 1:, :, :]
        first = first.reshape(*lead, 1, 1, h, sh, w, sw)
        rest = rest.reshape(*lead, t - 1, st, h, sh, w, sw)
        return torch.cat([first.any(-1).any(-2).any(-3), rest.any(-1).any(-2).any(-3)], dim=-3)
    grouped = mask.reshape(*lead, t, st, h, sh, w, sw)
    return grouped.any(-1).any(-2).any(-3)


# ----------------------------------------------------------------------------- padding


def _fill_along(x: torch.Tensor, known: torch.Tensor, dim: int, linear: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill unknown entries of `x (B, C, T, H, W)` along `dim` from the known entries of the same line.

    known: (B, 1, T, H, W). Each unknown entry takes the nearest known one on its line (ties: the
    earlier); with `linear`, entries between two known ones interpolate them linearly. Lines with no
    known entry are left as they are. Returns the filled tensor and the updated known mask.
    """
    length = x.shape[dim]
    shape = [1] * x.dim()
    shape[dim] = length
    index = torch.arange(length, device=x.device).view(shape).expand_as(known)
    prev = torch.where(known, index, torch.full_like(index, -1)).cummax(dim).values  # last known <= i
    nxt = torch.where(known, index, torch.full_like(index, length)).flip(dim).cummin(dim).values.flip(dim)
    has_prev, has_next = prev >= 0, nxt < length
    use_prev = has_prev & (~has_next | (index - prev <= nxt - index))
    source = torch.where(use_prev, prev, nxt).clamp(0, length - 1)
    expanded = list(x.shape)
    filled = x.gather(dim, source.expand(expanded))
    if linear:
        between = has_prev & has_next & ~known
        before = x.gather(dim, prev.clamp(min=0).expand(expanded))
        after = x.gather(dim, nxt.clamp(max=length - 1).expand(expanded))
        fraction = ((index - prev).float() / (nxt - prev).clamp(min=1).float()).to(x.dtype)
        filled = torch.where(between, before + (after - before) * fraction, filled)
    line_known = known.any(dim, keepdim=True).expand_as(known)
    out = torch.where(known | ~line_known, x, filled)
    return out, known | line_known


def pad_condition(video: torch.Tensor, pixel_mask: torch.Tensor, padding: str = "replicate",
                  value: float = 0.0) -> torch.Tensor:
    """Complete the condition pixels of `video (B, C, T, H, W)` to a full clip.

    pixel_mask: `(B, T, H, W)` or `(T, H, W)` bool, True = condition pixel (kept exactly).
    padding: "replicate", "interpolate" or "constant" (see the module docstring); `value` is the
    constant. Pixels outside the mask never leak into the result.
    """
    if padding not in PADDINGS:
        raise VidgenError(f"padding={padding!r} is not one of {PADDINGS}")
    if video.dim() != 5:
        raise VidgenError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
    b, _, T, H, W = video.shape
    if pixel_mask.dim() == 3:
        pixel_mask = pixel_mask.expand(b, T, H, W)
    if tuple(pixel_mask.shape) != (b, T, H, W):
        raise VidgenError(f"pixel mask of shape {tuple(pixel_mask.shape)} does not match video "
                          f"{tuple(video.shape)}; "
                          f"expected ({b}, {T}, {H}, {W}) or ({T}, {H}, {W})")
    known = pixel_mask.bool().to(video.device)[:, None]  # (B, 1, T, H, W)
    x = torch.where(known, video, torch.full_like(video, value))  # nothing outside the condition survives
    if padding == "constant":
        return x
    for dim in (2, 3, 4):
        x, known = _fill_along(x, known, dim, linear=padding == "interpolate" and dim == 2)
    return x
