"""MAGVIT's 3D-VQ video tokenizer (Yu et al., CVPR 2023, arXiv 2212.05199).

A VQGAN (Esser et al. 2021) made 3D: a CNN encoder turns a clip (B, 3, T, H, W) into a grid of
vectors (B, D, T/ft, H/fs, W/fs), a `VectorQuantizer` snaps each to one of K codes (the tokens the
masked transformer models), and a mirrored CNN decoder turns the codes back into a clip.

    encoder: conv_in -> [ResBlock x n, avg-pool down] per level -> ResBlock x n -> GN, swish, 1x1 conv
    decoder: conv_in -> ResBlock x n -> [ResBlock x n, nearest up + conv] per level -> GN, swish, conv_out

- ResBlock = GroupNorm, swish, 3x3x3 conv, GroupNorm, swish, 3x3x3 conv, plus a 1x1x1 shortcut when
  the channels change. No attention: MAGVIT's 3D-VQ is a pure CNN.
- Downsampling is average pooling: (2, 2, 2) in the shallow levels listed in `temporal_downsample`,
  (1, 2, 2) (space only) in the deeper ones, so time is compressed early while frames are cheap.
  The decoder mirrors it with nearest-neighbour upsampling followed by a conv.
- Convolutions pad by reflection (no dark border for the network to learn around; MAGVIT pads space
  this way, and time is padded alike); `causal=True` uses vidgen's `CausalConv3d` instead (past-only time
  padding, the MAGVIT-v2 choice), otherwise kernels are centred in time as in MAGVIT.

Default (`MagvitVQConfig()`, MAGVIT-B): 16x64x64 clips -> 4x8x8 = 256 tokens from a 1024-code book.

2D variant and inflation (MAGVIT Sec. 3.1). `temporal=False` builds the same network with 1-frame
kernels, per-frame GroupNorm and no temporal pooling: an image tokenizer run on every frame. Train it
on frames, then `MagvitVQ.inflate_from_2d(model2d)` builds the 3D model with each 2D kernel placed in
the centre time slot of the 3D kernel (zeros elsewhere; for `causal=True` the slot of the current
frame), and every other weight (norms, biases, codebook) copied. On a clip of identical frames the
inflated model reproduces the 2D model frame by frame: central kernels see one frame, average pooling
of equal frames and nearest upsampling are no-ops in time, and a GroupNorm over (T, H, W) of equal
frames has the statistics of one frame. On other clips the convs still act frame by frame, but
temporal pooling averages neighbouring frames and the GroupNorms use clip statistics
(`norm_scope="chunk"`): the inflated model is a starting point for 3D training, not a copy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import VidgenError
from vidgen.layers.causal_conv import CausalConv3d, inflate_conv2d_to_3d
from vidgen.layers.norms import GroupNorm3d
from vidgen.modeling import PretrainedModel
from vidgen.tokenizers.quantizers import QuantizerOutput, VectorQuantizer

__all__ = ["MagvitVQ", "MagvitVQConfig", "magvit_vq_base", "magvit_vq_shapes", "magvit_vq_tiny"]


@dataclass
class MagvitVQConfig:
    """Everything that defines a 3D-VQ tokenizer.

    in_channels: channels of the video (3, RGB in [-1, 1]).
    base_channels, channel_multipliers: level i has base_channels * channel_multipliers[i] channels;
        there are len(channel_multipliers) levels and one 2x spatial downsampling between levels, so
        the spatial factor is 2 ** (levels - 1).
    num_res_blocks: residual blocks per level (and in the middle).
    temporal_downsample: for each of the (levels - 1) downsamplings, whether it also halves time;
        the temporal factor is 2 ** (number of True).
    embed_dim: channels of a code.
    codebook_size: number of codes (the token vocabulary).
    commitment_weight, entropy_weight, entropy_temperature, l2_normalize_codes, dead_code_threshold:
        passed to `VectorQuantizer`.
    temporal: False builds the 2D (per-frame image) variant, see the module docstring.
    causal: use causal time padding (`CausalConv3d`) instead of centred kernels.
    norm_groups: GroupNorm groups (gcd(norm_groups, channels) where channels are not a multiple).
    norm_scope: statistics of the 3D model's GroupNorms: "chunk" (over T, H, W, as MAGVIT) or "frame".
        The 2D variant always uses "frame".
    """

    in_channels: int = 3
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int | tuple[int, ...] = 2
    temporal_downsample: tuple[bool, ...] = (True, True, False)
    embed_dim: int = 256
    codebook_size: int = 1024
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1
    entropy_temperature: float = 0.01
    l2_normalize_codes: bool = False
    dead_code_threshold: float = 0.0
    temporal: bool = True
    causal: bool = False
    norm_groups: int = 32
    norm_scope: Literal["chunk", "frame"] = "chunk"

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(int(m) for m in self.channel_multipliers)
        self.temporal_downsample = tuple(bool(t) for t in self.temporal_downsample)
        if not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise VidgenError(f"channel_multipliers must be a non-empty tuple of positive ints, "
                              f"got {self.channel_multipliers}")
        if len(self.temporal_downsample) != len(self.channel_multipliers) - 1:
            raise VidgenError(
                f"temporal_downsample needs one entry per downsampling (len(channel_multipliers) - 1 = "
                f"{len(self.channel_multipliers) - 1}), got {len(self.temporal_downsample)}: "
                f"{self.temporal_downsample}")
        for name in ("in_channels", "base_channels", "embed_dim", "norm_groups"):
            if getattr(self, name) < 1:
                raise VidgenError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.num_res_blocks, (list, tuple)):
            self.num_res_blocks = tuple(int(n) for n in self.num_res_blocks)
            if len(self.num_res_blocks) != len(self.channel_multipliers) or min(self.num_res_blocks) < 0 \
                    or self.num_res_blocks[-1] < 1:
                raise VidgenError(
                    f"num_res_blocks must be an int >= 1 or one int >= 0 per level ({len(self.channel_multipliers)} "
                    f"levels, the last >= 1), got {self.num_res_blocks}")
        elif self.num_res_blocks < 1:
            raise VidgenError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if self.norm_scope not in ("chunk", "frame"):
            raise VidgenError(f"norm_scope must be 'chunk' or 'frame', got {self.norm_scope!r}")

    def blocks_per_level(self) -> tuple[int, ...]:
        n = self.num_res_blocks
        return n if isinstance(n, tuple) else (n,) * len(self.channel_multipliers)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample) if self.temporal else 1


# ----------------------------------------------------------------------------- layers


class SameConv3d(nn.Conv3d):
    """3D conv centred in time and space with "same" output size, padded by reflection (replication
    where a clip or map is too small to reflect).
    `(B, C_in, T, H, W) -> (B, C_out, T, H, W)`; odd kernels only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int]):
        if any(k % 2 == 0 for k in kernel_size):
            raise VidgenError(f"SameConv3d needs odd kernel sizes, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        self.pad_t, self.pad_h, self.pad_w = (k // 2 for k in kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = (self.pad_t, self.pad_h, self.pad_w)
        if any(pads):
            # One pad op for all three axes (padding is a full copy of the activation, as costly on
            # CPU as a cheap conv). Reflection needs more than `pad` frames/pixels; T = 1 (a still
            # image) or a 1-pixel map falls back to replication.
            small = any(size <= pad for size, pad in zip(x.shape[2:], pads) if pad)
            x = F.pad(x, (self.pad_w, self.pad_w, self.pad_h, self.pad_h, self.pad_t, self.pad_t),
                      mode="replicate" if small else "reflect")
        return super().forward(x)


@dataclass(frozen=True)
class _LayerFactory:
    """Builds the convs and norms of one model, so the 2D and 3D variants share all block code."""

    temporal: bool
    causal: bool
    norm_groups: int
    norm_scope: str

    def conv(self, in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv3d:
        kt = kernel_size if self.temporal else 1
        kernel = (kt, kernel_size, kernel_size)
        if self.causal:
            return CausalConv3d(in_channels, out_channels, kernel, spatial_pad_mode="reflect",
                                time_pad_mode="replicate")
        return SameConv3d(in_channels, out_channels, kernel)

    def norm(self, channels: int) -> GroupNorm3d:
        # fused: PyTorch's fused kernel (its CPU backward is 3-5x faster, and this tokenizer spends most
        # of its time at full resolution), on centred input (exact under large activation offsets).
        return GroupNorm3d(math.gcd(self.norm_groups, channels), channels,
                           scope=self.norm_scope if self.temporal else "frame", fused=True)


class ResBlock(nn.Module):
    """GN, swish, conv, GN, swish, conv, plus a (1x1x1 conv) shortcut. `(B, C_in, T, H, W) -> (B, C_out, T, H, W)`."""

    def __init__(self, in_channels: int, out_channels: int, layers: _LayerFactory):
        super().__init__()
        self.norm1 = layers.norm(in_channels)
        self.conv1 = layers.conv(in_channels, out_channels, 3)
        self.norm2 = layers.norm(out_channels)
        self.conv2 = layers.conv(out_channels, out_channels, 3)
        self.shortcut = layers.conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Downsample(nn.Module):
    """Average pooling by (ft, 2, 2). `(B, C, T, H, W) -> (B, C, T / ft, H / 2, W / 2)`."""

    def __init__(self, temporal_factor: int):
        super().__init__()
        self.factor = (temporal_factor, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, kernel_size=self.factor, stride=self.factor)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by (ft, 2, 2), then a conv.
    `(B, C_in, T, H, W) -> (B, C_out, T * ft, 2H, 2W)`."""

    def __init__(self, in_channels: int, out_channels: int, temporal_factor: int, layers: _LayerFactory):
        super().__init__()
        self.factor = (temporal_factor, 2, 2)
        self.conv = layers.conv(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[2:]
        x = F.interpolate(x, size=(t * self.factor[0], h * 2, w * 2), mode="nearest")
        return self.conv(x)


class Encoder(nn.Module):
    """Video (B, 3, T, H, W) -> latents (B, embed_dim, T / ft, H / fs, W / fs)."""

    def __init__(self, config: MagvitVQConfig, layers: _LayerFactory):
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        self.conv_in = layers.conv(config.in_channels, widths[0], 3)
        self.levels = nn.ModuleList()
        channels = widths[0]
        per_level = config.blocks_per_level()
        for i, width in enumerate(widths):
            level = nn.Module()
            blocks = []
            for _ in range(per_level[i]):
                blocks.append(ResBlock(channels, width, layers))
                channels = width
            level.blocks = nn.ModuleList(blocks)
            if i < len(widths) - 1:
                level.down = Downsample(2 if (config.temporal and config.temporal_downsample[i]) else 1)
            self.levels.append(level)
        self.mid = nn.ModuleList(ResBlock(channels, channels, layers) for _ in range(per_level[-1]))
        self.norm_out = layers.norm(channels)
        self.conv_out = layers.conv(channels, config.embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last activations: oneDNN's 3D convs are >10x faster on CPU in this layout (and
        # cuDNN prefers it with bf16); every layer here keeps the layout it is given.
        x = self.conv_in(x.contiguous(memory_format=torch.channels_last_3d))  # (B, C0, T, H, W)
        for level in self.levels:
            for block in level.blocks:
                x = block(x)
            if hasattr(level, "down"):
                x = level.down(x)                             # (B, Ci, T / ft_i, H / 2, W / 2)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x))).contiguous()  # (B, D, t, h, w)


class Decoder(nn.Module):
    """Codes (B, embed_dim, t, h, w) -> video (B, 3, t * ft, h * fs, w * fs); the encoder mirrored."""

    def __init__(self, config: MagvitVQConfig, layers: _LayerFactory):
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        channels = widths[-1]
        self.conv_in = layers.conv(config.embed_dim, channels, 3)
        per_level = config.blocks_per_level()
        self.mid = nn.ModuleList(ResBlock(channels, channels, layers) for _ in range(per_level[-1]))
        self.levels = nn.ModuleList()
        for i in reversed(range(len(widths))):
            level = nn.Module()
            blocks = []
            for _ in range(per_level[i]):
                blocks.append(ResBlock(channels, widths[i], layers))
                channels = widths[i]
            level.blocks = nn.ModuleList(blocks)
            if i > 0:
                # The conv after upsampling already narrows to the next level's width: it runs at the
                # higher resolution, where every channel costs 4-8x more.
                level.up = Upsample(channels, widths[i - 1],
                                    2 if (config.temporal and config.temporal_downsample[i - 1]) else 1, layers)
                channels = widths[i - 1]
            self.levels.append(level)
        self.norm_out = layers.norm(channels)
        self.conv_out = layers.conv(channels, config.in_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z.contiguous(memory_format=torch.channels_last_3d))  # (B, C_last, t, h, w)
        for block in self.mid:
            x = block(x)
        for level in self.levels:
            for block in level.blocks:
                x = block(x)
            if hasattr(level, "up"):
                x = level.up(x)                               # (B, C_{i-1}, t * ft_i, 2h, 2w)
        return self.conv_out(F.silu(self.norm_out(x))).contiguous()  # (B, 3, T, H, W)


# ----------------------------------------------------------------------------- the tokenizer


class MagvitVQ(PretrainedModel):
    """MAGVIT 3D-VQ tokenizer: video (B, 3, T, H, W) in [-1, 1] <-> tokens (B, t, h, w) in [0, K).

    >>> model = MagvitVQ(MagvitVQConfig())
    >>> tokens = model.encode(video)                 # (B, 16, 3, 64, 64) -> (B, 4, 8, 8)
    >>> video_hat = model.decode_indices(tokens)     # (B, 3, 16, 64, 64), clamped to [-1, 1]
    >>> reconstruction, q = model(video)             # training: q.loss, q.perplexity, q.usage
    """

    config_class = MagvitVQConfig

    def __init__(self, config: MagvitVQConfig):
        super().__init__(config)
        layers = _LayerFactory(config.temporal, config.causal, config.norm_groups, config.norm_scope)
        self.encoder = Encoder(config, layers)
        self.quantizer = VectorQuantizer(
            config.codebook_size, config.embed_dim, commitment_weight=config.commitment_weight,
            entropy_weight=config.entropy_weight, entropy_temperature=config.entropy_temperature,
            l2_normalize=config.l2_normalize_codes, dead_code_threshold=config.dead_code_threshold)
        self.decoder = Decoder(config, layers)

    # ---- shapes

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid (t, h, w) of a (num_frames, height, width) clip (after validating it)."""
        self._check_sizes(num_frames, height, width)
        return num_frames // self.temporal_factor, height // self.spatial_factor, width // self.spatial_factor

    def _check_sizes(self, num_frames: int, height: int, width: int) -> None:
        ft, fs = self.temporal_factor, self.spatial_factor
        if num_frames < 1 or num_frames % ft:
            raise VidgenError(f"the number of frames must be a positive multiple of {ft} (the temporal "
                              f"compression of this tokenizer), got {num_frames}")
        for name, size in (("height", height), ("width", width)):
            if size < fs or size % fs:
                raise VidgenError(f"{name} must be a positive multiple of {fs} (the spatial compression of "
                                  f"this tokenizer), got {size}")

    def _check_video(self, video: torch.Tensor) -> None:
        if not isinstance(video, torch.Tensor):
            raise VidgenError(f"video must be a torch.Tensor (B, C, T, H, W), got {type(video).__name__}")
        c = self.config.in_channels
        if video.ndim != 5 or video.shape[1] != c:
            raise VidgenError(f"video must have shape (B, {c}, T, H, W), got {tuple(video.shape)}")
        if not video.is_floating_point():
            raise VidgenError(f"video must be a float tensor in [-1, 1], got dtype {video.dtype}")
        self._check_sizes(*video.shape[2:])

    # ---- encode / decode

    def encode_latents(self, video: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output before quantization: (B, 3, T, H, W) -> (B, D, t, h, w)."""
        self._check_video(video)
        return self.encoder(video)

    def quantize(self, latents: torch.Tensor) -> QuantizerOutput:
        return self.quantizer(latents)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video (B, 3, T, H, W) in [-1, 1] -> token ids (B, T / ft, H / fs, W / fs), int64."""
        return self.quantizer(self.encode_latents(video)).indices

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, t, h, w) -> video (B, 3, t * ft, h * fs, w * fs), unclamped (training)."""
        if codes.ndim != 5 or codes.shape[1] != self.config.embed_dim:
            raise VidgenError(f"codes must have shape (B, {self.config.embed_dim}, t, h, w), got {tuple(codes.shape)}")
        return self.decoder(codes)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, t, h, w) -> video (B, 3, t * ft, h * fs, w * fs) clamped to [-1, 1]."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 4:
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise VidgenError(f"indices must be a tensor of shape (B, t, h, w), got {shape}")
        codes = self.quantizer.indices_to_codes(indices)                     # (B, D, t, h, w), float32
        dtype = next(self.decoder.parameters()).dtype
        return self.decoder(codes.to(dtype)).clamp(-1.0, 1.0)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Video (B, 3, T, H, W) -> (reconstruction (B, 3, T, H, W), quantizer output)."""
        q = self.quantizer(self.encode_latents(video))
        return self.decoder(q.quantized), q

    def last_layer_weight(self) -> torch.Tensor:
        """The decoder's output conv weight (VQGAN's adaptive GAN weight balances gradients there)."""
        return self.decoder.conv_out.weight

    # ---- 2D -> 3D

    @classmethod
    def inflate_from_2d(cls, model2d: MagvitVQ, mode: Literal["central", "average"] = "central",
                        **config_changes) -> MagvitVQ:
        """A 3D tokenizer initialised from a trained 2D one (`temporal=False`), MAGVIT's recipe.

        Every conv kernel (O, I, 1, k, k) becomes (O, I, k, k, k): "central" puts it in the centre time
        slot (the current-frame slot if `causal`) with zeros elsewhere; "average" spreads it evenly
        (kernel / k in every slot). All other weights are copied. `config_changes` override fields of
        the 3D config (e.g. `causal=True`); fields that change shapes must be left alone.
        """
        if not isinstance(model2d, MagvitVQ) or model2d.config.temporal:
            raise VidgenError("inflate_from_2d needs a 2D MagvitVQ (built with temporal=False), got "
                              + ("a 3D one" if isinstance(model2d, MagvitVQ) else type(model2d).__name__))
        if mode not in ("central", "average"):
            raise VidgenError(f"inflation mode must be 'central' or 'average', got {mode!r}")
        config = dataclasses.replace(model2d.config, **{"temporal": True, **config_changes})
        model3d = cls(config).to(next(model2d.parameters()).device)
        source = model2d.state_dict()
        inflated = {}
        for name, target in model3d.state_dict().items():
            weight = source.get(name)
            if weight is None or weight.ndim != target.ndim:
                raise VidgenError(f"inflate_from_2d: the 2D model has no weight matching {name!r}; "
                                  f"the configs must differ only in temporal/causal/norm_scope")
            if weight.shape == target.shape:
                inflated[name] = weight.clone()
            elif weight.ndim == 5 and weight.shape[2] == 1 and weight.shape[:2] == target.shape[:2] \
                    and weight.shape[3:] == target.shape[3:]:
                inflated[name] = inflate_conv2d_to_3d(weight[:, :, 0], target.shape[2], mode, causal=config.causal)
            else:
                raise VidgenError(f"inflate_from_2d: cannot map {name} of shape {tuple(weight.shape)} onto "
                                  f"{tuple(target.shape)}")
        model3d.load_state_dict(inflated)
        return model3d


# ----------------------------------------------------------------------------- named sizes


def magvit_vq_base(**overrides) -> MagvitVQ:
    """The default config, MAGVIT-B-like (64 base channels, multipliers 1-2-2-4, 2 blocks per level,
    256-d codes): 16x128x128 -> 4x16x16 (16x64x64 -> 4x8x8) tokens from 1024 codes."""
    return MagvitVQ(MagvitVQConfig(**overrides))


def magvit_vq_tiny(**overrides) -> MagvitVQ:
    """0.12 M parameters with the default compression (4x8x8 tokens for 16x64x64): for tests."""
    return MagvitVQ(MagvitVQConfig(**{
        "base_channels": 8, "channel_multipliers": (1, 1, 2, 2), "num_res_blocks": 1, "embed_dim": 16,
        "codebook_size": 128, "norm_groups": 4, **overrides}))


def magvit_vq_shapes(**overrides) -> MagvitVQ:
    """Sized to train on 2 CPU cores in ~20 minutes on 16x64x64 Shapes clips (4x8x8 tokens, 1024
    codes, 2.1 M parameters). Widths 8/16/32/64 and no residual block at full resolution: on CPU the
    cost is dominated by the 16x64x64 level, so the first block is skipped there (the first pooling
    follows conv_in directly) and the decoder's last upsampling conv already narrows to 8 channels.

    norm_groups = 2 (4 channels per group at the 8-channel levels): with 8 groups every norm there is
    an instance norm of each channel, which on a flat-coloured object erases how strongly a channel
    sees the colour (only its sign survives), so hues came back wrong (docs/notes/magvit-tokenizer-
    diagnosis.md). The session-2 bundle was trained with 8 and keeps it in its config.json."""
    return MagvitVQ(MagvitVQConfig(**{
        "base_channels": 8, "channel_multipliers": (1, 2, 4, 8), "num_res_blocks": (0, 1, 2, 2),
        "embed_dim": 32, "codebook_size": 1024, "norm_groups": 2, **overrides}))
