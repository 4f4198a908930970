"""CausalConv3d: causality, padding modes, streaming == one pass, 2D -> 3D inflation."""

import pytest
import torch
import torch.nn.functional as F

from vidgen.errors import VidgenError
from vidgen.layers.causal_conv import CausalConv3d, CausalStream, inflate_conv2d_to_3d

ATOL = 1e-5  # fp32 rounding of the conv kernels (different chunk lengths may pick different algorithms)


def _video(B=2, C=3, T=7, H=8, W=10, seed=0):
    return torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("time_pad_mode", ["replicate", "zeros"])
@pytest.mark.parametrize("kernel,dilation", [(3, 1), ((3, 3, 3), (2, 1, 1)), ((2, 3, 3), 1)])
def test_future_frames_never_change_past_outputs(time_pad_mode, kernel, dilation):
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, kernel, dilation=dilation, time_pad_mode=time_pad_mode)
    x = _video()
    y = conv(x)
    assert y.shape == (2, 4, 7, 8, 10)
    for t in range(1, 7):
        x2 = x.clone()
        x2[:, :, t:] = torch.randn_like(x2[:, :, t:]) * 5  # change frames t.. only
        y2 = conv(x2)
        torch.testing.assert_close(y2[:, :, :t], y[:, :, :t], rtol=0, atol=ATOL)
        assert (y2[:, :, t] - y[:, :, t]).abs().max() > 1e-3  # the present does matter


def test_replicate_padding_repeats_the_first_frame():
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, 3)  # replicate by default
    x = _video(T=4)
    ref = F.conv3d(torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2), conv.weight, conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), ref, rtol=0, atol=ATOL)
    # A still image is a one-frame video and a constant video gives a constant output.
    image = x[:, :, :1]
    still = conv(image.expand(-1, -1, 5, -1, -1).contiguous())
    torch.testing.assert_close(still, conv(image).expand_as(still), rtol=0, atol=ATOL)


def test_zeros_padding_sees_zeros_before_the_first_frame():
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, 3, time_pad_mode="zeros")
    x = _video(T=4)
    ref = F.conv3d(F.pad(x, (0, 0, 0, 0, 2, 0)), conv.weight, conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("time_pad_mode", ["replicate", "zeros"])
@pytest.mark.parametrize("chunks", [[1, 3, 3], [4, 1, 1, 1], [2, 5], [7]])
def test_chunked_with_cache_equals_one_pass(time_pad_mode, chunks):
    torch.manual_seed(0)
    conv = CausalConv3d(3, 5, (3, 3, 3), dilation=(2, 1, 1), time_pad_mode=time_pad_mode)
    x = _video(T=7)
    full = conv(x)
    outs, cache, start = [], None, 0
    for n in chunks:
        y, cache = conv(x[:, :, start:start + n], cache, return_cache=True)
        assert cache.shape == (2, 3, 4, 8, 10)  # (kt - 1) * dilation frames
        outs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=2), full, rtol=0, atol=ATOL)


def test_chunked_with_time_stride_equals_one_pass():
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, (3, 3, 3), stride=(2, 1, 1))
    x = _video(T=8)
    full = conv(x)
    assert full.shape[2] == 4  # ceil(8 / 2); output j sees frames <= 2j
    y1, cache = conv(x[:, :, :2], return_cache=True)
    y2, cache = conv(x[:, :, 2:6], cache)
    y3, _ = conv(x[:, :, 6:], cache)
    torch.testing.assert_close(torch.cat([y1, y2, y3], dim=2), full, rtol=0, atol=ATOL)
    with pytest.raises(VidgenError, match="multiple of 2"):
        conv(x[:, :, :3], return_cache=True)


def test_stream_object_and_fused_buffer_path_match():
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, 3)
    x = _video(T=6)
    full = conv(x)
    stream, outs = CausalStream(), []
    for start in (0, 2, 4):
        chunk = x[:, :, start:start + 2]
        buffer = conv.padded_buffer(chunk)
        conv.body(buffer).copy_(chunk)
        outs.append(conv.stream_padded(buffer, stream))
        stream.next_chunk()
    torch.testing.assert_close(torch.cat(outs, dim=2), full, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros"])
@pytest.mark.parametrize("kernel", [3, (3, 5, 4)])
def test_spatial_padding_modes_keep_size(mode, kernel):
    torch.manual_seed(0)
    conv = CausalConv3d(3, 2, kernel, spatial_pad_mode=mode)
    x = _video(T=3, H=9, W=6)
    assert conv(x).shape == (2, 2, 3, 9, 6)
    if mode == "reflect" and kernel == 3:
        padded = F.pad(torch.cat([x[:, :, :1]] * 2 + [x], dim=2), (1, 1, 1, 1, 0, 0), mode="reflect")
        torch.testing.assert_close(conv(x), F.conv3d(padded, conv.weight, conv.bias), rtol=0, atol=ATOL)
    strided = CausalConv3d(3, 2, 3, stride=(1, 2, 2), spatial_pad_mode=mode)
    assert strided(x).shape == (2, 2, 3, 5, 3)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(VidgenError, match="time_pad_mode"):
        CausalConv3d(3, 3, 3, time_pad_mode="circular")
    with pytest.raises(VidgenError, match="spatial_pad_mode"):
        CausalConv3d(3, 3, 3, spatial_pad_mode="circular")
    conv = CausalConv3d(3, 3, 3)
    with pytest.raises(VidgenError, match=r"\(B, 3, T, H, W\)"):
        conv(torch.zeros(1, 4, 2, 4, 4))
    with pytest.raises(VidgenError, match="cache must have shape"):
        conv(torch.zeros(1, 3, 2, 4, 4), torch.zeros(1, 3, 1, 4, 4))


@pytest.mark.parametrize("mode", ["central", "average"])
def test_inflated_conv_on_constant_video_equals_2d_conv_per_frame(mode):
    torch.manual_seed(0)
    conv2d = torch.nn.Conv2d(3, 4, 3, padding=1)
    conv3d = CausalConv3d(3, 4, (3, 3, 3))
    with torch.no_grad():
        conv3d.weight.copy_(inflate_conv2d_to_3d(conv2d.weight, 3, mode))
        conv3d.bias.copy_(conv2d.bias)
    frame = torch.randn(2, 3, 8, 8)
    video = frame[:, :, None].expand(-1, -1, 5, -1, -1).contiguous()
    y = conv3d(video)
    for t in range(5):
        torch.testing.assert_close(y[:, :, t], conv2d(frame), rtol=0, atol=ATOL)


def test_central_inflation_uses_the_current_frame_slot():
    w2 = torch.randn(4, 3, 3, 3)
    w3 = inflate_conv2d_to_3d(w2, 4)
    assert w3.shape == (4, 3, 4, 3, 3)
    assert torch.equal(w3[:, :, -1], w2) and not w3[:, :, :-1].any()
    # Central inflation equals the 2D conv per frame on *any* video, not only constant ones.
    conv3d = CausalConv3d(3, 4, (4, 3, 3), bias=False)
    with torch.no_grad():
        conv3d.weight.copy_(w3)
    x = _video(T=5, C=3)
    y = conv3d(x)
    for t in range(5):
        torch.testing.assert_close(y[:, :, t], F.conv2d(x[:, :, t], w2, padding=1), rtol=0, atol=ATOL)
    torch.testing.assert_close(inflate_conv2d_to_3d(w2, 4, "average").sum(2), w2)
    with pytest.raises(VidgenError, match="central"):
        inflate_conv2d_to_3d(w2, 3, "middle")


def test_central_inflation_of_a_centred_kernel_uses_the_middle_slot():
    # A non-causal (time-centred) conv, as MAGVIT's 3D-VQ: the current frame is the middle slot.
    w2 = torch.randn(4, 3, 3, 3)
    w3 = inflate_conv2d_to_3d(w2, 3, causal=False)
    assert torch.equal(w3[:, :, 1], w2) and not w3[:, :, 0].any() and not w3[:, :, 2].any()
    assert torch.equal(inflate_conv2d_to_3d(w2, 4, causal=False)[:, :, 2], w2)  # even kt: kt // 2
    x = _video(T=5, C=3)
    y = F.conv3d(x, w3, padding=(1, 1, 1))
    for t in range(5):
        torch.testing.assert_close(y[:, :, t], F.conv2d(x[:, :, t], w2, padding=1), rtol=0, atol=ATOL)
    torch.testing.assert_close(inflate_conv2d_to_3d(w2, 3, "average", causal=False),
                               inflate_conv2d_to_3d(w2, 3, "average"), rtol=0, atol=0)
