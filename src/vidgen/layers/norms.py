"""Normalisation layers for video tensors (B, C, T, H, W).

`GroupNorm3d` is GroupNorm with an explicit *scope* for its statistics:

    "frame": mean/variance over (C / groups, H, W) of each frame separately. Every frame is normalised
             on its own, so a causal model stays causal and processing a video in chunks of frames
             gives exactly the same result as one pass. vidgen's own video models use this.
    "chunk": mean/variance over (C / groups, T, H, W) of whatever frames are in the tensor (what
             `nn.GroupNorm` does on a 5D tensor). The result depends on how a video is cut into chunks;
             this is what diffusers' CogVideoX VAE does, kept for numerical compatibility with its
             weights (which then must be run with its chunking).

`SpatialNorm3d` (Zhu et al. 2022, "MoVQ", used by CogVideoX's decoder) conditions the normalisation on
a latent: GroupNorm(f) * scale(z) + shift(z), where scale and shift are 1x1x1 convs of z brought to
the resolution of f by nearest-neighbour upsampling.

Both take an optional `out` tensor (inference only) so the caller can have them write into a
pre-allocated buffer, e.g. the padded input of the next causal conv.

Two ways to compute GroupNorm3d (same result up to float rounding):
    default       with autograd, PyTorch's fused `group_norm`; without, exact float32 statistics
                  (`group_norm_scale_shift`) applied in one pass, optionally into `out` (CogVideoX's VAE).
    fused=True    always PyTorch's fused `group_norm` (its CPU backward is 3-5x faster than the float32
                  reference maths), on the input minus each group's mean (`centred_group_norm`): the
                  fused CPU kernel's variance loses all precision under a large common offset. For
                  models that spend their training time at full resolution (MAGVIT's 3D-VQ).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.errors import VidgenError
from vidgen.layers.causal_conv import conv3d, is_channels_last

NormScope = Literal["frame", "chunk"]

__all__ = ["GroupNorm3d", "SpatialNorm3d", "centred_group_norm", "group_norm_scale_shift", "group_norm_stats"]


def group_norm_stats(x: torch.Tensor, num_groups: int, scope: NormScope) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance of each group: (B, G, T) for scope "frame", (B, G, 1) for "chunk".

    Float32 whatever the dtype of x, and without autograd. `batch_norm_update_stats` computes per-row
    moments of a (1, rows, n) view in one vectorised pass without allocating anything activation-sized
    (`torch.var_mean` is ~10x slower on CPU). Group statistics combine the per-(channel, frame) rows of
    a group exactly (equal counts): var = mean(row var) + var(row means). Works on (B, C, T, H, W)
    tensors in either memory layout (contiguous or channels-last).
    """
    B, C = x.shape[:2]
    G = num_groups
    if scope == "frame" and x.ndim != 5:
        raise VidgenError(f"GroupNorm3d with scope 'frame' needs (B, C, T, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if is_channels_last(x):
        # Channels-last: per-channel moments of each frame are what batch_norm's channels-last kernel
        # computes, without a relayout copy. That kernel accumulates raw sums of squares, whose
        # cancellation grows with the number of values (relative variance error ~1e-5 over a whole
        # chunk when |mean| >> std); frame by frame it stays ~1e-6, and frames combine exactly below.
        T = x.shape[2]
        moments = [torch.batch_norm_update_stats(x[b:b + 1, :, t], None, None, 0.0)
                   for b in range(B) for t in range(T)]
        row_mean = torch.stack([m for m, _ in moments]).double().view(B, T, G, C // G).permute(0, 2, 3, 1)
        row_var = torch.stack([v for _, v in moments]).double().view(B, T, G, C // G).permute(0, 2, 3, 1)
        if scope == "chunk":  # rows of a group = its channels x frames
            row_mean, row_var = row_mean.reshape(B, G, -1, 1), row_var.reshape(B, G, -1, 1)
    elif scope == "chunk":
        mean, var = torch.batch_norm_update_stats(x.reshape(1, B * G, -1), None, None, 0.0)
        return mean.view(B, G, 1), var.view(B, G, 1)
    else:
        T = x.shape[2]
        row_mean, row_var = torch.batch_norm_update_stats(x.reshape(1, B * C * T, -1), None, None, 0.0)
        row_mean, row_var = row_mean.view(B, G, C // G, T), row_var.view(B, G, C // G, T)
    # Groups from rows of equal size: mean of means, and var = mean(row var) + var(row means).
    mean = row_mean.mean(dim=2)
    var = row_var.mean(dim=2) + (row_mean - mean.unsqueeze(2)).square().mean(dim=2)
    return mean.float(), var.float()


def group_norm_scale_shift(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                           bias: torch.Tensor | None, eps: float, scope: NormScope
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) such that GroupNorm(x) = x * scale + shift (no autograd).

    x: (B, C, T, H, W) -> scale, shift: (B, C, T, 1, 1) for scope "frame", (B, C, 1, 1, 1) for "chunk",
    in float32.
    """
    B, C = x.shape[:2]
    G = num_groups
    with torch.no_grad():
        mean, var = group_norm_stats(x, G, scope)  # (B, G, T or 1)
        rstd = torch.rsqrt(var + eps)
        view = (1, G, C // G, 1)
        scale = rstd.unsqueeze(2) if weight is None else rstd.unsqueeze(2) * weight.float().view(view)
        shift = -mean.unsqueeze(2) * scale
        if bias is not None:
            shift += bias.float().view(view)
    trailing = (1,) * (x.ndim - 3)
    return scale.reshape(B, C, -1, *trailing), shift.reshape(B, C, -1, *trailing)


def _fused_group_norm(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                      bias: torch.Tensor | None, eps: float, scope: NormScope) -> torch.Tensor:
    """PyTorch's fused `F.group_norm` on (B, C, T, H, W); scope "frame" folds the frames into the batch."""
    if scope == "chunk":
        return F.group_norm(x, num_groups, weight, bias, eps)
    if x.ndim != 5:
        raise VidgenError(f"GroupNorm3d with scope 'frame' needs (B, C, T, H, W), got shape {tuple(x.shape)}")
    frames = rearrange(x, "b c t h w -> (b t) c h w")  # a free view for channels-last activations
    y = F.group_norm(frames, num_groups, weight, bias, eps)
    return rearrange(y, "(b t) c h w -> b c t h w", b=x.shape[0])


def centred_group_norm(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                       bias: torch.Tensor | None, eps: float, scope: NormScope) -> torch.Tensor:
    """PyTorch's fused GroupNorm of x (B, C, T, H, W), exact under a large common offset.

    The fused CPU kernel's variance loses all precision when the activations carry a large common
    offset (seen training MAGVIT's 3D-VQ: ~5e6 on black backgrounds, giving outputs of 3e4 instead
    of 14). Removing each group's mean (over the whole chunk, whatever the scope) first makes it
    exact; GroupNorm's output does not depend on a per-group constant, so the shift is detached and
    the result and gradients are unchanged.
    """
    b, c = x.shape[:2]
    g = num_groups
    with torch.no_grad():
        shift = x.float().mean(dim=(2, 3, 4)).view(b, g, c // g).mean(-1, keepdim=True)   # (B, G, 1)
        shift = shift.expand(b, g, c // g).reshape(b, c, 1, 1, 1).to(x.dtype)
    return _fused_group_norm(x - shift, num_groups, weight, bias, eps, scope)


class GroupNorm3d(nn.Module):
    """GroupNorm for (B, C, T, H, W) with statistics per frame ("frame") or over the chunk ("chunk").

    Parameters are named like `nn.GroupNorm` (`weight`, `bias`), so its weights load as they are.
    With autograd on it runs PyTorch's fused GroupNorm (per frame: on the frames folded into the
    batch); without, it computes scale and shift and applies them in one pass, optionally into `out`.
    `fused=True` always runs the fused kernel, on centred input (`centred_group_norm`; module docstring).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6, affine: bool = True,
                 scope: NormScope = "frame", fused: bool = False):
        super().__init__()
        if num_channels % num_groups != 0:
            raise VidgenError(f"num_groups ({num_groups}) must divide num_channels ({num_channels})")
        if scope not in ("frame", "chunk"):
            raise VidgenError(f"norm scope must be 'frame' or 'chunk', got {scope!r}")
        self.num_groups, self.num_channels, self.eps, self.scope = num_groups, num_channels, eps, scope
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def extra_repr(self) -> str:
        fused = ", fused=True" if self.fused else ""
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, scope={self.scope}{fused}"

    def scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return group_norm_scale_shift(x, self.num_groups, self.weight, self.bias, self.eps, self.scope)

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T, H, W) -> normalised x, written into `out` if given (inference only)."""
        if self.fused:
            y = centred_group_norm(x, self.num_groups, self.weight, self.bias, self.eps, self.scope)
            return y if out is None else out.copy_(y)
        if torch.is_grad_enabled() and out is None:
            return _fused_group_norm(x, self.num_groups, self.weight, self.bias, self.eps, self.scope)
        scale, shift = self.scale_shift(x)
        scale, shift = scale.to(x.dtype), shift.to(x.dtype)
        if out is None:
            return torch.addcmul(shift, x, scale)
        return torch.addcmul(shift, x, scale, out=out)


class SpatialNorm3d(nn.Module):
    """GroupNorm(f) * scale(z) + shift(z), with z a latent of lower resolution than f.

    f: (B, C, T, H, W); z: (B, C_z, T_z, H_z, W_z) with H = H_z * 2^i, W = W_z * 2^j and, in time,
    either T = T_z * r, or (when `first_frame_alone`, i.e. the chunk starts the video) the first frame
    of f matching the first frame of z and the other T - 1 frames the other T_z - 1 latents, r each.

    scale and shift come from one 1x1x1 conv of z, applied at the latent resolution and *then*
    upsampled (a pointwise conv commutes with nearest-neighbour upsampling). The upsampling itself is
    never materialised: f is viewed as (B, C, T_z, r, H_z, 2^i, W_z, 2^j) and the latent-resolution
    factors broadcast over it, so the whole layer is one pass over f.
    """

    def __init__(self, channels: int, z_channels: int, num_groups: int, eps: float = 1e-6,
                 scope: NormScope = "frame"):
        super().__init__()
        self.norm = GroupNorm3d(num_groups, channels, eps=eps, scope=scope)
        self.to_scale_shift = nn.Conv3d(z_channels, 2 * channels, kernel_size=1)

    def forward(self, f: torch.Tensor, z: torch.Tensor, first_frame_alone: bool = True,
                out: torch.Tensor | None = None) -> torch.Tensor:
        B, C, T, H, W = f.shape
        scale_shift = conv3d(z, self.to_scale_shift.weight, self.to_scale_shift.bias)
        scale_z, shift_z = scale_shift.chunk(2, dim=1)  # (B, C, T_z, H_z, W_z) each
        if first_frame_alone and T > 1 and z.shape[2] > 1:
            segments = [(slice(0, 1), slice(0, 1)), (slice(1, T), slice(1, z.shape[2]))]
        else:
            segments = [(slice(0, T), slice(0, z.shape[2]))]
        grad = torch.is_grad_enabled() and out is None
        if grad:
            f = self.norm(f)  # autograd: normalise first, then modulate below
        else:
            a, c = self.norm.scale_shift(f)  # GroupNorm(f) = f * a + c; a, c: (B, C, T or 1, 1, 1)
        results = []
        for f_frames, z_frames in segments:
            f_seg = f[:, :, f_frames]
            s, b = scale_z[:, :, z_frames], shift_z[:, :, z_frames]
            Tz, Hz, Wz = s.shape[2:]
            Tf = f_seg.shape[2]
            if Tf % Tz or H % Hz or W % Wz:
                raise VidgenError(f"SpatialNorm3d: latent of shape {tuple(z.shape)} does not tile features "
                                  f"of shape {tuple(f.shape)}")
            rt, rh, rw = Tf // Tz, H // Hz, W // Wz
            f_view = f_seg.reshape(B, C, Tz, rt, Hz, rh, Wz, rw)  # upsampling = broadcasting over this view
            s = s.reshape(B, C, Tz, 1, Hz, 1, Wz, 1)
            b = b.reshape(B, C, Tz, 1, Hz, 1, Wz, 1)
            if grad:
                results.append(torch.addcmul(b, f_view, s).reshape(B, C, Tf, H, W))
                continue
            a_seg, c_seg = (a, c) if a.shape[2] == 1 else (a[:, :, f_frames], c[:, :, f_frames])
            a_seg = a_seg.reshape(B, C, -1, 1 if a_seg.shape[2] == 1 else rt, 1, 1, 1, 1)
            c_seg = c_seg.reshape(a_seg.shape)
            # (f * a + c) * s + b  ==  f * (a * s) + (c * s + b): both factors live at latent resolution
            # in height; they are expanded to the full width (1 / rh of f's size) so that the one pass
            # over f runs along contiguous rows instead of an innermost broadcast of length rw.
            factor, offset = a_seg * s.float(), c_seg * s.float() + b.float()  # (B, C, Tz, rt|1, Hz, 1, Wz, 1)
            wide = (*factor.shape[:6], W)
            factor = factor.expand(*factor.shape[:7], rw).reshape(wide).to(f.dtype)
            offset = offset.expand(*offset.shape[:7], rw).reshape(wide).to(f.dtype)
            if is_channels_last(f):  # match f's memory order (channels fastest) for the pass below
                factor = factor.movedim(1, -1).contiguous().movedim(-1, 1)
                offset = offset.movedim(1, -1).contiguous().movedim(-1, 1)
            f_rows = f_seg.reshape(B, C, Tz, rt, Hz, rh, W)
            if out is None:
                results.append(torch.addcmul(offset, f_rows, factor).reshape(B, C, Tf, H, W))
            else:
                torch.addcmul(offset, f_rows, factor, out=out[:, :, f_frames].view(f_rows.shape))
        if out is not None:
            return out
        return results[0] if len(results) == 1 else torch.cat(results, dim=2)
