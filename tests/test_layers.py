"""Shared layers: shapes, masking semantics and numerics."""

import math

import pytest
import torch
import torch.nn.functional as F

from vidgen.errors import VidgenError
from vidgen.layers.adaln import AdaLayerNorm, AdaLNZero, ExpertAdaLN, modulate
from vidgen.layers.attention import Attention, FeedForward
from vidgen.layers.embeddings import TimestepEmbedding, sincos_1d_table, sincos_3d_table, sinusoidal_embedding
from vidgen.layers.masks import (
    causal_mask,
    combine_masks,
    grid_coordinates,
    local_window_mask,
    padding_mask,
    prefix_lm_mask,
)
from vidgen.layers.pseudo3d import Pseudo3DAttention, Pseudo3DConv
from vidgen.layers.rope import RotaryEmbedding1D, RotaryEmbedding3D, apply_rope, split_head_dim_3d


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def reference_attention(attn: Attention, x, context=None, mask=None):
    """Plain softmax attention written out, to check the SDPA path."""
    src = x if context is None else context
    b, n, _ = x.shape
    h, d = attn.num_heads, attn.head_dim
    q = attn.norm_q(attn.to_q(x).view(b, n, h, d).transpose(1, 2))
    k = attn.norm_k(attn.to_k(src).view(b, -1, h, d).transpose(1, 2))
    v = attn.to_v(src).view(b, -1, h, d).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    out = logits.softmax(-1) @ v
    return attn.to_out(out.transpose(1, 2).reshape(b, n, h * d))


# ----------------------------------------------------------------------------- masks


def test_causal_and_prefix_masks():
    assert torch.equal(causal_mask(4), torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    m = prefix_lm_mask(5, 3)
    assert m[:3, :3].all()  # prefix is bidirectional
    assert not m[0, 3] and not m[3, 4] and m[4, :].all()  # targets causal, never seen by the prefix
    batched = prefix_lm_mask(5, torch.tensor([1, 3]))
    assert batched.shape == (2, 1, 5, 5)
    assert torch.equal(batched[1, 0], m) and torch.equal(batched[0, 0], prefix_lm_mask(5, 1))
    with pytest.raises(VidgenError, match="prefix_length=7"):
        prefix_lm_mask(5, 7)


def test_local_window_mask_along_each_axis():
    grid = (2, 4, 4)
    coords = grid_coordinates(grid)
    for axis_index, axis in enumerate("thw"):
        m = local_window_mask(grid, axis, window=2)
        i, j = torch.nonzero(m, as_tuple=True)
        others = [a for a in range(3) if a != axis_index]
        assert (coords[i][:, others] == coords[j][:, others]).all()
        assert ((coords[i][:, axis_index] // 2) == (coords[j][:, axis_index] // 2)).all()
        assert m.diagonal().all()
    # window 2 along w on a 4-wide grid: each token sees itself and one neighbour
    assert local_window_mask(grid, "w", 2).sum(-1).eq(2).all()
    with pytest.raises(VidgenError, match="axis='x'"):
        local_window_mask(grid, "x", 2)


def test_combine_masks_ands_and_skips_none():
    a, b = causal_mask(3), torch.ones(3, 3, dtype=torch.bool)
    b[:, 0] = False
    assert combine_masks(None, None) is None
    assert torch.equal(combine_masks(a, None, b), a & b)


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("qk_norm", [None, "layer", "rms"])
def test_attention_matches_reference_with_masks(qk_norm):
    attn = Attention(32, 4, qk_norm=qk_norm).eval()
    x = torch.randn(2, 6, 32)
    for mask in (None, causal_mask(6), prefix_lm_mask(6, torch.tensor([2, 4]))):
        torch.testing.assert_close(attn(x, mask=mask), reference_attention(attn, x, mask=mask), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn(x, is_causal=True), attn(x, mask=causal_mask(6)), atol=1e-6, rtol=1e-6)


def test_causal_attention_ignores_the_future():
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 5, 16)
    y = x.clone()
    y[:, 3:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(attn(x, is_causal=True)[:, :3], attn(y, is_causal=True)[:, :3])
    assert not torch.allclose(attn(x)[:, :3], attn(y)[:, :3])  # full attention does see it


def test_padding_mask_makes_padded_keys_irrelevant():
    attn = Attention(16, 2, context_dim=8).eval()
    x, ctx = torch.randn(2, 4, 16), torch.randn(2, 5, 8)
    keep = torch.tensor([[True] * 5, [True, True, True, False, False]])
    changed = ctx.clone()
    changed[1, 3:] = 100 * torch.randn(2, 8)
    out_a = attn(x, context=ctx, mask=padding_mask(keep))
    out_b = attn(x, context=changed, mask=padding_mask(keep))
    torch.testing.assert_close(out_a, out_b)
    # and equals attention over the unpadded context alone
    torch.testing.assert_close(out_a[1:], attn(x[1:], context=ctx[1:, :3]), atol=1e-5, rtol=1e-5)
    with pytest.raises(VidgenError, match="must be boolean"):
        attn(x, context=ctx, mask=keep.float()[:, None, None, :])


def test_attention_rejects_bad_sizes():
    with pytest.raises(VidgenError, match="dim=30"):
        Attention(30, 4)
    with pytest.raises(VidgenError, match="qk_norm='batch'"):
        Attention(32, 4, qk_norm="batch")


def test_rope_on_tail_tokens_only():
    attn = Attention(32, 2).eval()
    rope = RotaryEmbedding1D(16)(3)
    x = torch.randn(1, 5, 32)
    out = attn(x, rope=rope)
    assert out.shape == x.shape
    # rotating the last 3 tokens with angle 0 everywhere is the identity
    zeros = (torch.ones(3, 16), torch.zeros(3, 16))
    torch.testing.assert_close(attn(x, rope=zeros), attn(x))
    with pytest.raises(VidgenError, match="RoPE covers 9 tokens"):
        attn(x, rope=RotaryEmbedding1D(16)(9))


def test_feed_forward_shape():
    assert FeedForward(8, 16)(torch.randn(2, 3, 8)).shape == (2, 3, 8)


# ----------------------------------------------------------------------------- rotary embeddings


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding1D(8)
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        cos, sin = rope(torch.tensor([float(i), float(j)]))
        rq = apply_rope(q[None], cos[:1], sin[:1])
        rk = apply_rope(k[None], cos[1:], sin[1:])
        return (rq * rk).sum()

    torch.testing.assert_close(score(3, 1), score(10, 8), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_rope_preserves_norm_and_matches_complex_rotation():
    cos, sin = RotaryEmbedding1D(6)(4)
    x = torch.randn(2, 4, 6)
    out = apply_rope(x, cos, sin)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    # interleaved pairs as complex numbers rotated by e^{i * angle}
    angles = torch.arange(4.0)[:, None] * 10000 ** (-torch.arange(0, 6, 2) / 6)
    expected = torch.view_as_real(torch.view_as_complex(x.view(2, 4, 3, 2).contiguous()) * torch.polar(
        torch.ones_like(angles), angles)).flatten(-2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_rope_3d_split_and_layout():
    assert split_head_dim_3d(64) == (16, 24, 24)
    rope = RotaryEmbedding3D(64)
    grid = rope.grid(2, 3, 4)
    assert grid.shape == (24, 3) and grid[-1].tolist() == [1, 2, 3]
    cos, sin = rope(grid)
    assert cos.shape == sin.shape == (24, 64)
    # time channels depend only on t, height channels only on h
    t_part = cos[:, :16].reshape(2, 3, 4, 16)
    assert torch.allclose(t_part[:, :1], t_part) and not torch.allclose(t_part[:1], t_part[1:])
    h_part = cos[:, 16:40].reshape(2, 3, 4, 24)
    assert torch.allclose(h_part[:, :, :1], h_part) and torch.allclose(h_part[:1], h_part)
    with pytest.raises(VidgenError, match="must be \\(N, 3\\)"):
        rope(torch.zeros(5, 2))
    with pytest.raises(VidgenError, match="axes_dims"):
        RotaryEmbedding3D(64, axes_dims=(16, 16, 16))


# ----------------------------------------------------------------------------- embeddings


def test_sinusoidal_embedding_matches_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 250.0, 999.0])
    for flip, shift in ((True, 0.0), (False, 1.0)):
        ours = sinusoidal_embedding(t, 64, flip_sin_to_cos=flip, freq_shift=shift)
        theirs = get_timestep_embedding(t, 64, flip_sin_to_cos=flip, downscale_freq_shift=shift)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert sinusoidal_embedding(t, 7).shape == (4, 7)
    with pytest.raises(VidgenError, match="1-D"):
        sinusoidal_embedding(t[None], 8)


def test_timestep_embedding_and_sincos_tables():
    emb = TimestepEmbedding(32, frequency_dim=16)
    assert emb(torch.tensor([1, 500])).shape == (2, 32)
    table = sincos_1d_table(torch.arange(3.0), 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    t3 = sincos_3d_table(torch.arange(2.0), torch.arange(3.0), torch.arange(4.0), 32)
    assert t3.shape == (24, 32)
    grid = t3.reshape(2, 3, 4, 32)
    assert torch.allclose(grid[:, :1, :1, :8], grid[:, :, :, :8])  # temporal quarter depends on t only
    assert torch.allclose(grid[:1, :, :, 8:], grid[:, :, :, 8:])  # spatial part independent of t


# ----------------------------------------------------------------------------- AdaLN


def test_adaln_zero_starts_as_identity_and_modulates_after_training_step():
    block = AdaLNZero(8, 4)
    x, c = torch.randn(2, 3, 8), torch.randn(2, 4)
    normed, gate = block(x, c)
    assert torch.equal(gate, torch.zeros(2, 1, 8))  # x + gate * f(...) == x at init
    torch.testing.assert_close(normed, F.layer_norm(x, (8,), eps=1e-6))
    ada = AdaLayerNorm(8, 4)
    torch.testing.assert_close(ada(x, c), F.layer_norm(x, (8,), eps=1e-6))
    shift, scale = torch.randn(2, 8), torch.randn(2, 8)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])


def test_expert_adaln_modulates_groups_separately():
    expert = ExpertAdaLN(8, 4, num_groups=2, zero_init=False)
    text, video, c = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 4)
    (n_text, n_video), (g_text, g_video) = expert((text, video), c)
    assert n_text.shape == text.shape and n_video.shape == video.shape and g_text.shape == (2, 1, 8)
    chunks = expert.modulation(c)
    base = expert.norm(video)
    torch.testing.assert_close(n_video, base * (1 + chunks[4][:, None]) + chunks[3][:, None])
    assert not torch.allclose(g_text, g_video)
    # the same token gets a different modulation depending on its group
    (a, b), _ = expert((video[:, :3], video[:, :3]), c)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="2 token groups"):
        expert((text,), c)


# ----------------------------------------------------------------------------- pseudo-3D


def test_pseudo3d_conv_starts_as_per_frame_2d_conv():
    conv = Pseudo3DConv(3, 6)
    x = torch.randn(2, 3, 4, 8, 8)
    per_frame = torch.stack([conv.spatial(x[:, :, t]) for t in range(4)], dim=2)
    torch.testing.assert_close(conv(x), per_frame, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        conv.temporal.weight.add_(0.1)
    out = conv(x)
    assert not torch.allclose(out, per_frame)
    assert out.shape == (2, 6, 4, 8, 8)


def test_pseudo3d_attention_temporal_branch_starts_at_zero():
    attn = Pseudo3DAttention(8, 2)
    x = torch.randn(1, 8, 3, 4, 4)
    torch.testing.assert_close(attn(x), attn(x, temporal=False))
    with torch.no_grad():
        attn.temporal.to_out.weight.normal_()
    y = attn(x)
    assert not torch.allclose(y, attn(x, temporal=False))
    # the temporal branch mixes frames: changing frame 2 changes frame 0's output
    x2 = x.clone()
    x2[:, :, 2] += torch.randn_like(x2[:, :, 2])
    assert not torch.allclose(attn(x2)[:, :, 0], y[:, :, 0])
    # spatial attention alone does not
    torch.testing.assert_close(attn(x2, temporal=False)[:, :, 0], attn(x, temporal=False)[:, :, 0])
