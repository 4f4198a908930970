"""Recipe kind "magvit-vq": 2D stage, central inflation into the 3D stage, GAN phase, exact resume."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vidgen.errors import VidgenError
from vidgen.tokenizers.magvit_vq import MagvitVQ, magvit_vq_tiny
from vidgen.training.magvit_tokenizer import code_perplexity, evaluate_tokenizer, flat_cells, pick_frames
from vidgen.training.recipes import load_recipe, run_recipe


def run(name: str, out: Path, *sets: str):
    recipe = load_recipe(name, [f'output.dir="{out}"', 'train.device="cpu"', *sets])
    return run_recipe(recipe, progress=False, log=lambda _: None)


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def stage2d(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vq2d")
    run("magvit-shapes-vq2d-smoke", out)
    return out


def test_pick_frames_folds_distinct_frames_into_the_batch():
    video = torch.arange(2 * 5, dtype=torch.float32).view(2, 1, 5, 1, 1).expand(2, 3, 5, 2, 2)
    frames = pick_frames(video, 3, torch.Generator().manual_seed(0))
    assert frames.shape == (6, 3, 1, 2, 2)
    values = frames[:, 0, 0, 0, 0].view(2, 3)
    assert set(values[0].tolist()) <= set(range(5)) and len(set(values[0].tolist())) == 3
    assert set(values[1].tolist()) <= set(range(5, 10)) and len(set(values[1].tolist())) == 3
    again = pick_frames(video, 3, torch.Generator().manual_seed(0))
    assert torch.equal(frames, again)
    with pytest.raises(VidgenError, match="frames_per_clip"):
        pick_frames(video, 6, None)


def test_shipped_recipes_parse_and_options_are_checked(tmp_path):
    for name in ("magvit-shapes-vq2d", "magvit-shapes-vq", "magvit-shapes-vq-decoder", "magvit-shapes-vq-robust-decoder"):
        recipe = load_recipe(name)
        assert recipe.kind == "magvit-vq" and recipe.data.name == "shapes+digits"
    assert load_recipe("magvit-shapes-vq").sections["gan"].enabled
    assert load_recipe("magvit-shapes-vq-decoder").sections["vq"].train_decoder_only
    robust = load_recipe("magvit-shapes-vq-robust-decoder").sections["vq"]
    assert robust.train_decoder_only and robust.token_noise_from.endswith("stage5/pipeline")
    assert robust.token_noise_ratio == (0.1, 0.5) and robust.crop_frames == robust.crop_size == 0
    # Stage 4b: the bundled decoder on tokens refilled by the bundled transformer, with and without the GAN.
    for name, gan in (("magvit-shapes-vq-robust-decoder-deep", False), ("magvit-shapes-vq-robust-decoder-gan", True)):
        recipe = load_recipe(name)
        vq = recipe.sections["vq"]
        assert vq.train_decoder_only and vq.token_noise_from == "magvit-shapes" == recipe.train.init_from
        assert recipe.sections["gan"].enabled is gan and recipe.data.options["seed"] not in (0, 2, 4)
    with pytest.raises(VidgenError, match="frames_per_clip"):
        run("magvit-shapes-vq-smoke", tmp_path / "a", "vq.frames_per_clip=2", 'vq.inflate_from=""')
    with pytest.raises(VidgenError, match="crop_size"):
        run("magvit-shapes-vq-smoke", tmp_path / "b", "vq.crop_size=12", 'vq.inflate_from=""')
    with pytest.raises(VidgenError, match="inflate_from"):
        run("magvit-shapes-vq-smoke", tmp_path / "c", f'vq.inflate_from="{tmp_path / "missing"}"')
    with pytest.raises(VidgenError, match="gan.discriminator"):
        load_recipe("magvit-shapes-vq-smoke", ['gan.discriminator="huge"'])


def test_2d_stage_exports_a_2d_tokenizer(stage2d):
    model = MagvitVQ.from_pretrained(stage2d / "final")
    assert not model.config.temporal
    records = (stage2d / "log.jsonl").read_text().splitlines()
    evals = [r for r in records if '"eval": true' in r]
    assert evals and all(k in evals[-1] for k in ("psnr", "ssim", "codebook_usage", "perplexity"))
    assert list((stage2d / "samples").glob("*.gif"))


def test_3d_stage_starts_from_central_inflation(stage2d, tmp_path):
    run("magvit-shapes-vq-smoke", tmp_path, f'vq.inflate_from="{stage2d / "final"}"', "train.steps=0")
    model2d = MagvitVQ.from_pretrained(stage2d / "final")
    state3d = final_state(tmp_path)
    expected = MagvitVQ.inflate_from_2d(model2d).state_dict()
    assert state3d.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(state3d[name], value, rtol=0, atol=0)
    kernel = state3d["encoder.conv_in.weight"]                      # (O, I, 3, 3, 3)
    assert kernel.shape[2] == 3 and kernel[:, :, 0].abs().max() == 0 and kernel[:, :, 2].abs().max() == 0
    torch.testing.assert_close(kernel[:, :, 1], model2d.state_dict()["encoder.conv_in.weight"][:, :, 0])


def test_3d_stage_with_gan_resumes_exactly(stage2d, tmp_path):
    inflate = f'vq.inflate_from="{stage2d / "final"}"'
    straight = tmp_path / "straight"
    result = run("magvit-shapes-vq-smoke", straight, inflate)
    assert result.step == 4 and MagvitVQ.from_pretrained(straight / "final").config.temporal
    log = (straight / "log.jsonl").read_text()
    assert '"disc_loss"' in log and '"lecam"' in log              # the GAN ran (from step 2)

    from conftest import rewound_copy

    split = rewound_copy(straight, tmp_path / "split", 2)  # interrupted after its step-2 checkpoint
    recipe = load_recipe("magvit-shapes-vq-smoke", [f'output.dir="{split}"', 'train.device="cpu"', inflate])
    run_recipe(recipe, resume=True, progress=False, log=lambda _: None)
    a, b = final_state(straight), final_state(split)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    da = load_file(str(max((straight / "checkpoints").glob("step_*")) / "objective.safetensors"))
    db = load_file(str(max((split / "checkpoints").glob("step_*")) / "objective.safetensors"))
    assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)


def test_evaluate_tokenizer_counts_codes_over_all_clips():
    torch.manual_seed(0)
    model = magvit_vq_tiny().eval()
    videos = torch.rand(3, 3, 8, 32, 32) * 2 - 1
    metrics, reconstruction = evaluate_tokenizer(model, videos, batch_size=2)
    tokens = model.encode(videos).flatten()
    assert reconstruction.shape == videos.shape
    assert metrics["codebook_usage"] == pytest.approx(tokens.unique().numel() / 128)
    counts = torch.bincount(tokens, minlength=128).double()
    p = counts[counts > 0] / counts.sum()
    assert metrics["perplexity"] == pytest.approx(float((-(p * p.log()).sum()).exp()))
    assert 0 < metrics["ssim"] <= 1 and metrics["psnr"] > 0


def test_decoder_only_fine_tune_keeps_every_token(stage2d, tmp_path):
    """vq.train_decoder_only: the encoder and the codebook stay bit-identical (so a transformer trained on
    the tokens stays valid), dead-code restarts do not run, and the decoder learns."""
    start = final_state(stage2d)
    out = tmp_path / "decoder"
    # With restarts on, the quantizer's running code usage (a saved buffer) would change at every step and
    # codes would move once it fell below the threshold; checked: the test fails without the fix.
    run("magvit-shapes-vq2d-smoke", out, "vq.train_decoder_only=true", f'train.init_from="{stage2d / "final"}"',
        "model.dead_code_threshold=0.9", 'train.export="raw"')
    after = final_state(out)
    frozen = [k for k in start if k.startswith(("encoder.", "quantizer."))]
    decoder = [k for k in start if k.startswith("decoder.")]
    assert frozen and decoder and any(k.startswith("quantizer.") for k in frozen)
    assert all(torch.equal(after[k], start[k]) for k in frozen)
    assert any(not torch.equal(after[k], start[k]) for k in decoder)
    video = torch.rand(2, 3, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    before_model, after_model = MagvitVQ.from_pretrained(stage2d / "final"), MagvitVQ.from_pretrained(out / "final")
    assert torch.equal(before_model.encode(video), after_model.encode(video))
    # Freezing a random encoder would make no sense: it asks for init_from.
    with pytest.raises(VidgenError, match="train_decoder_only = true freezes the encoder"):
        run("magvit-shapes-vq2d-smoke", tmp_path / "bad", "vq.train_decoder_only=true")


def test_flat_cells_and_their_code_perplexity():
    videos = -torch.ones(2, 3, 4, 8, 8)
    videos[0, 1, :2, :4, 4:] = 0.5          # cell (0, 0, 1) of clip 0 holds a green block: flat as well
    videos[1, 0, 2:, 3:5, 3:5] = 1.0        # an edge inside cell (1, 0, 0) of clip 1 and its neighbours
    flat = flat_cells(videos, (2, 2, 2))
    assert flat.shape == (2, 2, 2, 2)
    assert flat[0].all()
    assert not flat[1, 1].any() and flat[1, 0].all()
    with pytest.raises(VidgenError, match=r"\(3, 2, 2\) must divide"):
        flat_cells(videos, (3, 2, 2))

    assert code_perplexity(torch.tensor([5, 5, 5]), 8) == pytest.approx(1.0)
    assert code_perplexity(torch.tensor([0, 1, 2, 3]), 8) == pytest.approx(4.0)
    assert code_perplexity(torch.tensor([], dtype=torch.long), 8) == 1.0


def test_evaluate_tokenizer_reports_the_codes_of_flat_cells():
    torch.manual_seed(0)
    model = magvit_vq_tiny().eval()
    videos = -torch.ones(2, 3, 8, 32, 32)
    videos[:, 0, :, 8:20, 8:20] = 1.0
    metrics, _ = evaluate_tokenizer(model, videos, batch_size=1)
    tokens = model.encode(videos)
    flat = flat_cells(videos, tuple(tokens.shape[1:]))
    assert 0 < metrics["flat_cell_fraction"] < 1
    assert metrics["flat_cell_fraction"] == pytest.approx(flat.float().mean().item())
    assert metrics["flat_cell_perplexity"] == pytest.approx(code_perplexity(tokens[flat], 128))


def _tiny_transformer(grid=(2, 4, 4), codebook_size=128, num_classes=4):
    from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny

    torch.manual_seed(0)
    return MaskedTokenTransformer(magvit_transformer_tiny(codebook_size=codebook_size, grid=grid,
                                                          num_classes=num_classes, text_dim=0))


def test_token_corruptor_refills_a_drawn_share_with_the_transformers_guesses():
    """TokenCorruptor: share 0 changes nothing; share 1 at ratio 1 gives the transformer's guesses at every
    position (its argmax for greedy clips); a partial ratio keeps the rest; draws follow the generator."""
    from vidgen.tasks import get_task
    from vidgen.tasks.masking import commit_inputs
    from vidgen.training.magvit_tokenizer import TokenCorruptor

    transformer = _tiny_transformer()
    tokens = torch.randint(0, 128, (6, 2, 4, 4), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, -1, 80])  # -1 and out-of-range ids use the null class
    seeded = lambda: torch.Generator().manual_seed(2)
    assert torch.equal(TokenCorruptor(transformer, 0.0, (0.5, 0.5))(tokens, labels, seeded()), tokens)

    everything = torch.ones_like(tokens, dtype=torch.bool)
    inputs, refine = commit_inputs(tokens, everything, transformer.mask_token_id)
    null = torch.where(labels < 4, labels, torch.full_like(labels, -1))
    with torch.no_grad():
        logits = transformer(inputs, task=torch.full((6,), get_task("CG").token), class_labels=null,
                             condition_positions=refine)
    greedy = TokenCorruptor(transformer, 1.0, (1.0, 1.0), greedy_share=1.0)(tokens, labels, seeded())
    assert torch.equal(greedy, logits.argmax(-1))
    sampled = TokenCorruptor(transformer, 1.0, (1.0, 1.0), greedy_share=0.0)(tokens, labels, seeded())
    assert not torch.equal(sampled, greedy) and torch.equal(
        sampled, TokenCorruptor(transformer, 1.0, (1.0, 1.0), greedy_share=0.0)(tokens, labels, seeded()))

    part = TokenCorruptor(transformer, 1.0, (0.3, 0.3), greedy_share=1.0)(tokens, labels, seeded())
    changed = part != tokens
    assert 0 < changed.float().mean() <= 0.45
    with pytest.raises(VidgenError, match="token grid"):
        TokenCorruptor(transformer, 1.0, (0.5, 0.5))(tokens[:, :1], labels, seeded())


def test_decoder_fine_tune_on_generated_tokens(stage2d, tmp_path):
    """vq.token_noise_from: a decoder-only run whose clips are partly refilled by a transformer keeps the
    encoder and codebook bit-identical, trains the decoder and resumes exactly; bad settings are refused."""
    from conftest import rewound_copy

    stage3d = tmp_path / "stage3d"
    run("magvit-shapes-vq-smoke", stage3d, f'vq.inflate_from="{stage2d / "final"}"')
    tokenizer = MagvitVQ.from_pretrained(stage3d / "final")
    grid = tokenizer.latent_shape(8, 32, 32)
    transformer = _tiny_transformer(grid=tuple(grid), codebook_size=tokenizer.config.codebook_size, num_classes=82)
    transformer.save_pretrained(tmp_path / "transformer")
    sets = ["vq.train_decoder_only=true", f'train.init_from="{stage3d / "final"}"', 'vq.inflate_from=""',
            "vq.crop_frames=0", "vq.crop_size=0", "gan.enabled=false", 'train.export="raw"',
            f'vq.token_noise_from="{tmp_path / "transformer"}"', "vq.token_noise_share=1.0"]
    straight = tmp_path / "straight"
    run("magvit-shapes-vq-smoke", straight, *sets)
    start, after = final_state(stage3d), final_state(straight)
    assert all(torch.equal(after[k], start[k]) for k in start if k.startswith(("encoder.", "quantizer.")))
    assert any(not torch.equal(after[k], start[k]) for k in start if k.startswith("decoder."))
    split = rewound_copy(straight, tmp_path / "split", 2)
    recipe = load_recipe("magvit-shapes-vq-smoke", [f'output.dir="{split}"', 'train.device="cpu"', *sets])
    run_recipe(recipe, resume=True, progress=False, log=lambda _: None)
    resumed = final_state(split)
    assert all(torch.equal(after[k], resumed[k]) for k in after)

    with pytest.raises(VidgenError, match="needs vq.train_decoder_only"):
        run("magvit-shapes-vq-smoke", tmp_path / "a", *sets[1:])
    with pytest.raises(VidgenError, match="whole clips"):
        run("magvit-shapes-vq-smoke", tmp_path / "b", *sets, "vq.crop_frames=4")
    with pytest.raises(VidgenError, match="token_noise_ratio"):
        load_recipe("magvit-shapes-vq-smoke", ["vq.token_noise_ratio=[0.5, 0.2]"])

