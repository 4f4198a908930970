"""The shared transformer block/stack (every mask kind), MAGVIT's masked token transformer and its
COMMIT objective."""

import pytest
import torch
import torch.nn.functional as F

from vidgen.errors import VidgenError
from vidgen.generators.masked_transformer import (
    MaskedTokenTransformer,
    MaskedTransformerConfig,
    magvit_transformer_shapes,
    magvit_transformer_tiny,
)
from vidgen.layers.masks import causal_mask, local_window_mask, padding_mask, prefix_lm_mask
from vidgen.layers.rope import RotaryEmbedding1D
from vidgen.layers.transformer import Transformer, TransformerBlock, TransformerConfig
from vidgen.tasks import MagvitObjective, get_task, pixel_to_token_mask
from vidgen.tasks.commit import object_token_mask


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _stack(**kw):
    return Transformer(TransformerConfig(**{"dim": 16, "depth": 2, "heads": 2, **kw})).eval()


def _influence(model, x, j, **kw):
    """Which outputs change when input token j changes: (N,) bool."""
    base = model(x, **kw)
    x2 = x.clone()
    x2[:, j] += torch.randn_like(x2[:, j])
    return (model(x2, **kw) - base).abs().amax(dim=(0, 2)) > 1e-6


# ----------------------------------------------------------------------------- transformer, per mask kind


def test_full_attention_every_output_sees_every_token():
    x = torch.randn(2, 6, 16)
    assert _influence(_stack(), x, 5).all()


def test_causal_mask_outputs_never_see_later_tokens():
    model, x = _stack(), torch.randn(2, 6, 16)
    for j in range(6):
        seen = _influence(model, x, j, mask=causal_mask(6))
        assert not seen[:j].any() and seen[j:].all(), j
    assert torch.allclose(model(x, is_causal=True), model(x, mask=causal_mask(6)), atol=1e-5)


def test_prefix_lm_mask_prefix_is_bidirectional_rest_causal():
    model, x = _stack(), torch.randn(1, 7, 16)
    mask = prefix_lm_mask(7, 3)
    assert _influence(model, x, 2, mask=mask).all()  # a prefix token reaches everyone, earlier prefix too
    seen = _influence(model, x, 4, mask=mask)
    assert not seen[:4].any() and seen[4:].all()  # a target token: only itself and later targets


def test_padding_mask_padded_keys_are_ignored():
    model, x = _stack(), torch.randn(2, 6, 16)
    keys = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    mask = padding_mask(keys)
    base = model(x, mask=mask)
    x2 = x.clone()
    x2[1, 4:] = 100.0
    out = model(x2, mask=mask)
    torch.testing.assert_close(out[1, :4], base[1, :4])
    x3 = x2.clone()
    x3[0, 5] += torch.randn(16)  # the same position is a real key in example 0
    assert not torch.allclose(model(x3, mask=mask)[0, :4], out[0, :4])


def test_windowed_local_mask_stays_inside_the_window():
    grid = (2, 2, 4)
    model, x = _stack(), torch.randn(1, 16, 16)
    mask = local_window_mask(grid, "w", window=2)
    seen = _influence(model, x, 5, mask=mask)  # token (t=0, h=1, w=1): window = w in {0, 1}, same t, h
    assert seen.nonzero().flatten().tolist() == [4, 5]


def test_rope_makes_attention_depend_on_relative_positions_only():
    model, x = _stack(), torch.randn(1, 5, 16)
    rope = RotaryEmbedding1D(8)
    a = model(x, rope=rope(torch.arange(5)))
    b = model(x, rope=rope(torch.arange(5) + 11))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a, model(x))


def test_adaln_blocks_start_as_identity_and_cross_attention_reads_context():
    block = TransformerBlock(16, 2, adaln=True, cond_dim=8).eval()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(block(x, cond=torch.randn(2, 8)), x)
    with pytest.raises(VidgenError, match="needs `cond`"):
        block(x)
    cross = _stack(cross_attention=True, context_dim=12)
    ctx = torch.randn(2, 3, 12)
    keep = torch.tensor([[True, True, True], [True, False, False]])
    base = cross(x, context=ctx, context_mask=keep)
    ctx2 = ctx.clone()
    ctx2[1, 1:] = 50.0  # padded context of example 1
    torch.testing.assert_close(cross(x, context=ctx2, context_mask=keep)[1], base[1])
    ctx2[0, 0] = 50.0
    assert not torch.allclose(cross(x, context=ctx2, context_mask=keep)[0], base[0])
    adaln_stack = _stack(adaln=True, cond_dim=8)
    assert adaln_stack(x, cond=torch.randn(2, 8)).shape == x.shape


def test_transformer_rejects_bad_inputs_and_runs_under_bf16_autocast():
    model = _stack()
    with pytest.raises(VidgenError, match="does not fit a sequence of 6"):
        model(torch.randn(1, 6, 16), mask=causal_mask(5))
    with pytest.raises(VidgenError, match="must be \\(B, N, 16\\)"):
        model(torch.randn(1, 6, 8))
    with pytest.raises(VidgenError, match="not divisible"):
        TransformerConfig(dim=10, heads=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 6, 16), mask=causal_mask(6))
    assert torch.isfinite(out.float()).all()


# ----------------------------------------------------------------------------- the masked token transformer


def _tiny(**kw):
    return MaskedTokenTransformer(magvit_transformer_tiny(**kw)).eval()


def _tokens(model, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.codebook_size, (b, *model.config.grid), generator=g)


def test_vocabulary_layout_and_logit_shape():
    model = _tiny()
    c = model.config
    assert c.vocab_size == 32 + 1 + 16 + 4 + 1 == model.token_embedding.num_embeddings
    assert model.mask_token_id == 32
    assert model.task_token_id(torch.tensor(0)).item() == 33
    assert model.class_token_id(torch.tensor([0, 3, -1])).tolist() == [49, 52, 53]
    logits = model(_tokens(model), task=torch.tensor([1, 2]), class_labels=torch.tensor([0, -1]))
    assert logits.shape == (2, 2, 4, 4, 32)


def test_conditioning_changes_the_logits():
    model = _tiny()
    z = _tokens(model)
    base = model(z, task=1)
    assert not torch.allclose(base, model(z, task=2))
    assert not torch.allclose(base, model(z, task=1, class_labels=torch.tensor([3, 3])))
    flags = torch.zeros_like(z, dtype=torch.bool)
    flags[:, 0] = True
    assert not torch.allclose(base, model(z, task=1, condition_positions=flags))
    text = torch.randn(2, 3, 8)
    assert not torch.allclose(base, model(z, task=1, text=text))


def test_text_padding_is_ignored_and_all_padding_equals_no_text():
    model = _tiny()
    z = _tokens(model)
    text = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    base = model(z, task=0, text=text, text_mask=mask)
    noisy = text.clone()
    noisy[1, 2:] = 30.0
    torch.testing.assert_close(model(z, task=0, text=noisy, text_mask=mask), base)
    null = model(z, task=0, text=text, text_mask=torch.zeros(2, 5, dtype=torch.bool))
    torch.testing.assert_close(null, model(z, task=0), atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = _tiny()
    z = _tokens(model)
    with pytest.raises(VidgenError, match="tokens must be \\(B, 2, 4, 4\\)"):
        model(z[:, :1])
    with pytest.raises(VidgenError, match="integers in \\[0, 32\\]"):
        model(z + 40)
    with pytest.raises(VidgenError, match="class_labels must hold 2 labels in \\[-1, 4\\)"):
        model(z, class_labels=torch.tensor([4, 0]))
    with pytest.raises(VidgenError, match="task-token indices in \\[0, 16\\)"):
        model(z, task=16)
    with pytest.raises(VidgenError, match="no text conditioning"):
        _tiny(text_dim=0)(z, text=torch.randn(2, 3, 8))
    with pytest.raises(VidgenError, match="position_embedding='rope'"):
        MaskedTransformerConfig(position_embedding="rope")


def test_save_and_load_round_trip(tmp_path):
    model = _tiny(position_embedding="sincos")
    assert "position_embedding" not in model.state_dict()  # a fixed table is not a weight
    z = _tokens(model)
    model.save_pretrained(tmp_path / "m")
    loaded = MaskedTokenTransformer.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(z, task=3), model(z, task=3))
    model.save_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    sizes = [(tmp_path / d / "model.safetensors").stat().st_size for d in ("bf16", "m")]
    assert sizes[0] < sizes[1]


def test_code_geometry_paths_start_at_zero_and_learn(tmp_path):
    """code_dim: a model without the paths loads into one with them (train.init_from) and computes the same
    logits; the code vectors are stored standardised and saved with the weights; the paths then take part."""
    from vidgen.training.checkpoint import initialise_from

    plain = _tiny()
    plain.save_pretrained(tmp_path / "plain")
    model = _tiny(code_dim=6)
    codebook = torch.randn(32, 6) * 3 + 1
    model.set_code_vectors(codebook)
    initialise_from(model, str(tmp_path / "plain"))
    stored = model.code_vectors
    torch.testing.assert_close(stored.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    assert abs(float(stored.std()) - 1) < 1e-5  # the vectors survived the load
    z = _tokens(model)
    z[0, 0, 0, 0] = model.mask_token_id  # [MASK] has no code vector
    torch.testing.assert_close(model(z, task=3), plain(z, task=3))
    # Both paths carry gradient from the start.
    model.train()
    model(z, task=3).square().mean().backward()
    assert model.code_output.weight.grad.abs().sum() > 0 and model.code_input.weight.grad.abs().sum() > 0
    # Once trained away from zero, the input path reads a token's code vector and the output path adds
    # q . c_k: logits differ between codes by their code vectors alone.
    model.eval()
    with torch.no_grad():
        model.code_input.weight.normal_()
    changed = model(z, task=3)
    assert not torch.allclose(changed, plain(z, task=3))
    with torch.no_grad():
        model.code_output.weight.normal_()
    extra = model(z, task=3) - changed  # (B, t, h, w, K) = q . c_k
    q = torch.linalg.lstsq(model.code_vectors, extra.reshape(-1, 32).T).solution  # (C, B*N)
    torch.testing.assert_close(model.code_vectors @ q, extra.reshape(-1, 32).T, atol=1e-4, rtol=1e-4)
    model.save_pretrained(tmp_path / "codes")
    loaded = MaskedTokenTransformer.from_pretrained(tmp_path / "codes")
    assert torch.equal(loaded.code_vectors, model.code_vectors)
    torch.testing.assert_close(loaded(z, task=3), model(z, task=3))
    # The other weights stay strict: a saved model with a different vocabulary is still refused.
    with pytest.raises(Exception, match="shape mismatches"):
        initialise_from(_tiny(code_dim=6, codebook_size=16), str(tmp_path / "plain"))


def test_code_geometry_rejects_bad_code_vectors():
    with pytest.raises(VidgenError, match="code_dim=-1 must be >= 0"):
        magvit_transformer_tiny(code_dim=-1)
    with pytest.raises(VidgenError, match=r"code vectors must be \(32, 6\).*got \(32, 5\)"):
        _tiny(code_dim=6).set_code_vectors(torch.randn(32, 5))
    with pytest.raises(VidgenError, match="not all equal"):
        _tiny(code_dim=6).set_code_vectors(torch.ones(32, 6))
    with pytest.raises(VidgenError, match="no code-geometry paths"):
        _tiny().set_code_vectors(torch.randn(32, 6))


def test_shapes_size_fits_the_budget():
    config = magvit_transformer_shapes()
    assert config.num_visual_tokens == 256 and config.codebook_size == 1024
    model = MaskedTokenTransformer(config)
    assert 2 * model.num_parameters() < 20e6  # bf16 bytes: leaves >= 20 MB of the 40 MB for the tokenizer


def test_forward_backward_under_bf16_autocast():
    model = _tiny().train()
    z = _tokens(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(z, task=1, text=torch.randn(2, 3, 8), text_mask=torch.ones(2, 3, dtype=torch.bool))
        loss = F.cross_entropy(logits.float().flatten(0, -2), z.flatten())
    loss.backward()
    assert torch.isfinite(loss) and model.token_embedding.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- the COMMIT objective


class ProjectionTokenizer:
    """Stand-in tokenizer: mean colour of each supervoxel, projected by a fixed random matrix, argmax."""

    def __init__(self, stride=(2, 4, 4), codebook_size=32, seed=0):
        self.stride = stride
        self.projection = torch.randn(3, codebook_size, generator=torch.Generator().manual_seed(seed))

    def encode(self, video):
        pooled = F.avg_pool3d(video, self.stride)
        return torch.einsum("bcthw,ck->bthwk", pooled, self.projection).argmax(-1)


class Spy(torch.nn.Module):
    """Wraps a model and records the inputs of its last call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.mask_token_id = model, model.config, model.mask_token_id

    def forward(self, tokens, **kw):
        self.last = dict(tokens=tokens, **kw)
        return self.model(tokens, **kw)


def _batch(b=4, seed=0, labels=True):
    # (B, 3, 4, 16, 16) -> (2, 4, 4) tokens
    video = torch.rand(b, 3, 4, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    batch = {"video": video}
    if labels:
        batch["label"] = torch.arange(b) % 4
    return batch


def test_objective_returns_the_three_parts_and_trains():
    model = _tiny().train()
    objective = MagvitObjective(ProjectionTokenizer())
    out = objective(model, _batch(), torch.Generator().manual_seed(0))
    assert {"loss", "refine", "mask", "recon", "mask_accuracy", "mask_ratio"} <= set(out)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["loss"].requires_grad and not out["mask"].requires_grad
    out["loss"].backward()
    assert model.head.weight.grad.abs().sum() > 0
    again = objective(model, _batch(), torch.Generator().manual_seed(0))  # the seed reproduces the step
    torch.testing.assert_close(again["loss"], out["loss"])
    other = objective(model, _batch(), torch.Generator().manual_seed(1))
    assert other["loss"] != out["loss"]


def test_objective_builds_commit_inputs_for_frame_prediction():
    tokenizer = ProjectionTokenizer()
    spy = Spy(_tiny())
    objective = MagvitObjective(tokenizer, tasks=["FP"], condition_dropout=0.0)
    batch = _batch(b=8)
    objective(spy, batch, torch.Generator().manual_seed(1))
    inputs, refine = spy.last["tokens"], spy.last["condition_positions"]
    target = tokenizer.encode(batch["video"])
    region = pixel_to_token_mask(get_task("FP").condition_region((4, 16, 16)), (2, 4, 4))  # first token frame
    assert region[0].all() and not region[1].any()
    z_cond = tokenizer.encode(batch["video"][:, :, :1].expand(-1, -1, 4, -1, -1))  # replicate-padded first frame
    masked = refine | (inputs == spy.mask_token_id)
    assert refine.any() and not (refine & ~region).any()  # condition tokens only inside the region
    assert torch.equal(inputs[refine], z_cond[refine])  # they are the padded clip's tokens
    assert not (masked & region & ~refine).any()  # inside the region masked positions never get [MASK]
    assert torch.equal(inputs[~masked], target[~masked])  # unmasked positions keep the target
    assert (spy.last["task"] == get_task("FP").token).all()
    labels = spy.last["class_labels"]
    assert labels is None or (labels == -1).all()  # FP does not use the class


def test_objective_loss_weights_the_parts():
    tokenizer = ProjectionTokenizer()
    batch, model = _batch(b=8), _tiny()
    parts = {}
    for weights in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
        spy = Spy(model)
        objective = MagvitObjective(tokenizer, tasks=["OPC"], condition_dropout=0.0, refine_weight=weights[0],
                                    mask_weight=weights[1], recon_weight=weights[2])
        out = objective(spy, batch, torch.Generator().manual_seed(2))
        refine = spy.last["condition_positions"]
        mask = (spy.last["tokens"] == spy.mask_token_id) & ~refine
        recon = ~(refine | mask)
        count = {(1, 0, 0): refine, (0, 1, 0): mask, (0, 0, 1): recon}[weights].sum()
        name = {(1, 0, 0): "refine", (0, 1, 0): "mask", (0, 0, 1): "recon"}[weights]
        torch.testing.assert_close(out["loss"], out[name] * count / refine.numel())
        parts[name] = out[name]
    default = MagvitObjective(tokenizer, tasks=["OPC"], condition_dropout=0.0)(model, batch,
                                                                                  torch.Generator().manual_seed(2))
    assert default["recon"] == parts["recon"]
    assert default["loss"] < parts["refine"] + parts["mask"] + parts["recon"]


def test_object_token_mask_marks_the_supervoxels_an_object_touches():
    video = -torch.ones(2, 3, 4, 16, 16)
    video[0, 1, 2, 5:7, 9:10] = 0.5  # green, frame 2, rows 5-6, column 9: supervoxel (1, 1, 2)
    video[1, :, :, :, :] = -0.95  # near-black everywhere: background
    mask = object_token_mask(video, (2, 4, 4))
    expected = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    expected[0, 1, 1, 2] = True
    assert torch.equal(mask, expected)
    with pytest.raises(VidgenError, match=r"video must be \(B, C, T, H, W\)"):
        object_token_mask(video[0], (2, 4, 4))


def test_object_weight_scales_the_loss_of_the_object_tokens():
    model = _tiny()
    tokens = ProjectionTokenizer().encode(_batch(b=4)["video"])
    batch = {"tokens": tokens, "label": torch.arange(4) % 4}

    def loss(weight, object_mask):
        objective = MagvitObjective(None, tasks=["CG"], condition_dropout=0.0, object_weight=weight)
        return objective(model, {**batch, "object_mask": object_mask}, torch.Generator().manual_seed(3))["loss"]

    none, every = torch.zeros_like(tokens, dtype=torch.bool), torch.ones_like(tokens, dtype=torch.bool)
    some = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(4)) < 0.3
    plain = loss(1.0, none)
    torch.testing.assert_close(loss(3.0, none), plain)  # no object: nothing changes
    torch.testing.assert_close(loss(3.0, every), 3 * plain)  # all object: every position 3x
    assert plain < loss(3.0, some) < 3 * plain
    torch.testing.assert_close(loss(1.0, every), plain)  # weight 1: MAGVIT's plain loss
    with pytest.raises(VidgenError, match="object_weight=3 needs the batch's 'object_mask'"):
        MagvitObjective(None, tasks=["CG"], object_weight=3.0)(model, batch, torch.Generator().manual_seed(3))
    with pytest.raises(VidgenError, match="object_weight=0 must be > 0"):
        MagvitObjective(None, tasks=["CG"], object_weight=0)
    # A batch of clips needs no mask: the objective finds the objects in the pixels.
    clips = _batch(b=4)
    out = MagvitObjective(ProjectionTokenizer(), tasks=["CG"], object_weight=2.0)(model, clips, torch.Generator())
    assert torch.isfinite(out["loss"])


def test_neighbour_smoothing_charges_a_near_miss_less_than_a_far_one():
    """A model whose logits point at a code next to the true one loses less under neighbour smoothing than
    one pointing at a far code; without smoothing both lose the same."""
    from vidgen.tasks.commit import nearest_codes

    codebook = torch.arange(32, dtype=torch.float32)[:, None]  # codes on a line: k's neighbours are k +- 1, 2
    neighbours = nearest_codes(codebook, 2)
    assert neighbours.shape == (32, 2) and sorted(neighbours[5].tolist()) == [4, 6]
    assert sorted(neighbours[0].tolist()) == [1, 2]  # never itself
    target = torch.full((1, 2, 4, 4), 10)

    class Pointing(torch.nn.Module):
        """Logits 8 at one code, 0 elsewhere, whatever the input."""

        mask_token_id, config = 32, magvit_transformer_tiny()

        def __init__(self, code):
            super().__init__()
            self.code = code
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, tokens, **_):
            return F.one_hot(torch.full(tokens.shape, self.code), 32).float() * 8 + self.dummy

    def loss(code, smoothing):
        objective = MagvitObjective(None, tasks=["CG"], condition_dropout=0.0, code_neighbours=neighbours,
                                    neighbour_smoothing=smoothing)
        return objective(Pointing(code), {"tokens": target, "label": torch.zeros(1, dtype=torch.long)},
                         torch.Generator().manual_seed(0))["loss"]

    torch.testing.assert_close(loss(11, 0.0), loss(20, 0.0))
    assert loss(11, 0.3) < loss(20, 0.3)
    with pytest.raises(VidgenError, match="needs code_neighbours"):
        MagvitObjective(None, tasks=["CG"], neighbour_smoothing=0.2)
    with pytest.raises(VidgenError, match="must be >= 0 with a sum below 1"):
        MagvitObjective(None, tasks=["CG"], label_smoothing=0.5, neighbour_smoothing=0.6, code_neighbours=neighbours)
    with pytest.raises(VidgenError, match="1 <= count < K"):
        nearest_codes(codebook, 32)


def test_condition_dropout_gives_the_null_condition():
    spy = Spy(_tiny())
    objective = MagvitObjective(ProjectionTokenizer(), tasks=["CFP"], condition_dropout=0.999)
    objective(spy, _batch(b=8), torch.Generator().manual_seed(0))
    assert not spy.last["condition_positions"].any()  # no condition tokens: [MASK] everywhere masked
    assert (spy.last["class_labels"] == -1).all()  # the null class
    keep = MagvitObjective(ProjectionTokenizer(), tasks=["CFP"], condition_dropout=0.0)
    keep(spy, _batch(b=8), torch.Generator().manual_seed(0))
    assert torch.equal(spy.last["class_labels"], torch.arange(8) % 4)


def test_objective_picks_the_tasks_the_batch_and_model_allow():
    objective = MagvitObjective(ProjectionTokenizer())
    no_labels = objective.tasks_for(_tiny(), _batch(labels=False))
    assert [t.abbreviation for t in no_labels] == ["FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD"]
    with_labels = {t.abbreviation for t in objective.tasks_for(_tiny(), _batch())}
    assert {"CG", "CFP"} <= with_labels and "T2V" not in with_labels
    text_batch = {**_batch(), "text_embeddings": torch.randn(4, 3, 8), "text_mask": torch.ones(4, 3, dtype=bool)}
    assert "T2V" in {t.abbreviation for t in objective.tasks_for(_tiny(), text_batch)}
    with pytest.raises(VidgenError, match="T2V needs a text-conditioned model"):
        MagvitObjective(ProjectionTokenizer(), tasks=["T2V"])(_tiny(), _batch())
    with pytest.raises(VidgenError, match="CG needs a class-conditional model"):
        MagvitObjective(ProjectionTokenizer(), tasks=["CG"])(_tiny(num_classes=0), _batch())


def test_text_to_video_passes_text_with_its_mask():
    spy = Spy(_tiny())
    text_mask = torch.tensor([[True, True, False]] * 4)
    batch = {**_batch(), "text_embeddings": torch.randn(4, 3, 8), "text_mask": text_mask}
    out = MagvitObjective(ProjectionTokenizer(), tasks=["T2V"], condition_dropout=0.0)(
        spy, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    assert torch.equal(spy.last["text_mask"], text_mask) and spy.last["text"].shape == (4, 3, 8)
    assert not spy.last["condition_positions"].any()


def test_shapes_style_batch_labels_and_prompts():
    class FakeTextEncoder:
        def encode(self, prompts):
            mask = torch.tensor([[True] * (1 + len(p.split())) + [False] * (4 - len(p.split())) for p in prompts])
            return type("Text", (), {"embeddings": torch.randn(len(prompts), 5, 8), "mask": mask})()

    spy = Spy(_tiny())
    batch = {**_batch(labels=False), "class_id": torch.tensor([3, 1, 0, 2]),
             "labels": {"num_objects": torch.ones(4)}, "caption": ["a red circle", "a dot", "two", "a b c"]}
    objective = MagvitObjective(ProjectionTokenizer(), tasks=["CG", "T2V"], condition_dropout=0.0,
                                text_encoder=FakeTextEncoder())
    assert {"CG", "CFP", "T2V"} <= {t.abbreviation for t in MagvitObjective(ProjectionTokenizer()).tasks_for(
        _tiny(), batch)}
    objective(spy, batch, torch.Generator().manual_seed(0))
    is_cg = spy.last["task"] == get_task("CG").token
    assert is_cg.any() and (~is_cg).any()
    assert torch.equal(spy.last["class_labels"][is_cg], batch["class_id"][is_cg])  # labels from "class_id"
    assert (spy.last["class_labels"][~is_cg] == -1).all()
    text_mask = spy.last["text_mask"]
    assert not text_mask[is_cg].any()  # CG examples see no text
    assert text_mask[~is_cg].sum(1).tolist() == [1 + len(batch["caption"][i].split())
                                                 for i in range(4) if not is_cg[i]]
