"""CogVideoX's 3D causal KL VAE (Yang et al. 2024, arXiv 2408.06072, section 2.1).

A video (B, 3, T, H, W) in [-1, 1] is compressed to latents (B, C, T', H', W') with, for the default
four stages, 4x in time and 8x8 in space: T = 4k + 1 frames -> k + 1 latent frames. The first frame is
encoded alone (an image is a one-frame video), and every convolution is causal in time (padded on the
past side with the first frame repeated), so latent frame i depends on frames <= 4i only.

    encoder: conv_in -> stages of ResNet blocks, each stage but the last followed by a 2x downsample
             (the first log2(4) = 2 stages also halve time by averaging frame pairs) -> 2 mid blocks
             -> GroupNorm, SiLU, conv_out to 2C channels (mean and log-variance of q(z | x))
    decoder: conv_in -> 2 mid blocks -> stages of (layers_per_block + 1) blocks with 2x upsampling
             (nearest, then a 3x3 conv; the first 2 also double time) -> norm, SiLU, conv_out.
             Every decoder norm is a `SpatialNorm3d` conditioned on the latents being decoded.

Normalisation scope (`config.norm_scope`), the one design decision that matters for chunking:

    "frame" (vidgen's own models): GroupNorm statistics per frame. The model is then exactly causal
        and a long video can be processed in chunks of frames with the causal-conv caches carried
        between chunks (`CausalStream`), with the same result as one pass and bounded memory.
    "chunk" (weights imported from diffusers' `AutoencoderKLCogVideoX`): GroupNorm statistics over
        the frames of the chunk being processed, as diffusers does. Results then depend on the
        chunking, so `encode_chunk_frames=8` / `decode_chunk_latents=2` (diffusers' values) are part of
        the model and reproduce diffusers' outputs (fp32 max abs diff ~1e-5 on random weights).
        CogVideoX was trained with these statistics: its weights in "frame" scope give other outputs.

Chunks: the first chunk holds the first frame plus `chunk` frames (plus the remainder, like diffusers),
later chunks `chunk` frames each. Memory-bounded inference also offers spatial tiling with linear
blending of overlapping tiles (`tile_sample_size`, `tile_overlap`; approximate, see `decode`) and batch
slicing (`batch_size`). `config.scaling_factor` is stored for diffusion models but never applied here.

Inference (no autograd) is optimised without changing the numbers beyond float rounding: on CPU it
runs channels-last with oneDNN convolutions (also for batch-1 videos, which PyTorch's heuristic sends
to a slow reference kernel); norm + SiLU write straight into the past-padded buffer of the next causal
conv; spatial-norm factors are computed at latent resolution and broadcast, never upsampled; the
upsampling conv runs before the time repetition and as a sub-pixel convolution (no upsampled copy);
chunk outputs go into one pre-allocated tensor. Training (autograd) takes the plain path.

Interop: `CogVideoXVAE.from_pretrained` also reads a diffusers folder (config.json with
`"_class_name": "AutoencoderKLCogVideoX"` + diffusion_pytorch_model.safetensors, or a pipeline folder
with such a `vae/` sub-folder) and maps its weights onto ours (`convert_diffusers_state_dict`);
`to_diffusers()` gives the inverse (config kwargs + state dict).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.diffusion.rng import rand, randn
from vidgen.errors import CheckpointError, VidgenError
from vidgen.layers.causal_conv import CausalConv3d, CausalStream, conv3d, empty_like_layout
from vidgen.layers.norms import GroupNorm3d, NormScope, SpatialNorm3d
from vidgen.modeling import PretrainedModel, load_safetensors, read_json, resolve_model_path
from vidgen.tokenizers.distributions import DiagonalGaussian

__all__ = [
    "CogVideoXVAE",
    "CogVideoXVAEConfig",
    "cogvideox_vae_2b",
    "cogvideox_vae_5b",
    "cogvideox_vae_shapes",
    "cogvideox_vae_tiny",
    "config_from_diffusers",
    "convert_diffusers_state_dict",
]

DIFFUSERS_CLASS_NAME = "AutoencoderKLCogVideoX"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


# ----------------------------------------------------------------------------- config


@dataclass
class CogVideoXVAEConfig:
    """The whole description of a CogVideoX VAE. Defaults are CogVideoX-2B's released VAE.

    Spatial compression is 2 ** (len(block_out_channels) - 1) (one 2x downsample between stages);
    temporal compression is `temporal_compression_ratio` (a power of 2: the first log2 of it stages
    also halve time).
    """

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 3
    latent_channels: int = 16
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    temporal_compression_ratio: int = 4
    scaling_factor: float = 1.15258426
    norm_scope: str = "frame"  # "frame" | "chunk", see the module docstring
    encode_chunk_frames: int = 8  # frames per encoder chunk after the first frame
    decode_chunk_latents: int = 2  # latent frames per decoder chunk after the first latent frame

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if not self.block_out_channels:
            raise VidgenError("block_out_channels must name at least one stage width")
        for width in self.block_out_channels:
            if width % self.norm_num_groups:
                raise VidgenError(f"norm_num_groups={self.norm_num_groups} must divide every width in "
                                  f"block_out_channels={self.block_out_channels}")
        if self.layers_per_block < 1:
            raise VidgenError(f"layers_per_block must be >= 1, got {self.layers_per_block}")
        ratio = self.temporal_compression_ratio
        levels = len(self.block_out_channels) - 1
        if ratio < 1 or ratio & (ratio - 1) or ratio > 2 ** levels:
            raise VidgenError(f"temporal_compression_ratio must be a power of 2 <= {2 ** levels} "
                              f"(2 ** number of downsampling stages), got {ratio}")
        if self.norm_scope not in ("frame", "chunk"):
            raise VidgenError(f"norm_scope must be 'frame' or 'chunk', got {self.norm_scope!r}")
        if self.encode_chunk_frames < 1 or self.encode_chunk_frames % ratio:
            raise VidgenError(f"encode_chunk_frames must be a positive multiple of the temporal "
                              f"compression {ratio}, got {self.encode_chunk_frames}")
        if self.decode_chunk_latents < 1:
            raise VidgenError(f"decode_chunk_latents must be >= 1, got {self.decode_chunk_latents}")

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_compression(self) -> int:
        return self.temporal_compression_ratio


# ----------------------------------------------------------------------------- blocks


def _at_start(stream: CausalStream | None) -> bool:
    """True when the chunk being processed holds the video's first frame (always, in one pass)."""
    return stream is None or stream.at_start


def norm_act_into(norm: nn.Module, conv: CausalConv3d, x: torch.Tensor, stream: CausalStream | None,
                  z: torch.Tensor | None = None) -> torch.Tensor:
    """silu(norm(x)) written into the padded input buffer of `conv` (inference: no autograd).

    One activation-sized buffer instead of three (norm output, SiLU output, padded copy); the caller
    can drop x before running `conv.stream_padded(buffer, stream)`.
    """
    norm_kwargs = {} if z is None else {"z": z, "first_frame_alone": _at_start(stream)}
    buffer = conv.padded_buffer(x)
    body = conv.body(buffer)
    norm(x, out=body, **norm_kwargs)
    F.silu(body, inplace=True)
    return buffer


def norm_act_conv(norm: nn.Module, conv: CausalConv3d, x: torch.Tensor, stream: CausalStream | None,
                  z: torch.Tensor | None = None) -> torch.Tensor:
    """conv(silu(norm(x))), the pre-activation unit of every block."""
    if torch.is_grad_enabled():
        norm_kwargs = {} if z is None else {"z": z, "first_frame_alone": _at_start(stream)}
        return conv.stream(F.silu(norm(x, **norm_kwargs)), stream)
    return conv.stream_padded(norm_act_into(norm, conv, x, stream, z), stream)


class ResBlock3d(nn.Module):
    """norm -> SiLU -> causal 3x3x3 conv, twice, plus a (1x1x1-projected) skip. (B, C_in, T, H, W) ->
    (B, C_out, T, H, W). With `z_channels`, both norms are spatial norms conditioned on latents z."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, eps: float, scope: NormScope,
                 z_channels: int | None = None):
        super().__init__()

        def norm(channels: int) -> nn.Module:
            if z_channels is None:
                return GroupNorm3d(num_groups, channels, eps=eps, scope=scope)
            return SpatialNorm3d(channels, z_channels, num_groups, eps=eps, scope=scope)

        self.norm1 = norm(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = norm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, stream: CausalStream | None = None,
                z: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():
            h = norm_act_conv(self.norm1, self.conv1, x, stream, z)
            h = norm_act_conv(self.norm2, self.conv2, h, stream, z)
            return h + (x if self.skip is None else self.skip(x))
        # Inference: at most three activations alive at once (x, a padded buffer, a conv output).
        h = self.conv1.stream_padded(norm_act_into(self.norm1, self.conv1, x, stream, z), stream)
        buffer = norm_act_into(self.norm2, self.conv2, h, stream, z)
        del h
        h = self.conv2.stream_padded(buffer, stream)
        del buffer
        return h.add_(x if self.skip is None else conv3d(x, self.skip.weight, self.skip.bias))


class Downsample3d(nn.Module):
    """2x spatial downsampling (pad right/bottom by 1, 3x3 conv, stride 2), optionally halving time
    first by averaging frame pairs; the video's first frame is kept alone (T = 1 + 2n -> 1 + n)."""

    def __init__(self, channels: int, compress_time: bool):
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), stride=(1, 2, 2))

    def forward(self, x: torch.Tensor, stream: CausalStream | None = None) -> torch.Tensor:
        B, C, T, H, W = x.shape
        keep = 1 if self.compress_time and _at_start(stream) else 0  # frames passed through unpooled
        pairs = (T - keep) // 2 if self.compress_time else 0
        if self.compress_time and (T - keep) % 2:
            raise VidgenError(f"temporal downsampling needs pairs of frames after the first one, "
                              f"got a chunk of {T} frames")
        T_out = keep + pairs if self.compress_time else T
        if torch.is_grad_enabled():
            if self.compress_time:
                rest = x[:, :, keep:].reshape(B, C, pairs, 2, H, W)
                x = torch.cat([x[:, :, :keep], (rest[:, :, :, 0] + rest[:, :, :, 1]) * 0.5], dim=2)
            return self._conv(F.pad(x, (0, 1, 0, 1)))
        # Inference: pool straight into the zero-bordered buffer the conv reads.
        padded = empty_like_layout(x, B, C, T_out, H + 1, W + 1)
        padded[..., H, :].zero_()
        padded[..., :H, W].zero_()
        inner = padded[..., :H, :W]
        if not self.compress_time:
            inner.copy_(x)
        else:
            inner[:, :, :keep].copy_(x[:, :, :keep])
            rest = x[:, :, keep:].reshape(B, C, pairs, 2, H, W)
            torch.add(rest[:, :, :, 0], rest[:, :, :, 1], out=inner[:, :, keep:]).mul_(0.5)
        return self._conv(padded)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d(x, self.conv.weight, self.conv.bias, self.conv.stride)


class Upsample3d(nn.Module):
    """2x nearest spatial upsampling and a 3x3 conv, optionally doubling time (every frame but the
    video's first is repeated: T = 1 + n -> 1 + 2n).

    The conv is per frame, so it runs before the time repetition (half the work, same numbers).
    Inference computes "nearest x2 then 3x3 conv" as four 2x2 convs on the small input, one per output
    pixel phase (sub-pixel convolution): a 3x3 window over a nearest-upsampled image covers only 2x2
    distinct input pixels, so its taps fold into 2x2 kernels. 16 instead of 36 multiply-adds per input
    pixel and no upsampled copy of the input; the phases are written straight into the (time-repeated)
    output. Same result up to float rounding of the folded weights.
    """

    def __init__(self, channels: int, compress_time: bool):
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor, stream: CausalStream | None = None) -> torch.Tensor:
        B, _, T, H, W = x.shape
        # Frames [0, keep) are output once, the others twice (time upsampling).
        keep = (1 if _at_start(stream) else 0) if self.compress_time else T
        if torch.is_grad_enabled():
            up = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
            y = conv3d(up, self.conv.weight, self.conv.bias, padding=(0, 1, 1))  # (B, C, T, 2H, 2W)
            return torch.cat([y[:, :, :keep], y[:, :, keep:].repeat_interleave(2, dim=2)], dim=2)
        O = self.conv.out_channels
        out = empty_like_layout(x, B, O, keep + 2 * (T - keep), 2 * H, 2 * W)
        once = out[:, :, :keep].view(B, O, keep, H, 2, W, 2)
        twice = out[:, :, keep:].view(B, O, T - keep, 2, H, 2, W, 2)
        for py, row_kernel in enumerate(_fold_taps(self.conv.weight[:, :, 0], dim=2)):  # (O, C, 2, 3)
            # Both column phases of this row phase in one conv: (2O, C, 1, 2, 2) -> (B, 2O, T, H+1, W+1).
            kernel = torch.cat(_fold_taps(row_kernel, dim=3), dim=0).unsqueeze(2)
            y = conv3d(x, kernel, self.conv.bias.repeat(2), padding=(0, 1, 1))
            for px in (0, 1):
                # Output pixel (2i + py, 2j + px) reads input rows (i - 1 + py, i + py), same for columns:
                # with one pixel of zero padding that is output (i + py, j + px) of the 2x2 conv.
                phase = y[:, px * O:(px + 1) * O, :, py:py + H, px:px + W]
                once[:, :, :, :, py, :, px] = phase[:, :, :keep]
                twice[:, :, :, :, :, py, :, px] = phase[:, :, keep:].unsqueeze(3)
            del y
        return out


def _fold_taps(kernel: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3 taps (a, b, c) along `dim` seen through nearest x2 upsampling -> the 2-tap kernels of the two
    output phases: even outputs read (previous, current) input pixels with (a, b + c), odd outputs read
    (current, next) with (a + b, c)."""
    a, b, c = kernel.unbind(dim)
    return torch.stack([a, b + c], dim), torch.stack([a + b, c], dim)


class EncoderStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, num_groups: int, eps: float,
                 scope: NormScope, downsample: bool, compress_time: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock3d(in_channels if i == 0 else out_channels, out_channels, num_groups, eps, scope)
            for i in range(num_blocks))
        self.downsample = Downsample3d(out_channels, compress_time) if downsample else None

    def forward(self, x: torch.Tensor, stream: CausalStream | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, stream)
        return x if self.downsample is None else self.downsample(x, stream)


class DecoderStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, num_groups: int, eps: float,
                 scope: NormScope, z_channels: int, upsample: bool, compress_time: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock3d(in_channels if i == 0 else out_channels, out_channels, num_groups, eps, scope, z_channels)
            for i in range(num_blocks))
        self.upsample = Upsample3d(out_channels, compress_time) if upsample else None

    def forward(self, x: torch.Tensor, z: torch.Tensor, stream: CausalStream | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, stream, z)
        return x if self.upsample is None else self.upsample(x, stream)


class CausalEncoder3d(nn.Module):
    """(B, 3, T, H, W) -> moments (B, 2C, T', H', W') (mean and log-variance of q(z | x))."""

    def __init__(self, config: CogVideoXVAEConfig):
        super().__init__()
        widths, groups, eps, scope = (config.block_out_channels, config.norm_num_groups, config.norm_eps,
                                      config.norm_scope)
        time_levels = int(math.log2(config.temporal_compression_ratio))
        self.conv_in = CausalConv3d(config.in_channels, widths[0], 3)
        self.down = nn.ModuleList(
            EncoderStage(widths[max(i - 1, 0)], width, config.layers_per_block, groups, eps, scope,
                         downsample=i < len(widths) - 1, compress_time=i < time_levels)
            for i, width in enumerate(widths))
        self.mid = nn.ModuleList(ResBlock3d(widths[-1], widths[-1], groups, eps, scope) for _ in range(2))
        self.norm_out = GroupNorm3d(groups, widths[-1], eps=eps, scope=scope)
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels, 3)

    def forward(self, x: torch.Tensor, stream: CausalStream | None = None) -> torch.Tensor:
        h = self.conv_in.stream(x, stream)
        for stage in self.down:
            h = stage(h, stream)
        for block in self.mid:
            h = block(h, stream)
        return norm_act_conv(self.norm_out, self.conv_out, h, stream)


class CausalDecoder3d(nn.Module):
    """latents (B, C, T', H', W') -> video (B, 3, T, H, W); every norm is conditioned on the latents."""

    def __init__(self, config: CogVideoXVAEConfig):
        super().__init__()
        widths = tuple(reversed(config.block_out_channels))
        groups, eps, scope, zc = (config.norm_num_groups, config.norm_eps, config.norm_scope,
                                  config.latent_channels)
        time_levels = int(math.log2(config.temporal_compression_ratio))
        self.conv_in = CausalConv3d(zc, widths[0], 3)
        self.mid = nn.ModuleList(ResBlock3d(widths[0], widths[0], groups, eps, scope, zc) for _ in range(2))
        self.up = nn.ModuleList(
            DecoderStage(widths[max(i - 1, 0)], width, config.layers_per_block + 1, groups, eps, scope, zc,
                         upsample=i < len(widths) - 1, compress_time=i < time_levels)
            for i, width in enumerate(widths))
        self.norm_out = SpatialNorm3d(widths[-1], zc, groups, eps=eps, scope=scope)
        self.conv_out = CausalConv3d(widths[-1], config.out_channels, 3)

    def forward(self, z: torch.Tensor, stream: CausalStream | None = None) -> torch.Tensor:
        h = self.conv_in.stream(z, stream)
        for block in self.mid:
            h = block(h, stream, z)
        for stage in self.up:
            h = stage(h, z, stream)
        return norm_act_conv(self.norm_out, self.conv_out, h, stream, z)


# ----------------------------------------------------------------------------- chunking and tiling


def frame_chunks(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk: the first frame plus `chunk` frames plus the remainder of
    (num_frames - 1) / chunk (diffusers' rule), then `chunk` frames each."""
    first = min(num_frames, 1 + chunk + (num_frames - 1) % chunk)
    bounds = [(0, first)]
    while bounds[-1][1] < num_frames:
        start = bounds[-1][1]
        bounds.append((start, min(start + chunk, num_frames)))
    return bounds


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]  # the last tile is aligned with the border (more overlap, no partial tile)


def _blend_weights(starts: list[int], tile: int, size: int, scale: float) -> list[torch.Tensor]:
    """1D weights of each tile in output units: linear ramps over the overlap with each neighbour,
    summing to 1 across tiles in every overlap."""
    out = []
    for i, start in enumerate(starts):
        length = int(min(tile, size - start) * scale)
        w = torch.ones(length)
        if i > 0:
            ov = int((starts[i - 1] + tile - start) * scale)
            w[:ov] = torch.arange(1, ov + 1) / (ov + 1)
        if i < len(starts) - 1:
            ov = int((start + tile - starts[i + 1]) * scale)
            w[length - ov:] = torch.arange(ov, 0, -1) / (ov + 1)
        out.append(w)
    return out


# ----------------------------------------------------------------------------- the model


class CogVideoXVAE(PretrainedModel):
    """CogVideoX's 3D causal KL VAE. See the module docstring for the architecture and options.

    encode(video (B, 3, T, H, W) in [-1, 1]) -> latents (B, C, 1 + (T - 1) / 4, H / 8, W / 8)
    decode(latents) -> video; forward(video) -> (reconstruction, posterior) for training.
    """

    config_class = CogVideoXVAEConfig

    def __init__(self, config: CogVideoXVAEConfig):
        super().__init__(config)
        self.encoder = CausalEncoder3d(config)
        self.decoder = CausalDecoder3d(config)

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    # ---- shapes

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the latents of a (T, H, W) video (validated)."""
        self._check_video_size(num_frames, height, width)
        s, t = self.config.spatial_compression, self.config.temporal_compression
        return 1 + (num_frames - 1) // t, height // s, width // s

    def video_shape(self, latent_frames: int, height: int, width: int) -> tuple[int, int, int]:
        s, t = self.config.spatial_compression, self.config.temporal_compression
        return 1 + (latent_frames - 1) * t, height * s, width * s

    def _check_video_size(self, T: int, H: int, W: int) -> None:
        s, t = self.config.spatial_compression, self.config.temporal_compression
        if T < 1 or (T - 1) % t:
            allowed = ", ".join(str(1 + t * k) for k in range(5))
            raise VidgenError(f"number of frames T={T} is not supported: this VAE compresses time by {t}, "
                              f"so T must be 1 (an image) or {t}k + 1 ({allowed}, ...)")
        for name, size in (("height", H), ("width", W)):
            if size < 1 or size % s:
                raise VidgenError(f"{name}={size} is not supported: it must be a positive multiple of the "
                                  f"spatial compression {s} (e.g. {max(s, size // s * s)} or {(size // s + 1) * s})")

    def _check_video(self, video: torch.Tensor) -> None:
        if not isinstance(video, torch.Tensor) or video.ndim != 5:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise VidgenError(f"video must be a (B, C, T, H, W) tensor, got {shape}")
        if not video.is_floating_point():
            raise VidgenError(f"video must be a float tensor in [-1, 1], got dtype {video.dtype}")
        if video.shape[1] != self.config.in_channels:
            raise VidgenError(f"video must have {self.config.in_channels} channels in dim 1 (B, C, T, H, W), "
                              f"got shape {tuple(video.shape)}")
        self._check_video_size(*video.shape[2:])

    def _check_latents(self, latents: torch.Tensor) -> None:
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise VidgenError(f"latents must be a (B, C, T, H, W) tensor, got {shape}")
        if latents.shape[1] != self.config.latent_channels:
            raise VidgenError(f"latents must have {self.config.latent_channels} channels in dim 1, "
                              f"got shape {tuple(latents.shape)}")
        if not latents.is_floating_point():
            raise VidgenError(f"latents must be a float tensor, got dtype {latents.dtype}")

    # ---- training

    def forward(self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None,
                decoder_noise: float = 0.0) -> tuple[torch.Tensor, DiagonalGaussian]:
        """One pass (no chunking), for training: video (B, 3, T, H, W) -> (reconstruction, posterior).

        decoder_noise: noise-augmented decoding. Each clip's latents get Gaussian noise of std
            u * decoder_noise * std(z), u ~ U(0, 1) per clip, before the decoder. A diffusion model's
            latents are never exact; with a near-deterministic posterior the decoder otherwise reads
            detail (a square's corners) from differences far smaller than that error.
        """
        self._check_video(video)
        if not 0.0 <= decoder_noise <= 10.0:
            raise VidgenError(f"decoder_noise={decoder_noise!r} must be in [0, 10] (a multiple of the latents' std)")
        posterior = DiagonalGaussian(self.encoder(video))
        z = posterior.sample(generator) if sample else posterior.mode()
        if decoder_noise > 0:
            level = rand((z.shape[0], 1, 1, 1, 1), generator, z.device, z.dtype) * decoder_noise
            level = level * z.detach().std(dim=(1, 2, 3, 4), keepdim=True)  # relative: scale-invariant
            z = z + level * randn(z.shape, generator, z.device, z.dtype)
        return self.decoder(z), posterior

    def last_layer_weight(self) -> torch.Tensor:
        """The decoder's output conv weight (VQGAN's adaptive GAN weight balances gradients there)."""
        return self.decoder.conv_out.weight

    # ---- inference

    def encode_posterior(self, video: torch.Tensor, *, chunk_frames: int | None = None,
                         tile_sample_size: int | None = None, tile_overlap: int | None = None,
                         batch_size: int | None = None) -> DiagonalGaussian:
        """q(z | video) with memory-bounded processing.

        chunk_frames: frames per chunk after the first frame (a multiple of the temporal compression;
            default `config.encode_chunk_frames`); with norm_scope "frame" any value gives the result
            of one pass, with "chunk" it changes the result (keep the default for diffusers weights).
        tile_sample_size, tile_overlap: encode overlapping spatial tiles of this size (pixels, multiples
            of the spatial compression) and blend them; None = no tiling (exact). Approximate: each
            tile has its own GroupNorm statistics and misses context beyond its border.
        batch_size: encode this many videos at a time (exact).
        """
        self._check_video(video)
        chunk = chunk_frames or self.config.encode_chunk_frames
        if chunk % self.config.temporal_compression:
            raise VidgenError(f"chunk_frames must be a multiple of the temporal compression "
                              f"{self.config.temporal_compression}, got {chunk}")
        s = self.config.spatial_compression
        moments = self._process(video, self.encoder, 2 * self.config.latent_channels, chunk,
                                self.config.temporal_compression, 1 / s, tile_sample_size, tile_overlap,
                                batch_size, encoding=True)
        return DiagonalGaussian(moments)

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        """video (B, 3, T, H, W) in [-1, 1] -> latents (B, C, T', H', W'): the posterior mean, or a
        sample when `sample=True`. `options` as in `encode_posterior`. Not scaled by scaling_factor."""
        posterior = self.encode_posterior(video, **options)
        return posterior.sample(generator) if sample else posterior.mode()

    def decode(self, latents: torch.Tensor, *, chunk_latents: int | None = None,
               tile_sample_size: int | None = None, tile_overlap: int | None = None,
               batch_size: int | None = None) -> torch.Tensor:
        """latents (B, C, T', H', W') -> video (B, 3, 1 + 4 (T' - 1), 8 H', 8 W'), roughly in [-1, 1].

        chunk_latents: latent frames per chunk after the first (default `config.decode_chunk_latents`).
        tile_sample_size / tile_overlap (in pixels of the output) and batch_size: as in `encode_posterior`.
        """
        self._check_latents(latents)
        chunk = chunk_latents or self.config.decode_chunk_latents
        s = self.config.spatial_compression
        return self._process(latents, self.decoder, self.config.out_channels, chunk,
                             self.config.temporal_compression, s, tile_sample_size, tile_overlap, batch_size,
                             encoding=False)

    def _process(self, x: torch.Tensor, net: nn.Module, out_channels: int, chunk: int, t_factor: int,
                 s_factor: float, tile_sample_size: int | None, tile_overlap: int | None,
                 batch_size: int | None, encoding: bool) -> torch.Tensor:
        """Run `net` over x (B, C, T, H, W) by batch slices, spatial tiles and chunks of frames, writing
        into one pre-allocated output (no list of pieces to concatenate)."""
        B, _, T, H, W = x.shape
        T_out = 1 + (T - 1) // t_factor if encoding else 1 + (T - 1) * t_factor
        # Inference on CPU runs channels-last: oneDNN's 3D convs are 20-30% faster at high resolution.
        channels_last = x.device.type == "cpu" and not torch.is_grad_enabled()
        out_hw = (int(H * s_factor), int(W * s_factor))
        out = None
        tiles = self._tiles(H, W, tile_sample_size, tile_overlap, s_factor)
        weight_sum = None if len(tiles) == 1 else x.new_zeros(*out_hw)
        batch_size = batch_size or B
        if batch_size < 1:
            raise VidgenError(f"batch_size must be >= 1, got {batch_size}")
        for b0 in range(0, B, batch_size):
            xb = x[b0:b0 + batch_size]
            for (rows, cols), (out_rows, out_cols), weight in tiles:
                stream = CausalStream()
                for start, end in frame_chunks(T, chunk):
                    piece = xb[:, :, start:end, rows, cols]
                    if channels_last:
                        piece = piece.contiguous(memory_format=torch.channels_last_3d)
                    y = net(piece, stream)
                    del piece
                    stream.next_chunk()
                    if out is None:
                        out = y.new_empty(B, out_channels, T_out, *out_hw) if weight is None else \
                            y.new_zeros(B, out_channels, T_out, *out_hw)
                    if encoding:
                        t0 = 0 if start == 0 else 1 + (start - 1) // t_factor
                    else:
                        t0 = 0 if start == 0 else 1 + (start - 1) * t_factor
                    target = out[b0:b0 + batch_size, :, t0:t0 + y.shape[2], out_rows, out_cols]
                    if weight is None:
                        target.copy_(y)
                    else:
                        target.add_(y * weight.to(y))
                    del y
                if weight_sum is not None and b0 == 0:
                    weight_sum[out_rows, out_cols] += weight.to(weight_sum)
        if weight_sum is not None:
            out /= weight_sum.to(out)
        return out

    def _tiles(self, H: int, W: int, tile_sample_size: int | None, tile_overlap: int | None, s_factor: float
               ) -> list[tuple[tuple[slice, slice], tuple[slice, slice], torch.Tensor | None]]:
        """Input slices, output slices and blend weights (None: a single tile) of each spatial tile."""
        full = [((slice(None), slice(None)), (slice(None), slice(None)), None)]
        if tile_sample_size is None:
            return full
        s = self.config.spatial_compression
        overlap = tile_sample_size // 4 if tile_overlap is None else tile_overlap
        if tile_sample_size < s or tile_sample_size % s or overlap % s or not 0 <= overlap < tile_sample_size:
            raise VidgenError(f"tile_sample_size ({tile_sample_size}) and tile_overlap ({overlap}) must be "
                              f"multiples of {s} with 0 <= tile_overlap < tile_sample_size")
        # Work in input units: pixels when encoding (s_factor < 1), latent pixels when decoding.
        tile, ov = (tile_sample_size, overlap) if s_factor < 1 else (tile_sample_size // s, overlap // s)
        row_starts, col_starts = _tile_starts(H, tile, ov), _tile_starts(W, tile, ov)
        if len(row_starts) == 1 and len(col_starts) == 1:
            return full
        row_w = _blend_weights(row_starts, tile, H, s_factor)
        col_w = _blend_weights(col_starts, tile, W, s_factor)
        tiles = []
        for r, wr in zip(row_starts, row_w):
            for c, wc in zip(col_starts, col_w):
                rows, cols = slice(r, r + tile), slice(c, c + tile)
                out_rows = slice(int(r * s_factor), int(r * s_factor) + len(wr))
                out_cols = slice(int(c * s_factor), int(c * s_factor) + len(wc))
                tiles.append(((rows, cols), (out_rows, out_cols), wr[:, None] * wc[None, :]))
        return tiles

    # ---- checkpoints (ours and diffusers')

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> CogVideoXVAE:
        """Load a vidgen checkpoint, or a diffusers `AutoencoderKLCogVideoX` folder (converted)."""
        directory = resolve_model_path(name_or_path)
        diffusers_dir = _find_diffusers_vae(directory)
        if diffusers_dir is None:
            return super().from_pretrained(directory, device=device, dtype=dtype)
        config = config_from_diffusers(read_json(diffusers_dir / "config.json"),
                                       source=str(diffusers_dir / "config.json"))
        model = cls(config)
        state = convert_diffusers_state_dict(_load_diffusers_weights(diffusers_dir), model.state_dict(),
                                             source=str(diffusers_dir))
        model.load_state_dict_strict(state, source=str(diffusers_dir))
        model = model.to(device=device)
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model.eval()

    def to_diffusers(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(config kwargs for diffusers' `AutoencoderKLCogVideoX(**kwargs)`, its state dict)."""
        c = self.config
        if c.norm_eps != 1e-6:
            raise CheckpointError(f"diffusers' CogVideoX VAE fixes most norm eps at 1e-6; "
                                  f"this model uses norm_eps={c.norm_eps}")
        n = len(c.block_out_channels)
        kwargs = {
            "in_channels": c.in_channels, "out_channels": c.out_channels,
            "down_block_types": ("CogVideoXDownBlock3D",) * n, "up_block_types": ("CogVideoXUpBlock3D",) * n,
            "block_out_channels": c.block_out_channels, "latent_channels": c.latent_channels,
            "layers_per_block": c.layers_per_block, "norm_num_groups": c.norm_num_groups,
            "norm_eps": c.norm_eps, "temporal_compression_ratio": c.temporal_compression_ratio,
            "scaling_factor": c.scaling_factor,
        }
        state = {}
        for key, value in self.state_dict().items():
            for their_key, their_value in _to_diffusers_tensors(key, value):
                state[their_key] = their_value
        return kwargs, state


# ----------------------------------------------------------------------------- diffusers interop

# Our names -> diffusers' names, applied in order (nanoGPT-style: one readable table, not their structure).
_RENAMES = [
    (r"^(encoder|decoder)\.mid\.(\d+)\.", r"\1.mid_block.resnets.\2."),
    (r"^encoder\.down\.(\d+)\.blocks\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
    (r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0."),
    (r"^decoder\.up\.(\d+)\.blocks\.(\d+)\.", r"decoder.up_blocks.\1.resnets.\2."),
    (r"^decoder\.up\.(\d+)\.upsample\.", r"decoder.up_blocks.\1.upsamplers.0."),
    (r"\.skip\.", r".conv_shortcut."),
    (r"\.(conv_in|conv_out|conv1|conv2)\.(weight|bias)$", r".\1.conv.\2"),  # their causal conv wraps a Conv3d
    (r"\.(norm1|norm2|norm_out)\.norm\.", r".\1.norm_layer."),  # spatial norms
]


def _to_diffusers_tensors(key: str, value: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    if ".to_scale_shift." in key:  # one fused conv here, conv_y (scale) and conv_b (shift) there
        scale, shift = value.chunk(2, dim=0)
        return [(key.replace(".to_scale_shift.", ".conv_y.conv."), scale),
                (key.replace(".to_scale_shift.", ".conv_b.conv."), shift)]
    if ("downsamplers" in key or "upsamplers" in key) and key.endswith("weight"):
        value = value.squeeze(2)  # their per-frame Conv2d is our (1, 3, 3) Conv3d
    return [(key, value)]


def convert_diffusers_state_dict(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                                 source: str = "diffusers weights") -> dict[str, torch.Tensor]:
    """Map an `AutoencoderKLCogVideoX` state dict onto ours; `reference` is our model's state dict
    (for the names and shapes)."""
    converted, used, missing = {}, set(), []
    for key, value in reference.items():
        pieces = _to_diffusers_tensors(key, value)
        if any(their_key not in state for their_key, _ in pieces):
            missing.extend(k for k, _ in pieces if k not in state)
            continue
        tensors = [state[their_key] for their_key, _ in pieces]
        used.update(their_key for their_key, _ in pieces)
        tensor = torch.cat(tensors, dim=0) if len(tensors) > 1 else tensors[0]
        converted[key] = tensor.reshape(value.shape) if tensor.numel() == value.numel() else tensor
    unexpected = sorted(set(state) - used)
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not match an AutoencoderKLCogVideoX with this config; "
                              f"missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                              f"unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
    return converted


def config_from_diffusers(data: dict[str, Any], source: str = "config.json") -> CogVideoXVAEConfig:
    """Our config for a diffusers `AutoencoderKLCogVideoX` config.json (norm_scope "chunk", with
    diffusers' frame batching of 8 frames / 2 latent frames, so outputs match diffusers')."""
    def get(name: str, default: Any) -> Any:
        return data.get(name, default)

    widths = tuple(get("block_out_channels", (128, 256, 256, 512)))
    checks = [
        (all(t == "CogVideoXDownBlock3D" for t in get("down_block_types", ["CogVideoXDownBlock3D"] * 4))
         and len(get("down_block_types", widths)) == len(widths), "down_block_types"),
        (all(t == "CogVideoXUpBlock3D" for t in get("up_block_types", ["CogVideoXUpBlock3D"] * 4))
         and len(get("up_block_types", widths)) == len(widths), "up_block_types"),
        (get("act_fn", "silu") == "silu", "act_fn"),
        (not get("use_quant_conv", False), "use_quant_conv"),
        (not get("use_post_quant_conv", False), "use_post_quant_conv"),
        (get("shift_factor", None) is None, "shift_factor"),
        (get("latents_mean", None) is None and get("latents_std", None) is None, "latents_mean/latents_std"),
        (float(get("norm_eps", 1e-6)) == 1e-6, "norm_eps"),
    ]
    unsupported = [name for ok, name in checks if not ok]
    if unsupported:
        raise CheckpointError(f"{source}: unsupported AutoencoderKLCogVideoX settings {unsupported}; supported: "
                              f"one CogVideoX block type per stage, act_fn 'silu', no quant convs, no "
                              f"shift_factor/latents_mean/latents_std, norm_eps 1e-6")
    ratio = get("temporal_compression_ratio", 4)
    if float(ratio) != int(ratio):
        raise CheckpointError(f"{source}: temporal_compression_ratio must be an integer, got {ratio}")
    try:
        return CogVideoXVAEConfig(
            in_channels=get("in_channels", 3), out_channels=get("out_channels", 3), block_out_channels=widths,
            layers_per_block=get("layers_per_block", 3), latent_channels=get("latent_channels", 16),
            norm_num_groups=get("norm_num_groups", 32), norm_eps=float(get("norm_eps", 1e-6)),
            temporal_compression_ratio=int(ratio), scaling_factor=float(get("scaling_factor", 1.15258426)),
            norm_scope="chunk", encode_chunk_frames=8, decode_chunk_latents=2)
    except VidgenError as error:
        raise CheckpointError(f"{source}: {error}") from None


def _find_diffusers_vae(directory: Path) -> Path | None:
    """The folder holding a diffusers AutoencoderKLCogVideoX config (itself or its `vae/`), or None."""
    for candidate in (directory, directory / "vae"):
        path = candidate / "config.json"
        if path.is_file():
            try:
                name = json.loads(path.read_text(encoding="utf-8")).get("_class_name")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                return None
            if name == DIFFUSERS_CLASS_NAME:
                return candidate
            if candidate == directory:
                return None
    return None


def _load_diffusers_weights(directory: Path) -> dict[str, torch.Tensor]:
    single = directory / DIFFUSERS_WEIGHTS_NAME
    if single.is_file():
        return load_safetensors(single)
    index = directory / (DIFFUSERS_WEIGHTS_NAME + ".index.json")
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_safetensors(directory / shard))
        return state
    raise CheckpointError(f"{directory}: no {DIFFUSERS_WEIGHTS_NAME} (or sharded .index.json) found; only "
                          f"safetensors weights are read (never pickled .bin files)")


# ----------------------------------------------------------------------------- named sizes


def cogvideox_vae_tiny(**overrides: Any) -> CogVideoXVAE:
    """For tests: ~0.2M parameters, 4x time / 8x space, 4 latent channels."""
    return CogVideoXVAE(dataclasses.replace(CogVideoXVAEConfig(
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        scaling_factor=1.0), **overrides))


def cogvideox_vae_shapes(**overrides: Any) -> CogVideoXVAE:
    """The bundled Shapes model (~2.6M parameters): 17x64x64 clips -> 5x8x8 latents with 16 channels.

    Full-resolution 3D convs dominate the cost on a CPU, so the first stage is narrow (16 channels;
    Shapes are flat colours on black) and the width goes to the low-resolution stages. 16 latent
    channels (CogVideoX's own) at 8x8x4 compression (48x) leave room for sharp edges after a short
    training; the Shapes transformer takes 5x8x8x16 latents (80 tokens with patch 2).
    """
    return CogVideoXVAE(dataclasses.replace(CogVideoXVAEConfig(
        block_out_channels=(16, 32, 64, 64), layers_per_block=1, latent_channels=16, norm_num_groups=8,
        scaling_factor=1.0), **overrides))


def cogvideox_vae_2b(**overrides: Any) -> CogVideoXVAE:
    """CogVideoX-2B's VAE architecture (load its weights with `from_pretrained(<diffusers folder>)`)."""
    return CogVideoXVAE(dataclasses.replace(CogVideoXVAEConfig(norm_scope="chunk"), **overrides))


def cogvideox_vae_5b(**overrides: Any) -> CogVideoXVAE:
    """CogVideoX-5B's VAE architecture: as 2B's with scaling_factor 0.7."""
    return CogVideoXVAE(dataclasses.replace(CogVideoXVAEConfig(norm_scope="chunk", scaling_factor=0.7),
                                            **overrides))
