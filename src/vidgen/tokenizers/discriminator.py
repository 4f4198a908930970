"""3D StyleGAN-style discriminator for video tokenizers (MAGVIT Sec. 3.1, after StyleGAN2 / StyleGAN-V).

    fromRGB (1x1x1 conv) -> [ResBlockDown] x N -> minibatch std -> conv -> global mean -> MLP -> logit

ResBlockDown (StyleGAN2's residual discriminator block, in 3D):
    main: conv 3x3x3, leaky ReLU, blur-downsample, conv 3x3x3, leaky ReLU
    skip: blur-downsample, 1x1x1 conv (no bias)
    out = (main + skip) / sqrt(2)            (keeps the variance of a sum of two unit-variance paths)

Blur downsampling low-pass filters with the binomial kernel [1, 3, 3, 1] / 8 per axis before taking
every other sample (StyleGAN's anti-aliasing); `blur=False` uses a plain 2x average pool. Time is downsampled only in the blocks
listed in `temporal_downsample` (the shallow ones, as in the tokenizer).

The head averages over (T, H, W) instead of flattening a fixed final grid, so one discriminator
takes any clip size; minibatch standard deviation (StyleGAN) appends one channel with the feature
spread across a group of clips, which lets the discriminator see a collapse in variety.

Not included: StyleGAN's equalised learning rate and R1 penalty (LeCam regularisation in
`gan_losses.py` plays the regulariser's part, as in MAGVIT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import VidgenError
from vidgen.modeling import PretrainedModel

__all__ = [
    "Discriminator3D",
    "DiscriminatorConfig",
    "blur_downsample",
    "discriminator_shapes",
    "discriminator_tiny",
]


@dataclass
class DiscriminatorConfig:
    """in_channels: channels of the video. base_channels: width of fromRGB; block i outputs
    base_channels * channel_multipliers[i]. temporal_downsample: per block, whether it halves time
    too. blur: anti-aliased ([1,3,3,1]) or plain average downsampling. minibatch_std_group: group
    size for the minibatch-std channel (0 = off). negative_slope: of the leaky ReLUs."""

    in_channels: int = 3
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (2, 4, 4, 4)
    temporal_downsample: tuple[bool, ...] = (True, True, False, False)
    blur: bool = True
    minibatch_std_group: int = 4
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(int(m) for m in self.channel_multipliers)
        self.temporal_downsample = tuple(bool(t) for t in self.temporal_downsample)
        if not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise VidgenError(f"channel_multipliers must be a non-empty tuple of positive ints, "
                              f"got {self.channel_multipliers}")
        if len(self.temporal_downsample) != len(self.channel_multipliers):
            raise VidgenError(f"temporal_downsample needs one entry per block ({len(self.channel_multipliers)}), "
                              f"got {self.temporal_downsample}")
        if self.base_channels < 1 or self.in_channels < 1:
            raise VidgenError(f"base_channels and in_channels must be >= 1, got {self.base_channels}, "
                              f"{self.in_channels}")
        if self.minibatch_std_group < 0:
            raise VidgenError(f"minibatch_std_group must be >= 0 (0 = off), got {self.minibatch_std_group}")

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.channel_multipliers)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


def blur_downsample(x: torch.Tensor, temporal: bool, blur: bool = True) -> torch.Tensor:
    """Halve H and W (and T if `temporal`) of (B, C, T, H, W), low-passing with [1, 3, 3, 1] / 8 first.

    The blur is one depthwise conv with the separable kernel (outer product of [1, 3, 3, 1] / 8 per
    downsampled axis) at stride 2 over a replicate-padded input (one sample each side); on CPU that
    is several times faster than chaining box filters. Requires even sizes on the downsampled axes.
    """
    kernel = (2 if temporal else 1, 2, 2)
    if not blur:
        return F.avg_pool3d(x, kernel, stride=kernel)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device) / 8
    spatial = taps[:, None] * taps[None, :]                                   # (4, 4)
    weight = (taps[:, None, None] * spatial) if temporal else spatial[None]   # (4 or 1, 4, 4)
    channels = x.shape[1]
    weight = weight.to(x.dtype).expand(channels, 1, *weight.shape).contiguous()
    pad = (1, 1, 1, 1, 1, 1) if temporal else (1, 1, 1, 1, 0, 0)
    x = F.pad(x, pad, mode="replicate")                                       # (B, C, T (+2), H + 2, W + 2)
    return F.conv3d(x, weight, stride=kernel, groups=channels)


class ResBlockDown(nn.Module):
    """`(B, C_in, T, H, W) -> (B, C_out, T / ft, H / 2, W / 2)`, see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool, blur: bool, negative_slope: float):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv3d(in_channels, out_channels, 1, bias=False)
        self.temporal, self.blur, self.negative_slope = temporal, blur, negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), self.negative_slope)
        h = blur_downsample(h, self.temporal, self.blur)
        h = F.leaky_relu(self.conv2(h), self.negative_slope)
        skip = self.skip(blur_downsample(x, self.temporal, self.blur))
        return (h + skip) / math.sqrt(2.0)


def minibatch_std(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the mean (over channels and positions) of the per-group feature std as one channel.

    x (B, C, T, H, W) -> (B, C + 1, T, H, W). Groups are `group_size` consecutive clips (the largest
    divisor of B not above `group_size`, so any batch size works).
    """
    b = x.shape[0]
    g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
    y = x.float().reshape(g, b // g, *x.shape[1:])                        # (G, B/G, C, T, H, W)
    std = (y.var(dim=0, correction=0) + 1e-8).sqrt().mean(dim=(1, 2, 3, 4))  # (B/G,)
    std = std.repeat(g).to(x.dtype)                                       # clip n is in group n % (B/G)
    return torch.cat([x, std.view(b, 1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], dim=1)


class Discriminator3D(PretrainedModel):
    """Video (B, C, T, H, W) in [-1, 1] -> realness logits (B,) float32.

    T must be a multiple of `temporal_factor` and H, W of `spatial_factor` (from the config).
    """

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig):
        super().__init__(config)
        c = config.base_channels
        self.from_rgb = nn.Conv3d(config.in_channels, c, 1)
        blocks = []
        for mult, temporal in zip(config.channel_multipliers, config.temporal_downsample):
            blocks.append(ResBlockDown(c, config.base_channels * mult, temporal, config.blur, config.negative_slope))
            c = config.base_channels * mult
        self.blocks = nn.ModuleList(blocks)
        extra = 1 if config.minibatch_std_group > 0 else 0
        self.conv_out = nn.Conv3d(c + extra, c, 3, padding=1)
        self.fc = nn.Linear(c, c)
        self.logit = nn.Linear(c, 1)

    def _check(self, video: torch.Tensor) -> None:
        cfg = self.config
        if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[1] != cfg.in_channels:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise VidgenError(f"the discriminator expects video (B, {cfg.in_channels}, T, H, W), got {shape}")
        t, h, w = video.shape[2:]
        if t % cfg.temporal_factor or h % cfg.spatial_factor or w % cfg.spatial_factor:
            raise VidgenError(
                f"the discriminator needs T a multiple of {cfg.temporal_factor} and H, W multiples of "
                f"{cfg.spatial_factor}, got (T, H, W) = {(t, h, w)}")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        self._check(video)
        slope = self.config.negative_slope
        x = video.contiguous(memory_format=torch.channels_last_3d)  # fast oneDNN convs on CPU
        x = F.leaky_relu(self.from_rgb(x), slope)                   # (B, C0, T, H, W)
        for block in self.blocks:
            x = block(x)                                            # (B, Ci, T / ft, H / 2, W / 2)
        if self.config.minibatch_std_group > 0:
            x = minibatch_std(x, self.config.minibatch_std_group)   # (B, C + 1, t, h, w)
        x = F.leaky_relu(self.conv_out(x), slope)
        x = x.mean(dim=(2, 3, 4))                                   # (B, C)
        x = F.leaky_relu(self.fc(x), slope)
        return self.logit(x).squeeze(1).float()                     # (B,)


# ----------------------------------------------------------------------------- named sizes


def discriminator_tiny(**overrides) -> Discriminator3D:
    """For tests: 8 channels, 3 blocks (16x64x64 -> 4x8x8)."""
    return Discriminator3D(DiscriminatorConfig(**{
        "base_channels": 8, "channel_multipliers": (1, 2, 2), "temporal_downsample": (True, True, False),
        **overrides}))


def discriminator_shapes(**overrides) -> Discriminator3D:
    """Sized to train beside `magvit_vq_shapes` on CPU (16x64x64 clips): 4 channels at full resolution
    (where the cost is), 16/32/64/64 after the downsamplings; 0.45 M parameters."""
    return Discriminator3D(DiscriminatorConfig(**{
        "base_channels": 4, "channel_multipliers": (4, 8, 16, 16), "temporal_downsample": (True, True, False, False),
        **overrides}))
