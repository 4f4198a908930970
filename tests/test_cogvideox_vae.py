"""CogVideoX 3D causal KL VAE: diffusers interop, chunking/tiling/slicing, shapes, errors, checkpoints."""

import json

import pytest
import torch
import torch.nn.functional as F

from vidgen.errors import CheckpointError, VidgenError
from vidgen.tokenizers.cogvideox_vae import (
    CogVideoXVAE,
    CogVideoXVAEConfig,
    cogvideox_vae_shapes,
    cogvideox_vae_tiny,
    frame_chunks,
)

INTEROP_ATOL = 1e-4  # the brief's bound; measured ~1e-5 (different but equivalent op orders, fp32)
CHUNK_ATOL = 2e-5  # chunked vs one pass with frame statistics: only conv-algorithm rounding differs


def _perturb_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial norm affine parameters, so their mapping is tested too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and "conv" not in name and "to_scale_shift" not in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def _video(B, T, H, W, seed=0):
    return torch.rand(B, 3, T, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def diffusers_pair(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    theirs = diffusers.AutoencoderKLCogVideoX(
        block_out_channels=(8, 16, 16, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1).eval()
    _perturb_norms(theirs)
    folder = tmp_path_factory.mktemp("diffusers_vae")
    theirs.save_pretrained(folder)
    ours = CogVideoXVAE.from_pretrained(folder)
    return theirs, ours, folder


@pytest.mark.parametrize("T", [9, 1, 17])
def test_matches_diffusers_encode_and_decode(diffusers_pair, T):
    theirs, ours, _ = diffusers_pair
    assert ours.config.norm_scope == "chunk" and ours.config.block_out_channels == (8, 16, 16, 16)
    video = _video(1, T, 16, 24)
    with torch.no_grad():
        their_posterior = theirs.encode(video).latent_dist
        posterior = ours.encode_posterior(video)
        assert posterior.mean.shape == (1, 4, 1 + (T - 1) // 4, 2, 3)
        assert (posterior.mean - their_posterior.mean).abs().max() <= INTEROP_ATOL
        assert (posterior.logvar - their_posterior.logvar).abs().max() <= INTEROP_ATOL
        assert torch.equal(ours.encode(video), posterior.mean)
        latents = their_posterior.mean
        their_video = theirs.decode(latents).sample
        video_out = ours.decode(latents)
    assert video_out.shape == their_video.shape == (1, 3, T, 16, 24)
    assert (video_out - their_video).abs().max() <= INTEROP_ATOL


def test_to_diffusers_round_trip(diffusers_pair):
    diffusers = pytest.importorskip("diffusers")
    theirs, ours, _ = diffusers_pair
    kwargs, state = ours.to_diffusers()
    rebuilt = diffusers.AutoencoderKLCogVideoX(**kwargs).eval()
    rebuilt.load_state_dict(state, strict=True)
    for key, value in theirs.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_from_pretrained_reads_a_pipeline_folder_and_rejects_unsupported_configs(diffusers_pair, tmp_path):
    _, ours, folder = diffusers_pair
    pipeline = tmp_path / "pipeline"
    (pipeline / "vae").mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (pipeline / "vae" / name).write_bytes((folder / name).read_bytes())
    (pipeline / "model_index.json").write_text("{}")
    loaded = CogVideoXVAE.from_pretrained(pipeline)
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    config = json.loads((folder / "config.json").read_text())
    config["use_quant_conv"] = True
    (pipeline / "vae" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="use_quant_conv"):
        CogVideoXVAE.from_pretrained(pipeline)
    (pipeline / "vae" / "config.json").write_text((folder / "config.json").read_text())
    (pipeline / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="safetensors"):
        CogVideoXVAE.from_pretrained(pipeline)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = cogvideox_vae_tiny().eval()
    _perturb_norms(model)
    return model


def test_chunked_encode_decode_equal_one_pass(tiny):
    video = _video(2, 17, 16, 16)
    with torch.no_grad():
        one_pass = tiny.encode(video, chunk_frames=16)
        for chunk in (4, 8, 12):
            assert (tiny.encode(video, chunk_frames=chunk) - one_pass).abs().max() <= CHUNK_ATOL
        latents = torch.randn_like(one_pass)
        one_pass = tiny.decode(latents, chunk_latents=4)
        for chunk in (1, 2, 3):
            assert (tiny.decode(latents, chunk_latents=chunk) - one_pass).abs().max() <= CHUNK_ATOL


def test_chunk_scope_depends_on_chunking_frame_scope_does_not(tiny):
    chunk_model = cogvideox_vae_tiny(norm_scope="chunk").eval()
    chunk_model.load_state_dict(tiny.state_dict())
    latents = torch.randn(1, 4, 5, 2, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (chunk_model.decode(latents, chunk_latents=1) - chunk_model.decode(latents, chunk_latents=4))
    assert diff.abs().max() > 1e-3  # why diffusers' chunking must be reproduced for its weights


def test_training_forward_matches_inference_path(tiny):
    video = _video(1, 5, 16, 16)
    recon, posterior = tiny(video, sample=False)  # autograd path (unfused ops)
    recon.mean().backward()
    assert tiny.encoder.conv_in.weight.grad is not None
    tiny.zero_grad(set_to_none=True)
    with torch.no_grad():
        fused = tiny.decode(tiny.encode(video))
        assert (fused - recon).abs().max() <= CHUNK_ATOL
        assert (tiny.encode(video) - posterior.mean).abs().max() <= CHUNK_ATOL


def test_noise_augmented_decoding_adds_noise_relative_to_the_latents_std(tiny):
    video = _video(2, 5, 16, 16)
    with torch.no_grad():
        clean, posterior = tiny(video, sample=False)
        noisy, _ = tiny(video, sample=False, generator=torch.Generator().manual_seed(5), decoder_noise=0.5)
        again, _ = tiny(video, sample=False, generator=torch.Generator().manual_seed(5), decoder_noise=0.5)
        # The documented recipe, drawn by hand from the same generator: u ~ U(0, 1) per clip, then N(0, I).
        g = torch.Generator().manual_seed(5)
        z = posterior.mean
        u = torch.rand((2, 1, 1, 1, 1), generator=g)
        level = u * 0.5 * z.std(dim=(1, 2, 3, 4), keepdim=True)
        expected = tiny.decoder(z + level * torch.randn(z.shape, generator=g))
    assert torch.equal(noisy, again)
    assert (noisy - expected).abs().max() <= 1e-6
    assert (noisy - clean).abs().max() > 1e-3
    with pytest.raises(VidgenError, match=r"decoder_noise=-0.1 must be in \[0, 10\]"):
        tiny(video, decoder_noise=-0.1)


def test_encoder_is_causal(tiny):
    video = _video(1, 13, 16, 16)
    changed = video.clone()
    changed[:, :, 5:] = -changed[:, :, 5:]  # frames 5.. only
    with torch.no_grad():
        a, b = tiny.encode(video), tiny.encode(changed)
    # latent i sees frames <= 4i: latents 0 and 1 (frames 0..4) are unchanged, latent 2 changes
    assert (a[:, :, :2] - b[:, :, :2]).abs().max() <= CHUNK_ATOL
    assert (a[:, :, 2] - b[:, :, 2]).abs().max() > 1e-3


def test_batch_slicing_is_exact(tiny):
    video = _video(3, 5, 16, 16)
    with torch.no_grad():
        latents = tiny.encode(video)
        assert (tiny.encode(video, batch_size=1) - latents).abs().max() <= CHUNK_ATOL
        assert (tiny.decode(latents, batch_size=2) - tiny.decode(latents)).abs().max() <= CHUNK_ATOL


def test_tiling_blends_a_local_map_exactly(tiny):
    """The tiling machinery (tile placement, output offsets, blend weights) is exact for a map that is
    local to each 8x8 block: any error left by tiling a real VAE comes from the VAE, not the blending."""

    def local_encoder(x, stream):  # (B, 3, T, H, W) -> (B, 8, T', H/8, W/8), like the tiny encoder
        frames = x[:, :, 0::4] if stream.at_start else x[:, :, 3::4]
        return F.avg_pool3d(frames, (1, 8, 8)).repeat(1, 3, 1, 1, 1)[:, :8] * 2

    video = _video(2, 9, 40, 56)
    expected = local_encoder(video, type("S", (), {"at_start": True}))
    got = tiny._process(video, local_encoder, 8, 4, 4, 1 / 8, tile_sample_size=24, tile_overlap=16,
                        batch_size=1, encoding=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_tiled_vae_is_close_to_untiled(tiny):
    """Tiling a VAE is approximate: each tile has its own GroupNorm statistics and sees zeros beyond
    its border, and this random-weight decoder looks ~10 latent pixels around each output pixel
    (nine 3x3 convs before its first upsampling) where a 96 px tile holds 12. So the bound is loose:
    mean error <= 25% of the output's mean magnitude with 96 px tiles on 128 px frames (measured
    12-16% on two seeds), and larger tiles must do better than smaller ones (measured 28-32% with
    64 px tiles). With one tile covering the frame the result is exact. Trained VAEs, whose useful
    receptive field is far smaller, tile much better (diffusers uses 240x360 px tiles for CogVideoX)."""
    video = _video(1, 5, 128, 128)
    with torch.no_grad():
        latents = tiny.encode(video)
        full = tiny.decode(latents)
        assert torch.equal(tiny.decode(latents, tile_sample_size=128), full)
        large = tiny.decode(latents, tile_sample_size=96, tile_overlap=32)
        small = tiny.decode(latents, tile_sample_size=64, tile_overlap=32)
        encoded = tiny.encode(video, tile_sample_size=96, tile_overlap=32)
    error = (large - full).abs().mean() / full.abs().mean()
    assert error < 0.25
    assert error < (small - full).abs().mean() / full.abs().mean()
    assert (encoded - latents).abs().mean() / latents.abs().mean() < 0.25


def test_shape_rules(tiny):
    assert tiny.config.spatial_compression == 8 and tiny.config.temporal_compression == 4
    assert tiny.latent_shape(49, 480, 720) == (13, 60, 90)
    assert tiny.latent_shape(1, 64, 64) == (1, 8, 8)  # an image is a one-frame video
    assert tiny.video_shape(13, 60, 90) == (49, 480, 720)
    with torch.no_grad():
        for T in (1, 5, 9):
            latents = tiny.encode(_video(1, T, 8, 16))
            assert latents.shape == (1, 4, 1 + (T - 1) // 4, 1, 2)
            assert tiny.decode(latents).shape == (1, 3, T, 8, 16)
    shapes = cogvideox_vae_shapes()
    assert shapes.latent_shape(17, 64, 64) == (5, 8, 8) and shapes.config.latent_channels == 16
    assert frame_chunks(17, 8) == [(0, 9), (9, 17)]
    assert frame_chunks(13, 8) == [(0, 13)]  # diffusers' rule: the remainder joins the first chunk
    assert frame_chunks(5, 2) == [(0, 3), (3, 5)]
    assert frame_chunks(1, 2) == [(0, 1)]


def test_bad_inputs_raise_clear_errors(tiny):
    with pytest.raises(VidgenError, match=r"T=8 .*4k \+ 1 \(1, 5, 9"):
        tiny.encode(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(VidgenError, match=r"height=12 .*multiple of the spatial compression 8"):
        tiny.encode(torch.zeros(1, 3, 5, 12, 16))
    with pytest.raises(VidgenError, match=r"width=20"):
        tiny.encode(torch.zeros(1, 3, 5, 16, 20))
    with pytest.raises(VidgenError, match="float tensor"):
        tiny.encode(torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8))
    with pytest.raises(VidgenError, match="3 channels"):
        tiny.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(VidgenError, match=r"\(B, C, T, H, W\)"):
        tiny.encode(torch.zeros(3, 5, 16, 16))
    with pytest.raises(VidgenError, match="4 channels"):
        tiny.decode(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(VidgenError, match="chunk_frames must be a multiple of the temporal compression 4"):
        tiny.encode(torch.zeros(1, 3, 5, 16, 16), chunk_frames=6)
    with pytest.raises(VidgenError, match="tile_sample_size"):
        tiny.decode(torch.zeros(1, 4, 1, 2, 2), tile_sample_size=12)
    with pytest.raises(VidgenError, match="norm_num_groups=3 must divide"):
        CogVideoXVAEConfig(block_out_channels=(8, 16), norm_num_groups=3)
    with pytest.raises(VidgenError, match="temporal_compression_ratio must be a power of 2 <= 2"):
        CogVideoXVAEConfig(block_out_channels=(8, 16), norm_num_groups=4, temporal_compression_ratio=4)
    with pytest.raises(VidgenError, match="norm_scope"):
        CogVideoXVAEConfig(norm_scope="clip")


def test_save_and_from_pretrained_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "vae")
    loaded = CogVideoXVAE.from_pretrained(tmp_path / "vae")
    assert loaded.config == tiny.config
    video = _video(1, 5, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.encode(video), tiny.encode(video))
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    config["block_out_channels"] = [8, 16, 16, 32]
    (tmp_path / "vae" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        CogVideoXVAE.from_pretrained(tmp_path / "vae")


def test_sampling_is_reproducible_and_bf16_autocast_runs(tiny):
    video = _video(1, 5, 16, 16)
    with torch.no_grad():
        a = tiny.encode(video, sample=True, generator=torch.Generator().manual_seed(3))
        b = tiny.encode(video, sample=True, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and not torch.equal(a, tiny.encode(video))
        reference = tiny.decode(tiny.encode(video))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tiny.decode(tiny.encode(video))
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert (out.float() - reference).abs().mean() < 0.05 * reference.abs().mean()


# ----------------------------------------------------------------------------- the norms it is built on


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("scope", ["frame", "chunk"])
def test_group_norm_scopes_match_nn_group_norm(scope, channels_last):
    from vidgen.layers.norms import GroupNorm3d

    torch.manual_seed(0)
    norm = GroupNorm3d(4, 8, scope=scope)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 8, 5, 6, 7) * 3 + 10  # |mean| >> std: the statistics must not cancel badly
    reference_norm = torch.nn.GroupNorm(4, 8, eps=1e-6)
    reference_norm.load_state_dict(norm.state_dict())
    if scope == "chunk":
        expected = reference_norm(x)
    else:
        expected = torch.stack([reference_norm(x[:, :, t]) for t in range(5)], dim=2)
    with torch.no_grad():
        inference = norm(x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x)
        expected = expected.detach()
    torch.testing.assert_close(inference, expected, rtol=0, atol=2e-5)
    torch.testing.assert_close(norm(x).detach(), expected, rtol=0, atol=2e-5)  # autograd path


@pytest.mark.parametrize("first_frame_alone", [True, False])
def test_spatial_norm_equals_upsample_then_modulate(first_frame_alone):
    from vidgen.layers.norms import SpatialNorm3d

    torch.manual_seed(0)
    layer = SpatialNorm3d(8, 4, num_groups=4, scope="frame")
    f = torch.randn(1, 8, 9 if first_frame_alone else 8, 16, 16)
    z = torch.randn(1, 4, 3 if first_frame_alone else 2, 4, 4)
    # Naive reference: nearest-upsample z to f's size (first frame alone), then 1x1 convs, then modulate.
    if first_frame_alone:
        z_up = torch.cat([F.interpolate(z[:, :, :1], size=(1, 16, 16)), F.interpolate(z[:, :, 1:], size=(8, 16, 16))], 2)
    else:
        z_up = F.interpolate(z, size=(8, 16, 16))
    scale, shift = layer.to_scale_shift(z_up).chunk(2, dim=1)
    expected = (layer.norm(f) * scale + shift).detach()
    with torch.no_grad():
        got = layer(f, z, first_frame_alone=first_frame_alone)
        got_cl = layer(f.contiguous(memory_format=torch.channels_last_3d), z, first_frame_alone=first_frame_alone)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_cl, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(layer(f, z, first_frame_alone=first_frame_alone).detach(), expected, rtol=0, atol=1e-5)
