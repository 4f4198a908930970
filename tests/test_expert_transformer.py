"""CogVideoX expert transformer: shapes, masks, checkpoints, errors, and exact parity with diffusers."""

from __future__ import annotations

import json
import types

import pytest
import torch

from vidgen.errors import CheckpointError, VidgenError
from vidgen.generators.expert_transformer import (
    CogVideoXTransformer,
    CogVideoXTransformerConfig,
    cogvideox_transformer_shapes,
    cogvideox_transformer_tiny,
    rope_positions,
)

diffusers = pytest.importorskip("diffusers")
from diffusers import CogVideoXTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

TOL = {"atol": 1e-4, "rtol": 0}


def _randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Perturb every weight (adaLN-Zero gates and the output projection start at zero, LayerNorms at 1/0),
    so that every layer contributes to the output the tests compare."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()


def _diffusers_model(**overrides) -> CogVideoXTransformer3DModel:
    config = {"num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 4, "out_channels": 4,
              "time_embed_dim": 32, "text_embed_dim": 32, "num_layers": 2, "sample_width": 8, "sample_height": 8,
              "sample_frames": 9, "patch_size": 2, "max_text_seq_length": 7}
    torch.manual_seed(0)
    return _randomize(CogVideoXTransformer3DModel(**{**config, **overrides}))


def _pipeline_rope(model: CogVideoXTransformer3DModel, latent_h: int, latent_w: int, latent_t: int):
    """RoPE exactly as diffusers' CogVideoX pipeline builds it (its own method, on a stand-in pipeline)."""
    stand_in = types.SimpleNamespace(vae_scale_factor_spatial=8, transformer=model)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(stand_in, latent_h * 8, latent_w * 8, latent_t,
                                                                   torch.device("cpu"))


def _inputs(b=2, c=4, t=3, h=8, w=8, text_len=7, text_dim=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, t, h, w, generator=g), torch.randn(b, text_len, text_dim, generator=g),
            torch.tensor([17.0, 803.0])[:b])


def _convert(diffusers_model, tmp_path, **save_kwargs) -> CogVideoXTransformer:
    diffusers_model.save_pretrained(tmp_path / "diffusers", **save_kwargs)
    return CogVideoXTransformer.from_pretrained(tmp_path / "diffusers")


def _theirs(model, latents, text, t, **kwargs) -> torch.Tensor:
    """diffusers forward in vidgen's layout: (B, C, T, H, W) in and out."""
    with torch.no_grad():
        return model(latents.transpose(1, 2), text, t, return_dict=False, **kwargs)[0].transpose(1, 2)


# ----------------------------------------------------------------------------- diffusers interop


def test_sincos_model_matches_diffusers(tmp_path):
    theirs = _diffusers_model(use_rotary_positional_embeddings=False)
    ours = _convert(theirs, tmp_path)
    assert ours.config.position_embedding == "sincos" and ours.config.dim == 32
    for h, w in ((8, 8), (6, 10)):  # the training grid and one whose table diffusers recomputes
        latents, text, t = _inputs(h=h, w=w)
        with torch.no_grad():
            out = ours(latents, text, t)
        expected = _theirs(theirs, latents, text, t)
        assert out.shape == latents.shape
        assert expected.abs().mean() > 0.1  # the comparison is not between two near-zero outputs
        torch.testing.assert_close(out, expected, **TOL)


def test_rope_model_matches_diffusers_pipeline_positions(tmp_path):
    theirs = _diffusers_model(use_rotary_positional_embeddings=True)
    ours = _convert(theirs, tmp_path)
    assert ours.config.rope_base_grid == (4, 4)
    # default grid (latents at the sample size) and a wider one, which diffusers fits into the 4x4
    # base grid with a crop offset: our internally computed positions must agree with both.
    for h, w in ((8, 8), (8, 12)):
        latents, text, t = _inputs(h=h, w=w)
        rope = _pipeline_rope(theirs, h, w, latents.shape[2])
        expected = _theirs(theirs, latents, text, t, image_rotary_emb=rope)
        with torch.no_grad():
            internal = ours(latents, text, t)
            passed_in = ours(latents, text, t, rope=rope)
        torch.testing.assert_close(passed_in, expected, **TOL)
        torch.testing.assert_close(internal, expected, **TOL)
        cos, sin = ours.rotary_embedding(ours.token_grid(*latents.shape[2:]), torch.device("cpu"))
        torch.testing.assert_close(cos, rope[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(sin, rope[1], atol=1e-5, rtol=0)
    # RoPE matters: without it (all positions zero) the output changes
    zero = ours.rope_3d(torch.zeros(3 * 4 * 6, 3))
    with torch.no_grad():
        assert (ours(latents, text, t, rope=zero) - expected).abs().max() > 1e-2


def test_temporal_patch_model_with_ofs_matches_diffusers(tmp_path):
    theirs = _diffusers_model(use_rotary_positional_embeddings=True, patch_size_t=2, ofs_embed_dim=32,
                              sample_width=12, sample_height=8)
    ours = _convert(theirs, tmp_path, max_shard_size="40KB")  # sharded safetensors + index
    assert len(list((tmp_path / "diffusers").glob("*.safetensors"))) > 1
    assert ours.config.patch_size_t == 2 and ours.config.rope_base_grid is None
    latents, text, t = _inputs(t=4, h=8, w=12)
    ofs = torch.tensor([2.0, 2.0])
    rope = _pipeline_rope(theirs, 8, 12, 4)
    expected = _theirs(theirs, latents, text, t, image_rotary_emb=rope, ofs=ofs)
    with torch.no_grad():
        out = ours(latents, text, t, ofs=ofs)
    torch.testing.assert_close(out, expected, **TOL)
    with pytest.raises(VidgenError, match="ofs"):
        ours(latents, text, t)


def test_diffusers_conversion_rejects_what_it_cannot_represent(tmp_path):
    theirs = _diffusers_model(use_rotary_positional_embeddings=True)
    theirs.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "activation_fn": "gelu"}))
    with pytest.raises(CheckpointError, match="activation_fn='gelu'"):
        CogVideoXTransformer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors"):
        CogVideoXTransformer.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------- our own behaviour


def test_untrained_model_predicts_zero_and_learns_shape():
    model = cogvideox_transformer_tiny()
    latents, text, t = _inputs()
    out = model(latents, text, t)
    assert out.shape == (2, 4, 3, 8, 8) and torch.equal(out, torch.zeros_like(out))  # adaLN-Zero init
    out.pow(2).sum().backward()  # zero output still gives the output projection a gradient
    loss = (model(latents, text, t) - latents).pow(2).mean()
    loss.backward()
    assert model.proj_out.weight.grad.abs().sum() > 0


def test_text_mask_hides_padding_tokens_exactly():
    model = _randomize(cogvideox_transformer_tiny())
    latents, text, t = _inputs(text_len=5)
    padded = torch.cat([text, 100 * torch.randn(2, 3, 32)], dim=1)  # three loud padding tokens
    mask = torch.tensor([[True] * 5 + [False] * 3] * 2)
    with torch.no_grad():
        short = model(latents, text, t)
        masked = model(latents, padded, t, text_mask=mask)
        unmasked = model(latents, padded, t)
        all_true = model(latents, padded, t, text_mask=torch.ones(2, 8, dtype=torch.bool))
    torch.testing.assert_close(masked, short, atol=1e-5, rtol=0)
    assert (unmasked - short).abs().max() > 1e-2
    assert torch.equal(all_true, unmasked)
    # per-sample masks: sample 1 keeps only 2 tokens
    mask[1, 2:] = False
    with torch.no_grad():
        mixed = model(latents, padded, t, text_mask=mask)
        second = model(latents[1:], text[1:, :2], t[1:])
    torch.testing.assert_close(mixed[1:], second, atol=1e-5, rtol=0)


def test_sincos_positions_and_text_change_the_output():
    model = _randomize(cogvideox_transformer_tiny(position_embedding="sincos"))
    latents, text, t = _inputs()
    with torch.no_grad():
        base = model(latents, text, t)
        # text tokens carry no positions: their order does not matter, their content does
        torch.testing.assert_close(model(latents, text.flip(1), t), base, atol=1e-5, rtol=0)
        assert (model(latents, text[:, :4], t) - base).abs().max() > 1e-3
        assert (model(latents, text, t.flip(0)) - base).abs().max() > 1e-3  # so does the timestep
        model.position_table(model.token_grid(3, 8, 8), torch.device("cpu")).zero_()  # cached table
        assert (model(latents, text, t) - base).abs().max() > 1e-3


def test_save_and_load_round_trip(tmp_path):
    model = _randomize(cogvideox_transformer_tiny(patch_size_t=3, rope_base_grid=(4, 4)))
    model.save_pretrained(tmp_path)
    loaded = CogVideoXTransformer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    latents, text, t = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(latents, text, t), model(latents, text, t))


def test_bf16_autocast_forward_and_backward():
    model = _randomize(cogvideox_transformer_tiny(), scale=0.05).train()
    latents, text, t = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(latents, text, t)
    with torch.no_grad():
        reference = model.eval()(latents, text, t)
    assert out.shape == latents.shape and torch.isfinite(out).all()
    assert (out.float() - reference).abs().max() < 0.1 * reference.abs().max()
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():  # bf16 weights: fp32 inputs are cast to the weights' dtype
        half = model.to(torch.bfloat16)(latents, text, t)
    assert half.dtype == torch.bfloat16
    assert (half.float() - reference).abs().max() < 0.1 * reference.abs().max()


def test_rope_positions_stretch_onto_the_base_grid():
    plain = rope_positions(2, 2, 3)
    assert plain.shape == (12, 3) and plain[-1].tolist() == [1, 1, 2]
    stretched = rope_positions(1, 2, 2, base_grid=(4, 4))  # a 2x2 grid spans the 4x4 base: steps of 2
    assert stretched[:, 1].tolist() == [0, 0, 2, 2] and stretched[:, 2].tolist() == [0, 2, 0, 2]
    assert torch.equal(rope_positions(2, 4, 4, base_grid=(4, 4)), rope_positions(2, 4, 4))


def test_bad_inputs_raise_clear_errors():
    model = cogvideox_transformer_tiny(patch_size_t=2)
    latents, text, t = _inputs(t=4)
    cases = [
        ((latents[:, :, :, :7], text, t), {}, "divisible by patch_size=2"),
        ((latents[:, :, :3], text, t), {}, "patch_size_t=2"),
        ((latents[:, :3], text, t), {}, "in_channels=4"),
        ((latents[0], text, t), {}, r"\(B, C, T, H, W\)"),
        ((latents, text[..., :16], t), {}, "text_dim=32"),
        ((latents, text[:1], t), {}, "batch 1 does not match latents batch 2"),
        ((latents, text, t[:1]), {}, "timesteps"),
        ((latents, text, t), {"text_mask": torch.ones(2, 7)}, "bool"),
        ((latents, text, t), {"rope": (torch.ones(3, 16), torch.ones(3, 16))}, "rope must be"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(VidgenError, match=message):
            model(*args, **kwargs)
    for bad, message in (({"position_embedding": "alibi"}, "position_embedding"),
                         ({"position_embedding": "sincos", "head_dim": 12}, "divisible by 16"),
                         ({"ofs_embed_dim": 8}, "ofs_embed_dim")):
        with pytest.raises(VidgenError, match=message):
            CogVideoXTransformerConfig(**{"num_heads": 2, "head_dim": 16, "time_embed_dim": 32, **bad})


def test_named_sizes():
    shapes = cogvideox_transformer_shapes(latent_channels=8)
    assert shapes.config.in_channels == 8 and shapes.config.text_dim == 384
    assert shapes.token_grid(5, 8, 8) == (5, 4, 4)
    assert cogvideox_transformer_shapes().config.in_channels == 16
