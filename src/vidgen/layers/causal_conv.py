"""Causal 3D convolution: output frame t only sees input frames <= t.

Every video tokenizer in vidgen (CogVideoX's KL VAE, MAGVIT's 3D-VQ, VideoPoet's causal LFQ) is built on
`CausalConv3d`. Time is padded on the *past* side only, with (kt - 1) * dilation frames, so

    y[t] = sum_k w[k] * x[t - (kt - 1 - k) * dilation]         (k = 0 .. kt-1; the last tap is "now")

and the first frame of a clip is processed exactly like an image: with replicate padding the past is
the first frame repeated, so a one-frame clip (T = 1) is a still image and a video starts with one.

Streaming. Because the past is all a causal conv needs, a long video can be processed chunk by chunk:
the last (kt - 1) * dilation input frames of a chunk (the "cache") replace the past padding of the next
chunk, and the concatenated outputs equal one pass over the whole video exactly:

    y1, cache = conv(x[:, :, :8], return_cache=True)      # start of the video: past = padding
    y2, cache = conv(x[:, :, 8:], cache)                   # continue: past = cached frames
    torch.equal(torch.cat([y1, y2], 2), conv(x))           # True (up to conv algorithm rounding)

With a time stride st, every chunk but the last must hold a multiple of st frames (checked).

`CausalStream` carries the caches of *all* causal convs of a model between chunks, so a model's
`forward(x, stream)` streams without threading a cache argument through every block.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import VidgenError

TimePadMode = Literal["replicate", "zeros"]
SpatialPadMode = Literal["zeros", "reflect", "replicate"]

__all__ = ["CausalConv3d", "CausalStream", "conv3d", "empty_like_layout", "inflate_conv2d_to_3d"]


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a dense (B, C, T, H, W) tensor laid out channels-last (C varies fastest in memory)."""
    return x.ndim == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)


def empty_like_layout(x: torch.Tensor, *shape: int) -> torch.Tensor:
    """An uninitialised 5D tensor of `shape` with the dtype, device and memory layout of `x`.

    vidgen's video models run inference channels-last on CPU (oneDNN's 3D convs are 20-30% faster
    there at high resolution); buffers allocated along the way keep that layout.
    """
    fmt = torch.channels_last_3d if is_channels_last(x) else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _as_triple(v: int | tuple[int, ...]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: tuple[int, int, int] | int = 1, padding: tuple[int, int, int] | int = 0,
           dilation: tuple[int, int, int] | int = 1) -> torch.Tensor:
    """`F.conv3d` (groups=1) that always takes oneDNN's kernel for float32 on CPU.

    PyTorch picks oneDNN with a heuristic written for images (batch > 1 or N*C*D*H > 20480), which sends
    a single video with few channels (B=1 inference, small models) to its reference kernel, 10-25x
    slower here. Same numbers up to float rounding; autograd works; other devices, dtypes and
    autocast go through `F.conv3d` unchanged. 1x1x1 kernels too (the reference is faster for those),
    except on channels-last input, where they are a plain matmul over channels.
    """
    if (max(weight.shape[2:]) == 1 and _as_triple(stride) == (1, 1, 1) and _as_triple(padding) == (0, 0, 0)
            and is_channels_last(x)):
        # A 1x1x1 conv on channels-last memory is a matmul over the channel axis, with no relayout.
        y = F.linear(x.permute(0, 2, 3, 4, 1), weight.flatten(1), bias)  # (B, T, H, W, C_out)
        return y.permute(0, 4, 1, 2, 3)  # (B, C_out, T, H, W), channels-last
    if (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and max(weight.shape[2:]) > 1 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")):
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last_3d)):
            x = x.contiguous()
        return torch.mkldnn_convolution(x, weight, bias, _as_triple(padding), _as_triple(stride),
                                        _as_triple(dilation), 1)
    return F.conv3d(x, weight, bias, stride, padding, dilation)


def _triple(value: int | tuple[int, int, int], name: str) -> tuple[int, int, int]:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 1:
        raise VidgenError(f"{name} must be a positive int or a (t, h, w) triple of positive ints, got {value}")
    return value  # type: ignore[return-value]


class CausalStream:
    """State carried from one chunk of a video to the next by every causal conv of a model.

    `caches[conv]` holds the last past frames that conv saw; `at_start` is True while the chunk being
    processed contains the first frame of the video (layers that treat that frame specially, e.g.
    CogVideoX's temporal up/downsampling, read it). Create one per video, pass it to every chunk in
    order, and call `next_chunk()` after each chunk.
    """

    def __init__(self) -> None:
        self.caches: dict[nn.Module, torch.Tensor] = {}
        self.at_start = True

    def next_chunk(self) -> None:
        self.at_start = False


class CausalConv3d(nn.Conv3d):
    """3D convolution, causal in time, "same" size in space.

    Args:
        in_channels, out_channels: channels of the input and the output.
        kernel_size: int or (kt, kh, kw).
        stride: int or (st, sh, sw). A time stride st gives ceil(T / st) output frames; frame j sees
            input frames <= j * st.
        dilation: int or (dt, dh, dw).
        time_pad_mode: what stands for the frames before the first one: "replicate" (the first frame
            repeated, so a still image is a constant video) or "zeros".
        spatial_pad_mode: "zeros", "reflect" or "replicate"; the (k - 1) * dilation padding pixels are
            split between both sides (symmetric for odd kernels, one more on the right/bottom if even).

    Shapes: x (B, C_in, T, H, W) -> y (B, C_out, ceil(T / st), ceil(H / sh), ceil(W / sw)).
    The weight is an ordinary `nn.Conv3d` weight (C_out, C_in, kt, kh, kw), whose last time slot
    multiplies the current frame.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int],
                 stride: int | tuple[int, int, int] = 1, dilation: int | tuple[int, int, int] = 1,
                 time_pad_mode: TimePadMode = "replicate", spatial_pad_mode: SpatialPadMode = "zeros",
                 bias: bool = True):
        kernel_size = _triple(kernel_size, "kernel_size")
        stride = _triple(stride, "stride")
        dilation = _triple(dilation, "dilation")
        if time_pad_mode not in ("replicate", "zeros"):
            raise VidgenError(f"time_pad_mode must be 'replicate' or 'zeros', got {time_pad_mode!r}")
        if spatial_pad_mode not in ("zeros", "reflect", "replicate"):
            raise VidgenError(
                f"spatial_pad_mode must be 'zeros', 'reflect' or 'replicate', got {spatial_pad_mode!r}")
        pads = [(k - 1) * d for k, d in zip(kernel_size[1:], dilation[1:])]
        # (left, right) per spatial axis; F.pad wants them in (w_left, w_right, h_left, h_right) order.
        self.spatial_padding = (pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2)
        # Symmetric zero padding is free inside the convolution; anything else is an explicit F.pad.
        self._pad_inside = spatial_pad_mode == "zeros" and all(p % 2 == 0 for p in pads)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                         padding=(0, pads[0] // 2, pads[1] // 2) if self._pad_inside else 0, bias=bias)
        self.time_padding = (kernel_size[0] - 1) * dilation[0]
        self.time_pad_mode = time_pad_mode
        self.spatial_pad_mode = spatial_pad_mode

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", time_padding={self.time_padding} (past), "
                f"time_pad_mode={self.time_pad_mode}, spatial_pad_mode={self.spatial_pad_mode}")

    # ---- the simple API

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None,
                return_cache: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Convolve `x` (B, C_in, T, H, W).

        `cache` (B, C_in, time_padding, H, W): the last input frames of the previous chunk, used as
        the past instead of padding. Returns y, or `(y, new_cache)` when a cache is given or
        `return_cache=True` (the first chunk of a stream).
        """
        stream = cache is not None or return_cache
        if self.time_padding == 0:
            self._check_input(x, None, stream)
            y = self._conv(x)
            # An empty cache (not a view of x, which would keep x alive).
            return (y, x.new_empty(*x.shape[:2], 0, *x.shape[3:])) if stream else y
        buffer = self.padded_buffer(x)
        self.body(buffer).copy_(x)
        return self.forward_padded(buffer, cache, return_cache=stream)

    # ---- the fused API: a producer (e.g. a norm) writes straight into the padded input buffer

    def padded_buffer(self, x: torch.Tensor) -> torch.Tensor:
        """An uninitialised (B, C_in, time_padding + T, H, W) buffer shaped for input like `x`.

        Fill `body(buffer)` (the last T frames) and call `forward_padded(buffer, cache)`: this saves the
        copy that concatenating the past frames in front of `x` would cost.
        """
        B, C, T, H, W = x.shape
        return empty_like_layout(x, B, C, self.time_padding + T, H, W)

    def body(self, buffer: torch.Tensor) -> torch.Tensor:
        """The view of `buffer` that holds the current chunk's frames: (B, C_in, T, H, W)."""
        return buffer[:, :, self.time_padding:]

    def forward_padded(self, buffer: torch.Tensor, cache: torch.Tensor | None = None,
                       return_cache: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Fill the past frames of a `padded_buffer` (from `cache`, or padding) and convolve it."""
        p = self.time_padding
        stream = cache is not None or return_cache
        self._check_input(self.body(buffer), cache, stream)
        if cache is not None:
            buffer[:, :, :p].copy_(cache)
        elif self.time_pad_mode == "replicate":
            buffer[:, :, :p].copy_(buffer[:, :, p:p + 1].expand(-1, -1, p, -1, -1))
        else:
            buffer[:, :, :p].zero_()
        new_cache = buffer[:, :, buffer.shape[2] - p:].clone() if stream else None
        y = self._conv(buffer)
        return (y, new_cache) if stream else y

    def stream(self, x: torch.Tensor, stream: CausalStream | None) -> torch.Tensor:
        """`forward` with the cache kept in a `CausalStream` (None: one pass, no cache)."""
        if stream is None:
            return self(x)
        y, stream.caches[self] = self(x, stream.caches.get(self), return_cache=True)
        return y

    def stream_padded(self, buffer: torch.Tensor, stream: CausalStream | None) -> torch.Tensor:
        """`forward_padded` with the cache kept in a `CausalStream` (None: one pass, no cache)."""
        if stream is None:
            return self.forward_padded(buffer)
        y, stream.caches[self] = self.forward_padded(buffer, stream.caches.get(self), return_cache=True)
        return y

    # ---- internals

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if not self._pad_inside and any(self.spatial_padding):
            mode = "constant" if self.spatial_pad_mode == "zeros" else self.spatial_pad_mode
            x = F.pad(x, (*self.spatial_padding, 0, 0), mode=mode)
        return conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def _check_input(self, x: torch.Tensor, cache: torch.Tensor | None, stream: bool) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise VidgenError(f"CausalConv3d expects input (B, {self.in_channels}, T, H, W), "
                              f"got shape {tuple(x.shape)}")
        if x.shape[2] == 0:
            raise VidgenError("CausalConv3d got an input with T = 0 frames; at least one frame is needed")
        if stream and x.shape[2] % self.stride[0] != 0:
            raise VidgenError(
                f"streaming with time stride {self.stride[0]} needs chunks whose frame count is a "
                f"multiple of {self.stride[0]}, got a chunk of {x.shape[2]} frames")
        if cache is not None:
            B, C, _, H, W = x.shape
            expected = (B, C, self.time_padding, H, W)
            if tuple(cache.shape) != expected:
                raise VidgenError(f"CausalConv3d cache must have shape {expected} (the last "
                                  f"{self.time_padding} input frames), got {tuple(cache.shape)}")


def inflate_conv2d_to_3d(conv2d_weight: torch.Tensor, kt: int, mode: Literal["central", "average"] = "central",
                         causal: bool = True) -> torch.Tensor:
    """Turn a 2D kernel (O, I, kh, kw) into a 3D kernel (O, I, kt, kh, kw).

    "central": the 2D kernel goes into one time slot and the others are zero, so the 3D conv starts out
        as the 2D conv applied to every frame (MAGVIT initialises its 3D-VQ from an image tokenizer this
        way). That slot is the one that multiplies frame t when computing output t: for a *causal*
        kernel (`causal=True`, `CausalConv3d`, which pads the past only) the last one (index kt - 1);
        for a centred kernel (`causal=False`, time padded on both sides) the middle one (kt // 2).
    "average": the 2D kernel divided by kt in every slot: on a video that is constant in time (and
        with replicate time padding) the 3D conv again equals the 2D conv per frame. `causal` does not
        matter here.
    """
    if conv2d_weight.ndim != 4:
        raise VidgenError(f"conv2d_weight must have shape (O, I, kh, kw), got {tuple(conv2d_weight.shape)}")
    if kt < 1:
        raise VidgenError(f"kt must be >= 1, got {kt}")
    O, I, kh, kw = conv2d_weight.shape
    if mode == "central":
        weight = conv2d_weight.new_zeros(O, I, kt, kh, kw)
        weight[:, :, kt - 1 if causal else kt // 2] = conv2d_weight
        return weight
    if mode == "average":
        return conv2d_weight.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
    raise VidgenError(f"mode must be 'central' or 'average', got {mode!r}")
