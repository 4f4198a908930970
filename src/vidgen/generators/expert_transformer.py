"""CogVideoX's expert transformer (arXiv 2408.06072): one full 3D attention over `[text; video]`.

The idea of the paper in four lines:
    tokens = [text_proj(text); patchify(latents)]              # one sequence, two modalities
    for block in blocks:                                       # expert AdaLN: per-modality shift/scale/gate
        tokens += gate_{text|video} * attention(modulate_{text|video}(norm(tokens)))    # full 3D attention
        tokens += gate_{text|video} * mlp(modulate_{text|video}(norm(tokens)))
Text and video share every attention and MLP weight; only the AdaLN modulation (predicted from the
timestep embedding) is separate per modality, which is what lets one transformer align two very
different feature spaces. Attention is full over all text and video tokens (no spatial/temporal
factorisation), with LayerNorm on queries and keys to keep the logits bounded.

Positions of video tokens come either from a 3D sin-cos table added at patch embedding
(CogVideoX-2B, `position_embedding="sincos"`) or from 3D RoPE inside attention (CogVideoX-5B and 1.5,
`position_embedding="rope"`); text tokens get none. CogVideoX 1.5 also patches time
(`patch_size_t`) and patchifies with a Linear instead of a per-frame Conv2d.

Weights of diffusers' `CogVideoXTransformer3DModel` load through `from_pretrained` (see
`convert_diffusers_state_dict`). Layout differs at the boundary: vidgen takes latents as
`(B, C, T, H, W)`, diffusers as `(B, T, C, H, W)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn

from vidgen.errors import CheckpointError, VidgenError
from vidgen.layers.adaln import AdaLayerNorm, ExpertAdaLN
from vidgen.layers.attention import Attention, FeedForward
from vidgen.layers.embeddings import TimestepEmbedding, sincos_3d_table
from vidgen.layers.rope import RotaryEmbedding3D
from vidgen.modeling import (
    CONFIG_NAME,
    PretrainedModel,
    config_from_dict,
    load_safetensors,
    read_json,
    resolve_model_path,
)

POSITION_EMBEDDINGS = ("sincos", "rope")
DIFFUSERS_CLASS_NAME = "CogVideoXTransformer3DModel"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


# ----------------------------------------------------------------------------- config


@dataclass
class CogVideoXTransformerConfig:
    """Everything that defines a CogVideoX transformer. Model width is `num_heads * head_dim`."""

    in_channels: int = 16               # latent channels of the VAE
    out_channels: int | None = None     # None: same as in_channels
    text_dim: int = 4096                # width of the text encoder's token embeddings
    num_heads: int = 30
    head_dim: int = 64
    num_layers: int = 30
    time_embed_dim: int = 512           # width of the timestep embedding that drives every AdaLN
    ff_hidden_dim: int | None = None    # None: 4 * dim
    patch_size: int = 2                 # spatial patch (p x p latent pixels per token)
    patch_size_t: int | None = None     # temporal patch (CogVideoX 1.5); None: one token row per frame
    position_embedding: str = "sincos"  # "sincos" (2B: added at patch embedding) or "rope" (5B: in attention)
    spatial_interpolation_scale: float = 1.875   # sin-cos positions are arange(n) / scale
    temporal_interpolation_scale: float = 1.0
    # RoPE: the token grid (h, w) at which positions are plain integers. Other grids are fitted inside
    # it (aspect kept, centred) and their positions stretched to span it (CogVideoX 1.0). None: integer
    # positions for every grid (CogVideoX 1.5, and vidgen's own models).
    rope_base_grid: tuple[int, int] | None = None
    rope_theta: float = 10000.0
    ofs_embed_dim: int | None = None    # CogVideoX 1.5 I2V "ofs" conditioning; must equal time_embed_dim
    qk_norm: bool = True
    attention_bias: bool = True
    patch_bias: bool = True
    norm_eps: float = 1e-5
    norm_elementwise_affine: bool = True
    flip_sin_to_cos: bool = True        # timestep features as [cos | sin]
    freq_shift: float = 0.0
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("in_channels", "text_dim", "num_heads", "head_dim", "num_layers", "time_embed_dim",
                     "patch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise VidgenError(f"{name}={value!r} must be a positive integer")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise VidgenError(f"position_embedding={self.position_embedding!r} is not one of {POSITION_EMBEDDINGS}")
        if self.position_embedding == "sincos" and self.dim % 16:
            raise VidgenError(f"sin-cos positions need num_heads * head_dim divisible by 16, got {self.dim}")
        if self.position_embedding == "rope" and self.head_dim % 2:
            raise VidgenError(f"3D RoPE needs an even head_dim, got {self.head_dim}")
        if self.patch_size_t is not None and self.patch_size_t < 1:
            raise VidgenError(f"patch_size_t={self.patch_size_t!r} must be None or a positive integer")
        if self.ofs_embed_dim is not None and self.ofs_embed_dim != self.time_embed_dim:
            raise VidgenError(f"ofs_embed_dim={self.ofs_embed_dim} must equal time_embed_dim={self.time_embed_dim} "
                              "(the two embeddings are summed)")
        if self.rope_base_grid is not None:
            self.rope_base_grid = tuple(int(v) for v in self.rope_base_grid)
            if len(self.rope_base_grid) != 2 or min(self.rope_base_grid) < 1:
                raise VidgenError(f"rope_base_grid={self.rope_base_grid} must be None or (height, width) >= 1")

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def output_channels(self) -> int:
        return self.out_channels or self.in_channels

    @property
    def temporal_patch(self) -> int:
        return self.patch_size_t or 1


# ----------------------------------------------------------------------------- positions


def _fit_region(grid: tuple[int, int], base: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Region `((top, left), (bottom, right))` of the `base` grid that a `grid` of another aspect ratio
    covers once resized to fit inside it and centred (CogVideoX's resize-crop for RoPE)."""
    (h, w), (base_h, base_w) = grid, base
    if h / w > base_h / base_w:
        height, width = base_h, round(base_h / h * w)
    else:
        height, width = round(base_w / w * h), base_w
    top, left = round((base_h - height) / 2.0), round((base_w - width) / 2.0)
    return (top, left), (top + height, left + width)


def rope_positions(t: int, h: int, w: int, base_grid: tuple[int, int] | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """`(t*h*w, 3)` RoPE positions of a token grid, flattened t-h-w.

    With `base_grid` the spatial positions are stretched to span the grid's region of the base grid
    (so a model trained at one resolution sees familiar position ranges at another). The formula is
    diffusers' (`linspace(start, stop * (n - 1) / n, n)`); it equals the original
    `start + i * (stop - start) / n` whenever the region starts at 0, e.g. for the training grid.
    """
    if base_grid is None:
        return RotaryEmbedding3D.grid(t, h, w, device=device)
    (top, left), (bottom, right) = _fit_region((h, w), base_grid)
    pos_h = torch.linspace(top, bottom * (h - 1) / h, h, device=device, dtype=torch.float32)
    pos_w = torch.linspace(left, right * (w - 1) / w, w, device=device, dtype=torch.float32)
    pos_t = torch.arange(t, device=device, dtype=torch.float32)
    grid = torch.meshgrid(pos_t, pos_h, pos_w, indexing="ij")
    return torch.stack(grid, dim=-1).reshape(-1, 3)


def _leave_text_unrotated(rope: tuple[torch.Tensor, torch.Tensor], num_text: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Video-token RoPE `(N, d)` -> RoPE over the whole `[text; video]` sequence `(L + N, d)`, the
    identity rotation (cos 1, sin 0) on text tokens. Rotating the full sequence costs a little
    arithmetic on L text tokens but saves slicing q and k and concatenating them back in every block."""
    cos, sin = rope
    return (torch.cat([cos.new_ones(num_text, cos.shape[1]), cos]),
            torch.cat([sin.new_zeros(num_text, sin.shape[1]), sin]))


# ----------------------------------------------------------------------------- blocks


class VideoPatchEmbed(nn.Module):
    """Latents `(B, C, T, H, W)` -> tokens `(B, T' * H' * W', D)`, flattened t-h-w.

    Without a temporal patch each frame is patchified by a strided Conv2d (CogVideoX 1.0); with one,
    `pt x p x p` cubes are flattened as (c, pt, ph, pw) and projected by a Linear (CogVideoX 1.5).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, patch_size_t: int | None, bias: bool = True):
        super().__init__()
        self.patch_size, self.patch_size_t = patch_size, patch_size_t
        if patch_size_t is None:
            self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        else:
            self.proj = nn.Linear(in_channels * patch_size_t * patch_size * patch_size, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p = x.shape[0], self.patch_size
        if self.patch_size_t is None:
            x = self.proj(rearrange(x, "b c t h w -> (b t) c h w"))  # (B*T, D, H', W')
            return rearrange(x, "(b t) d h w -> b (t h w) d", b=b)
        x = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=self.patch_size_t, ph=p, pw=p)
        return self.proj(x)


class ExpertTransformerBlock(nn.Module):
    """One CogVideoX block: expert AdaLN -> full attention over [text; video] -> gated residual, then
    the same around the MLP. `forward(text (B, L, D), video (B, N, D), cond (B, Dt)) -> (text, video)`."""

    def __init__(self, config: CogVideoXTransformerConfig):
        super().__init__()
        dim, cond_dim = config.dim, config.time_embed_dim
        self.norm1 = ExpertAdaLN(dim, cond_dim, num_groups=2, eps=config.norm_eps,
                                 elementwise_affine=config.norm_elementwise_affine)
        self.attn = Attention(dim, config.num_heads, head_dim=config.head_dim,
                              qk_norm="layer" if config.qk_norm else None, qkv_bias=config.attention_bias,
                              eps=1e-6, dropout=config.dropout)
        self.norm2 = ExpertAdaLN(dim, cond_dim, num_groups=2, eps=config.norm_eps,
                                 elementwise_affine=config.norm_elementwise_affine)
        self.ff = FeedForward(dim, config.ff_hidden_dim, dropout=config.dropout)

    def forward(self, text: torch.Tensor, video: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        num_text = text.shape[1]
        normed, (text_gate, video_gate) = self.norm1((text, video), cond)
        joint = torch.cat(normed, dim=1)  # (B, L+N, D)
        del normed  # drop the per-group copies before the sub-layer allocates (lower peak memory)
        out = self.attn(joint, mask=mask, rope=rope)  # (B, L+N, D)
        del joint
        # gated residuals x + gate * out, each fused into one kernel (addcmul)
        text = torch.addcmul(text, text_gate, out[:, :num_text])
        video = torch.addcmul(video, video_gate, out[:, num_text:])

        normed, (text_gate, video_gate) = self.norm2((text, video), cond)
        joint = torch.cat(normed, dim=1)
        del normed
        out = self.ff(joint)  # (B, L+N, D)
        del joint
        return torch.addcmul(text, text_gate, out[:, :num_text]), torch.addcmul(video, video_gate, out[:, num_text:])


# ----------------------------------------------------------------------------- the model


class CogVideoXTransformer(PretrainedModel):
    """CogVideoX denoiser: `forward(latents (B, C, T, H, W), text_embeddings (B, L, D_text), timesteps (B,))`
    -> prediction `(B, C_out, T, H, W)` (what it predicts, noise/velocity, is the training recipe's choice).
    """

    config_class = CogVideoXTransformerConfig

    def __init__(self, config: CogVideoXTransformerConfig):
        super().__init__(config)
        dim = config.dim
        self.patch_embed = VideoPatchEmbed(config.in_channels, dim, config.patch_size, config.patch_size_t,
                                           bias=config.patch_bias)
        self.text_proj = nn.Linear(config.text_dim, dim)
        self.embedding_dropout = nn.Dropout(config.dropout)
        # Timestep features are as wide as the model (CogVideoX's choice), then mapped to time_embed_dim.
        self.time_embed = TimestepEmbedding(config.time_embed_dim, frequency_dim=dim,
                                            flip_sin_to_cos=config.flip_sin_to_cos, freq_shift=config.freq_shift)
        self.ofs_embed = None
        if config.ofs_embed_dim:
            self.ofs_embed = TimestepEmbedding(config.ofs_embed_dim, frequency_dim=config.ofs_embed_dim,
                                               flip_sin_to_cos=config.flip_sin_to_cos, freq_shift=config.freq_shift)
        self.rope_3d = RotaryEmbedding3D(config.head_dim, theta=config.rope_theta) \
            if config.position_embedding == "rope" else None
        self.blocks = nn.ModuleList(ExpertTransformerBlock(config) for _ in range(config.num_layers))
        self.norm_final = nn.LayerNorm(dim, eps=config.norm_eps, elementwise_affine=config.norm_elementwise_affine)
        self.norm_out = AdaLayerNorm(dim, config.time_embed_dim, eps=config.norm_eps,
                                     elementwise_affine=config.norm_elementwise_affine)
        patch_volume = config.temporal_patch * config.patch_size ** 2
        self.proj_out = nn.Linear(dim, patch_volume * config.output_channels)
        self._position_cache: dict[tuple, Any] = {}
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier for projections (as DiT); adaLN-Zero: every block's gates and the final modulation and
        projection start at zero, so the untrained model is the identity on its residual streams and
        predicts zeros (ExpertAdaLN and AdaLayerNorm zero their own modulation)."""
        modulations = {id(m.modulation.linear) for m in self.modules() if isinstance(m, (ExpertAdaLN, AdaLayerNorm))}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in modulations and module is not self.proj_out:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    # ---- positions

    def token_grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Latent size -> token grid `(T', H', W')`."""
        p = self.config.patch_size
        return t // self.config.temporal_patch, h // p, w // p

    def position_table(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """3D sin-cos table `(T'*H'*W', D)` added to video tokens (cached per grid and device)."""
        key = ("sincos", grid, str(device))
        if key not in self._position_cache:
            c = self.config
            t, h, w = (torch.arange(n, dtype=torch.float32, device=device) for n in grid)
            self._position_cache[key] = sincos_3d_table(t / c.temporal_interpolation_scale,
                                                        h / c.spatial_interpolation_scale,
                                                        w / c.spatial_interpolation_scale, c.dim).to(device)
        return self._position_cache[key]

    def rotary_embedding(self, grid: tuple[int, int, int], device: torch.device
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """3D RoPE `(cos, sin)`, each `(T'*H'*W', head_dim)`, for the video tokens (cached)."""
        key = ("rope", grid, str(device))
        if key not in self._position_cache:
            positions = rope_positions(*grid, base_grid=self.config.rope_base_grid, device=device)
            self._position_cache[key] = tuple(x.to(device) for x in self.rope_3d(positions))
        return self._position_cache[key]

    # ---- forward

    def forward(self, latents: torch.Tensor, text_embeddings: torch.Tensor, timesteps: torch.Tensor | float,
                text_mask: torch.Tensor | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                ofs: torch.Tensor | float | None = None) -> torch.Tensor:
        """
        latents: (B, C, T, H, W) noisy latents; H, W divisible by patch_size, T by patch_size_t.
        text_embeddings: (B, L, text_dim) token embeddings of the prompt.
        timesteps: (B,) diffusion timesteps (a scalar is used for the whole batch).
        text_mask: (B, L) bool, True for real tokens; padding tokens are never attended to.
        rope: optional (cos, sin), each (T'*H'*W', head_dim), replacing the internally computed 3D RoPE
            (e.g. positions built exactly as a diffusers pipeline builds them).
        ofs: (B,) or scalar, only for models with `ofs_embed_dim` (CogVideoX 1.5 I2V).
        Returns (B, C_out, T, H, W).
        """
        c = self.config
        b, _, t, h, w = self._check_inputs(latents, text_embeddings)
        grid = self.token_grid(t, h, w)
        timesteps = self._per_sample("timesteps", timesteps, b, latents.device)

        cond = self.time_embed(timesteps)  # (B, Dt)
        if self.ofs_embed is not None:
            if ofs is None:
                raise VidgenError("this model has an ofs embedding (ofs_embed_dim is set): pass `ofs`")
            cond = cond + self.ofs_embed(self._per_sample("ofs", ofs, b, latents.device))

        dtype = self.text_proj.weight.dtype  # inputs follow the weights (a no-op under autocast with fp32 weights)
        text = self.text_proj(text_embeddings.to(dtype))  # (B, L, D)
        video = self.patch_embed(latents.to(dtype))  # (B, N, D)
        if c.position_embedding == "sincos":
            video = video + self.position_table(grid, latents.device).to(video.dtype)
        text, video = self.embedding_dropout(text), self.embedding_dropout(video)

        if c.position_embedding == "rope":
            rope = self._check_rope(rope, grid) if rope is not None else self.rotary_embedding(grid, latents.device)
            rope = _leave_text_unrotated(rope, text.shape[1])
        elif rope is not None:
            raise VidgenError("`rope` was passed but this model uses sin-cos positions (position_embedding='sincos')")
        mask = self._attention_mask(text_mask, text.shape[1], video.shape[1], b)

        for block in self.blocks:
            text, video = block(text, video, cond, mask=mask, rope=rope)

        video = self.norm_out(self.norm_final(video), cond)
        video = self.proj_out(video)  # (B, N, C_out * pt * p * p)
        t_tokens, h_tokens, w_tokens = grid
        return rearrange(video, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t_tokens, h=h_tokens,
                         w=w_tokens, pt=c.temporal_patch, ph=c.patch_size, pw=c.patch_size)

    # ---- input checks

    def _check_inputs(self, latents: torch.Tensor, text: torch.Tensor) -> tuple[int, int, int, int, int]:
        c = self.config
        if not isinstance(latents, torch.Tensor) or latents.dim() != 5:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise VidgenError(f"latents must be a (B, C, T, H, W) tensor, got {shape}")
        b, ch, t, h, w = latents.shape
        if ch != c.in_channels:
            raise VidgenError(f"latents have {ch} channels but the model takes in_channels={c.in_channels} "
                              f"(shape (B, C, T, H, W) = {tuple(latents.shape)})")
        if h % c.patch_size or w % c.patch_size:
            raise VidgenError(f"latent height and width ({h}, {w}) must be divisible by patch_size={c.patch_size}")
        if t % c.temporal_patch:
            raise VidgenError(f"latent frames T={t} must be divisible by patch_size_t={c.patch_size_t}")
        if not isinstance(text, torch.Tensor) or text.dim() != 3:
            shape = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise VidgenError(f"text_embeddings must be a (B, L, text_dim) tensor, got {shape}")
        if text.shape[-1] != c.text_dim:
            raise VidgenError(f"text_embeddings have width {text.shape[-1]} but the model takes text_dim={c.text_dim}")
        if text.shape[0] != b:
            raise VidgenError(f"text_embeddings batch {text.shape[0]} does not match latents batch {b}")
        return b, ch, t, h, w

    @staticmethod
    def _per_sample(name: str, value: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
        value = torch.as_tensor(value, device=device)
        if value.dim() == 0:
            value = value.expand(batch)
        if value.shape != (batch,):
            raise VidgenError(f"{name} must be a scalar or shaped (B,) = ({batch},), got {tuple(value.shape)}")
        return value

    def _check_rope(self, rope, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        n = grid[0] * grid[1] * grid[2]
        expected = (n, self.config.head_dim)
        if len(rope) != 2 or any(tuple(x.shape) != expected for x in rope):
            shapes = [tuple(x.shape) for x in rope] if isinstance(rope, (tuple, list)) else type(rope).__name__
            raise VidgenError(f"rope must be (cos, sin), each (T'*H'*W', head_dim) = {expected}, got {shapes}")
        return tuple(rope)

    @staticmethod
    def _attention_mask(text_mask: torch.Tensor | None, num_text: int, num_video: int, batch: int
                        ) -> torch.Tensor | None:
        """Key-padding mask `(B, 1, 1, L + N)` (True = may attend), or None when nothing is padded."""
        if text_mask is None:
            return None
        if text_mask.dtype != torch.bool or tuple(text_mask.shape) != (batch, num_text):
            raise VidgenError(f"text_mask must be a bool tensor shaped (B, L) = ({batch}, {num_text}), got "
                              f"{text_mask.dtype} {tuple(text_mask.shape)}")
        if bool(text_mask.all()):  # an all-True mask changes nothing: keep the unmasked (faster) kernel path
            return None
        video_keys = text_mask.new_ones(batch, num_video)
        return torch.cat([text_mask, video_keys], dim=1)[:, None, None, :]

    # ---- checkpoints (ours and diffusers')

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> CogVideoXTransformer:
        """Load a vidgen checkpoint, or a diffusers `CogVideoXTransformer3DModel` folder
        (`config.json` + `diffusion_pytorch_model.safetensors`, possibly sharded), converting it."""
        directory = resolve_model_path(name_or_path)
        if read_json(directory / CONFIG_NAME).get("_class_name") != DIFFUSERS_CLASS_NAME:
            return super().from_pretrained(directory, device=device, dtype=dtype)
        model = cls(config_from_diffusers(read_json(directory / CONFIG_NAME), source=str(directory / CONFIG_NAME)))
        state = convert_diffusers_state_dict(_load_diffusers_weights(directory), model.config)
        model.load_state_dict_strict(state, source=str(directory))
        model = model.to(device=device)
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model.eval()


# ----------------------------------------------------------------------------- diffusers interop


def config_from_diffusers(data: dict[str, Any], source: str = "diffusers config") -> CogVideoXTransformerConfig:
    """Map a diffusers `CogVideoXTransformer3DModel` config.json onto ours."""
    unsupported = {
        "use_learned_positional_embeddings": (data.get("use_learned_positional_embeddings", False), False),
        "activation_fn": (data.get("activation_fn", "gelu-approximate"), "gelu-approximate"),
        "timestep_activation_fn": (data.get("timestep_activation_fn", "silu"), "silu"),
    }
    for key, (value, allowed) in unsupported.items():
        if value != allowed:
            raise CheckpointError(f"{source}: {key}={value!r} is not supported (only {allowed!r})")
    rope = bool(data.get("use_rotary_positional_embeddings", False))
    patch_size = data.get("patch_size", 2)
    patch_size_t = data.get("patch_size_t")
    # CogVideoX 1.0 pipelines stretch RoPE positions onto the training grid; 1.5 uses plain integers.
    base_grid = (data.get("sample_height", 60) // patch_size, data.get("sample_width", 90) // patch_size) \
        if rope and patch_size_t is None else None
    mapped = {  # ours: theirs (with diffusers' defaults for keys a config leaves out)
        "in_channels": data.get("in_channels", 16),
        "out_channels": data.get("out_channels", 16),
        "text_dim": data.get("text_embed_dim", 4096),
        "num_heads": data.get("num_attention_heads", 30),
        "head_dim": data.get("attention_head_dim", 64),
        "num_layers": data.get("num_layers", 30),
        "time_embed_dim": data.get("time_embed_dim", 512),
        "patch_size": patch_size,
        "patch_size_t": patch_size_t,
        "position_embedding": "rope" if rope else "sincos",
        "spatial_interpolation_scale": data.get("spatial_interpolation_scale", 1.875),
        "temporal_interpolation_scale": data.get("temporal_interpolation_scale", 1.0),
        "rope_base_grid": base_grid,
        "ofs_embed_dim": data.get("ofs_embed_dim"),
        "attention_bias": data.get("attention_bias", True),
        "patch_bias": data.get("patch_bias", True),
        "norm_eps": data.get("norm_eps", 1e-5),
        "norm_elementwise_affine": data.get("norm_elementwise_affine", True),
        "flip_sin_to_cos": data.get("flip_sin_to_cos", True),
        "freq_shift": data.get("freq_shift", 0),
        "dropout": data.get("dropout", 0.0),
    }
    return config_from_dict(CogVideoXTransformerConfig, mapped, source=source)


def _swap_expert_halves(tensor: torch.Tensor) -> torch.Tensor:
    """diffusers orders the expert modulation (video shift, scale, gate, text shift, scale, gate);
    ExpertAdaLN's group order is (text, video): swap the two halves of the output rows."""
    video, text = tensor.chunk(2, dim=0)
    return torch.cat([text, video], dim=0)


def convert_diffusers_state_dict(state: dict[str, torch.Tensor], config: CogVideoXTransformerConfig
                                 ) -> dict[str, torch.Tensor]:
    """diffusers `CogVideoXTransformer3DModel` weights -> `CogVideoXTransformer` weights, name by name."""
    names = {  # ours: theirs
        "patch_embed.proj": "patch_embed.proj",
        "text_proj": "patch_embed.text_proj",
        "time_embed.linear_1": "time_embedding.linear_1",
        "time_embed.linear_2": "time_embedding.linear_2",
        "norm_final": "norm_final",
        "norm_out.modulation.linear": "norm_out.linear",
        "norm_out.norm": "norm_out.norm",
        "proj_out": "proj_out",
    }
    if config.ofs_embed_dim:
        names["ofs_embed.linear_1"] = "ofs_embedding.linear_1"
        names["ofs_embed.linear_2"] = "ofs_embedding.linear_2"
    for i in range(config.num_layers):
        ours, theirs = f"blocks.{i}", f"transformer_blocks.{i}"
        names.update({
            f"{ours}.norm1.modulation.linear": f"{theirs}.norm1.linear",
            f"{ours}.norm1.norm": f"{theirs}.norm1.norm",
            f"{ours}.attn.to_q": f"{theirs}.attn1.to_q",
            f"{ours}.attn.to_k": f"{theirs}.attn1.to_k",
            f"{ours}.attn.to_v": f"{theirs}.attn1.to_v",
            f"{ours}.attn.norm_q": f"{theirs}.attn1.norm_q",
            f"{ours}.attn.norm_k": f"{theirs}.attn1.norm_k",
            f"{ours}.attn.to_out": f"{theirs}.attn1.to_out.0",
            f"{ours}.norm2.modulation.linear": f"{theirs}.norm2.linear",
            f"{ours}.norm2.norm": f"{theirs}.norm2.norm",
            f"{ours}.ff.fc1": f"{theirs}.ff.net.0.proj",
            f"{ours}.ff.fc2": f"{theirs}.ff.net.2",
        })
    converted, used = {}, set()
    for ours, theirs in names.items():
        for suffix in ("weight", "bias"):
            key = f"{theirs}.{suffix}"
            if key not in state:
                continue  # bias-free or affine-free layers; load_state_dict_strict reports real gaps
            value = state[key]
            if ".norm1.linear" in key or ".norm2.linear" in key:
                value = _swap_expert_halves(value)
            converted[f"{ours}.{suffix}"] = value
            used.add(key)
    # The sin-cos table is recomputed; anything else left over is a weight we would silently drop.
    leftover = sorted(k for k in set(state) - used if k != "patch_embed.pos_embedding")
    if leftover:
        shown = ", ".join(leftover[:10]) + (f", ... ({len(leftover) - 10} more)" if len(leftover) > 10 else "")
        raise CheckpointError(f"diffusers weights not understood by CogVideoXTransformer: {shown}")
    return converted


def _load_diffusers_weights(directory: Path) -> dict[str, torch.Tensor]:
    """`diffusion_pytorch_model.safetensors`, or the shards listed in its `.index.json`."""
    single = directory / DIFFUSERS_WEIGHTS_NAME
    index = directory / f"{DIFFUSERS_WEIGHTS_NAME}.index.json"
    if single.is_file():
        return load_safetensors(single)
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as error:
            raise CheckpointError(f"cannot read shard index {index}: {error}") from None
        state = {}
        for shard in shards:
            state.update(load_safetensors(directory / shard))
        return state
    raise CheckpointError(f"{directory} has a diffusers config but no {DIFFUSERS_WEIGHTS_NAME} "
                          f"(or its .index.json); only safetensors weights are loaded")


# ----------------------------------------------------------------------------- named sizes


def cogvideox_transformer_tiny(**overrides) -> CogVideoXTransformer:
    """A ~57k-parameter model for tests (RoPE positions, 2 layers, 2 heads of 16)."""
    return CogVideoXTransformer(replace(CogVideoXTransformerConfig(
        in_channels=4, text_dim=32, num_heads=2, head_dim=16, num_layers=2, time_embed_dim=32, patch_size=2,
        position_embedding="rope"), **overrides))


def cogvideox_transformer_shapes(latent_channels: int = 16, **overrides) -> CogVideoXTransformer:
    """The bundled "shapes" model (5.6M parameters with 16 latent channels): 5x8x8 latents (17x64x64
    video) -> 5x4x4 = 80 video tokens, MiniLM text (384-d), 3D RoPE; sized to train in ~40 min on 2 CPU
    cores and to sample 50 guided steps in well under 3 s."""
    return CogVideoXTransformer(replace(CogVideoXTransformerConfig(
        in_channels=latent_channels, text_dim=384, num_heads=3, head_dim=64, num_layers=6, time_embed_dim=192,
        patch_size=2, position_embedding="rope"), **overrides))


__all__ = [
    "CogVideoXTransformer",
    "CogVideoXTransformerConfig",
    "ExpertTransformerBlock",
    "VideoPatchEmbed",
    "cogvideox_transformer_shapes",
    "cogvideox_transformer_tiny",
    "config_from_diffusers",
    "convert_diffusers_state_dict",
    "rope_positions",
]
