"""Non-autoregressive (MaskGIT / MAGVIT COMMIT) and autoregressive decoding of masked token models."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from vidgen.errors import VidgenError
from vidgen.generators.decoding import decode_autoregressive, decode_nonautoregressive, sample_logits
from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny
from vidgen.tasks import prepare_condition

GRID = (2, 4, 4)
N = 32
K = 16
MASK = K


class TargetModel(torch.nn.Module):
    """A stub masked model whose logits put all the mass on a known target grid; records every call."""

    def __init__(self, target):
        super().__init__()
        self.target = target  # (B, t, h, w)
        self.config = SimpleNamespace(grid=GRID, codebook_size=K)
        self.mask_token_id = MASK
        self.calls = []

    def forward(self, tokens, task=None, class_labels=None, condition_positions=None, text=None, text_mask=None):
        self.calls.append({"tokens": tokens.clone(), "refine": condition_positions.clone(),
                           "labels": class_labels})
        target = self.target.repeat(tokens.shape[0] // self.target.shape[0], 1, 1, 1)
        return F.one_hot(target, K).float() * 1e4


def _target(b=2, seed=0):
    return torch.randint(0, K, (b, *GRID), generator=torch.Generator().manual_seed(seed))


def _condition(b=2):
    tokens = (_target(b, seed=9) + 1) % K  # differs from the target everywhere
    mask = torch.zeros(b, *GRID, dtype=torch.bool)
    mask[:, 0] = True  # the first token frame is given (frame prediction)
    return tokens, mask


# ----------------------------------------------------------------------------- non-autoregressive


def test_decoding_returns_the_target_and_follows_the_cosine_schedule():
    target = _target()
    model = TargetModel(target)
    counts = []
    out = decode_nonautoregressive(model, task="CG", batch_size=2, num_steps=12,
                                   generator=torch.Generator().manual_seed(0),
                                   callback=lambda step, info: counts.append(info["masked"].sum(1).tolist()))
    assert torch.equal(out, target)
    assert len(model.calls) == 12
    expected = [max(1, math.floor(math.cos(math.pi / 2 * (k + 1) / 12) * N)) for k in range(11)] + [0]
    assert [c[0] for c in counts] == expected and [c[1] for c in counts] == expected
    assert (model.calls[0]["tokens"] == MASK).all()  # all masked at the start, no condition


def test_commit_decoding_starts_from_and_reinserts_condition_tokens():
    target = _target()
    z_cond, region = _condition()
    model = TargetModel(target)
    masks = []
    out = decode_nonautoregressive(model, task="FP", condition_tokens=z_cond, condition_mask=region,
                                   generator=torch.Generator().manual_seed(1),
                                   callback=lambda step, info: masks.append(info["masked"]))
    first = model.calls[0]
    assert torch.equal(first["tokens"][region], z_cond[region])  # condition region starts at z~
    assert (first["tokens"][~region] == MASK).all()
    assert torch.equal(first["refine"], region)
    for step in range(1, len(model.calls)):
        tokens, refine = model.calls[step]["tokens"], model.calls[step]["refine"]
        still = masks[step - 1].view_as(tokens)
        assert torch.equal(tokens[still & region], z_cond[still & region])  # re-inserted every step
        assert (tokens[still & ~region] == MASK).all()
        assert torch.equal(tokens[~still], target[~still])  # decided positions keep their samples
        assert torch.equal(refine, still & region)
    assert torch.equal(out, target)  # COMMIT refines the condition tokens towards the model's prediction


def test_fixed_condition_tokens_are_never_changed():
    target = _target()
    z_cond, region = _condition()
    model = TargetModel(target)
    counts = []
    out = decode_nonautoregressive(model, task="FP", condition_tokens=z_cond, condition_mask=region,
                                   refine_condition=False, generator=torch.Generator().manual_seed(2),
                                   callback=lambda step, info: counts.append(info["masked"].sum(1)[0].item()))
    assert torch.equal(out[region], z_cond[region]) and torch.equal(out[~region], target[~region])
    for call in model.calls:
        assert torch.equal(call["tokens"][region], z_cond[region]) and not call["refine"].any()
    free = N - 16  # the schedule runs over the positions to generate only
    assert counts[0] == math.floor(math.cos(math.pi / 2 / 12) * free)


def test_guidance_is_one_batched_pass_with_the_null_condition():
    a, b = 3, 5

    class ClassModel(TargetModel):
        def forward(self, tokens, task=None, class_labels=None, condition_positions=None, **kw):
            self.calls.append({"tokens": tokens.clone(), "refine": condition_positions.clone(),
                               "labels": class_labels})
            logits = torch.zeros(*tokens.shape, K)
            cond = (class_labels >= 0)[:, None, None, None]
            logits[..., a] = torch.where(cond, 1.0, 0.0)  # conditional: b slightly ahead of a
            logits[..., b] = torch.where(cond, 1.2, 1.5)  # unconditional: b far ahead
            return logits

    z_cond, region = _condition()
    plain = ClassModel(_target())
    out = decode_nonautoregressive(plain, task="CFP", class_labels=torch.tensor([1, 2]), temperature=0.0,
                                   condition_tokens=z_cond, condition_mask=region)
    assert (out == b).all() and plain.calls[0]["tokens"].shape[0] == 2
    guided = ClassModel(_target())
    out = decode_nonautoregressive(guided, task="CFP", class_labels=torch.tensor([1, 2]), temperature=0.0,
                                   guidance_scale=3.0, condition_tokens=z_cond, condition_mask=region)
    assert (out == a).all()  # 0 + 3 (1 - 0) = 3 beats 1.5 + 3 (1.2 - 1.5) = 0.6
    first = guided.calls[0]
    assert first["tokens"].shape[0] == 4 and len(guided.calls) == 12  # cond and uncond in one pass per step
    assert first["labels"].tolist() == [1, 2, -1, -1]
    assert torch.equal(first["refine"][:2], region) and not first["refine"][2:].any()
    assert (first["tokens"][2:] == MASK).all()  # the unconditional half never sees the condition tokens


def test_seeds_reproduce_with_a_real_model():
    torch.manual_seed(0)
    model = MaskedTokenTransformer(magvit_transformer_tiny()).eval()

    def run(seed, **kw):
        return decode_nonautoregressive(model, task="CG", class_labels=torch.tensor([0, 1, 2]), num_steps=6,
                                        generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert torch.equal(run(0, guidance_scale=2.0), run(0, guidance_scale=2.0))
    ar = [decode_autoregressive(model, task="CG", batch_size=2, generator=torch.Generator().manual_seed(3))
          for _ in range(2)]
    assert torch.equal(ar[0], ar[1]) and ar[0].max() < 32


def test_end_to_end_frame_prediction_with_a_stand_in_tokenizer():
    torch.manual_seed(0)
    model = MaskedTokenTransformer(magvit_transformer_tiny()).eval()

    class Tokenizer:
        def encode(self, video):
            return (F.avg_pool3d(video, (2, 4, 4)).mean(1) * 15 + 16).long().clamp(0, 31)

    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    cond = prepare_condition("FP", video, Tokenizer())
    out = decode_nonautoregressive(model, task="FP", condition_tokens=cond.tokens, condition_mask=cond.mask,
                                   refine_condition=False, num_steps=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, *model.config.grid) and torch.equal(out[cond.mask], cond.tokens[cond.mask])


def test_decoding_rejects_bad_arguments():
    model = TargetModel(_target())
    z_cond, region = _condition()
    with pytest.raises(VidgenError, match="give both or neither"):
        decode_nonautoregressive(model, condition_tokens=z_cond)
    with pytest.raises(VidgenError, match="must both be \\(B, 2, 4, 4\\)"):
        decode_nonautoregressive(model, condition_tokens=z_cond[:, :1], condition_mask=region[:, :1])
    with pytest.raises(VidgenError, match="num_steps=0"):
        decode_nonautoregressive(model, num_steps=0)
    with pytest.raises(VidgenError, match="class_labels has batch size 3, expected 2"):
        decode_nonautoregressive(model, condition_tokens=z_cond, condition_mask=region,
                                 class_labels=torch.tensor([0, 1, 2]))
    with pytest.raises(VidgenError, match="temperature=-1"):
        sample_logits(torch.zeros(2, K), -1, None)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(VidgenError, match=rf"top_p={bad} must be in \(0, 1\]"):
            sample_logits(torch.zeros(2, K), 1.0, None, top_p=bad)
        with pytest.raises(VidgenError, match="top_p="):
            decode_nonautoregressive(model, top_p=bad)  # before the first forward pass
        with pytest.raises(VidgenError, match="top_p="):
            decode_autoregressive(model, top_p=bad)
    assert not model.calls


def test_top_p_draws_only_from_the_nucleus_in_proportion():
    """Nucleus sampling: tokens outside the smallest set holding top_p are never drawn, the ones inside
    keep their relative odds; top_p = 1 is plain sampling, draw for draw."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05] + [0.0] * (K - 4)) * 0.96 + 0.04 / K  # a smoothed floor
    logits = probs.log().expand(20000, K)
    draws = sample_logits(logits, 1.0, torch.Generator().manual_seed(0), top_p=0.75)
    counts = torch.bincount(draws, minlength=K).float() / len(draws)
    # 0.48 + 0.288 >= 0.75: the two most likely tokens only, in the ratio 0.5 : 0.3.
    assert counts[2:].sum() == 0, counts
    assert abs(counts[0] - 0.625) < 0.015 and abs(counts[1] - 0.375) < 0.015, counts[:2]
    # Without the nucleus the floor is drawn (4% of the mass over 12 other tokens + tokens 2, 3).
    plain = sample_logits(logits, 1.0, torch.Generator().manual_seed(0))
    assert (plain >= 4).float().mean() > 0.02
    assert torch.equal(plain, sample_logits(logits, 1.0, torch.Generator().manual_seed(0), top_p=1.0))
    # A temperature is applied before the nucleus is taken: at T = 2 (odds ~ sqrt p) tokens 0-3 hold
    # 0.28 + 0.22 + 0.16 + 0.09 and the floor 0.25, so 0.7 needs four tokens.
    hot = sample_logits(logits, 2.0, torch.Generator().manual_seed(0), top_p=0.7)
    assert set(hot.unique().tolist()) == {0, 1, 2, 3}
    # The most likely token is always kept, however small top_p is; temperature 0 ignores top_p.
    assert set(sample_logits(logits[:50], 1.0, torch.Generator().manual_seed(1), top_p=1e-6).tolist()) == {0}
    assert torch.equal(sample_logits(logits[:5], 0.0, None, top_p=0.3), torch.zeros(5, dtype=torch.long))


def test_negative_text_is_the_unconditional_branch_of_guidance():
    """With negative_text the second half of the guided batch holds it (padded to the prompt's length)
    instead of the prompt with every position masked; bad shapes and a negative without a prompt fail."""
    target = _target()
    model = TargetModel(target)
    text, negative = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    seen = []

    def spy(tokens, text=None, text_mask=None, **kwargs):
        seen.append((text.clone(), text_mask.clone()))
        return TargetModel.forward(model, tokens, **kwargs)

    model.forward = spy
    decode_nonautoregressive(model, task="T2V", text=text, num_steps=1, guidance_scale=3.0,
                             negative_text=negative, negative_text_mask=torch.tensor([[1, 1, 1, 0, 0]] * 2).bool())
    both, mask = seen[-1]
    assert both.shape == (4, 5, 8) and torch.equal(both[:2, :3], text) and not both[:2, 3:].any()
    assert torch.equal(both[2:], negative)
    assert mask[:2].tolist() == [[True] * 3 + [False] * 2] * 2 and mask[2:].tolist() == [[True] * 3 + [False] * 2] * 2
    decode_autoregressive(model, task="T2V", text=text, guidance_scale=3.0, negative_text=negative[:, :2],
                          max_tokens=1)
    both, mask = seen[-1]
    assert torch.equal(both[2:, :2], negative[:, :2]) and mask[2:].tolist() == [[True, True, False]] * 2
    decode_nonautoregressive(model, task="T2V", text=text, num_steps=1, guidance_scale=3.0)
    both, mask = seen[-1]  # without a negative prompt: the prompt, every position masked (no text)
    assert torch.equal(both[2:], text) and not mask[2:].any()
    with pytest.raises(VidgenError, match="needs a prompt"):
        decode_nonautoregressive(model, task="CG", batch_size=2, negative_text=negative)
    with pytest.raises(VidgenError, match=r"negative_text \(2, 5, 4\) must be \(B=2, L, D=8\)"):
        decode_nonautoregressive(model, task="T2V", text=text, negative_text=negative[..., :4])
    with pytest.raises(VidgenError, match="negative_text_mask needs negative_text"):
        decode_nonautoregressive(model, task="T2V", text=text, negative_text_mask=torch.ones(2, 3).bool())


def test_top_p_reaches_every_decoding_draw():
    """decode_nonautoregressive / decode_autoregressive pass top_p to each sample: a model whose every
    position puts 0.9 on its target and spreads the rest over other codes decodes exactly the target
    with top_p 0.85, and not without it."""

    class Spread(TargetModel):
        def forward(self, tokens, **kwargs):
            logits = super().forward(tokens, **kwargs)
            return torch.where(logits > 0, torch.tensor(math.log(0.9)), torch.tensor(math.log(0.1 / (K - 1))))

    target = _target()
    for decode in (lambda m, **kw: decode_nonautoregressive(m, task="CG", batch_size=2, num_steps=4, **kw),
                   lambda m, **kw: decode_autoregressive(m, task="CG", batch_size=2, **kw)):
        nucleus = decode(Spread(target), top_p=0.85, generator=torch.Generator().manual_seed(0))
        assert torch.equal(nucleus, target)
        plain = decode(Spread(target), generator=torch.Generator().manual_seed(0))
        assert not torch.equal(plain, target)


# ----------------------------------------------------------------------------- autoregressive baseline


def test_autoregressive_decodes_one_token_per_pass_in_raster_order():
    target = _target()
    z_cond, region = _condition()
    model = TargetModel(target)
    out = decode_autoregressive(model, task="FP", condition_tokens=z_cond, condition_mask=region,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, target)
    assert len(model.calls) == N  # one forward pass per token
    for i, call in enumerate(model.calls):
        flat, refine = call["tokens"].flatten(1), call["refine"].flatten(1)
        assert torch.equal(flat[:, :i], target.flatten(1)[:, :i])  # earlier tokens known
        later = flat[:, i:]
        in_region = region.flatten(1)[:, i:]
        assert (later[~in_region] == MASK).all()  # i and later: [MASK] ...
        assert torch.equal(later[in_region], z_cond.flatten(1)[:, i:][in_region])  # ... or z~ in the region
        assert torch.equal(refine[:, i:], in_region) and not refine[:, :i].any()


def test_autoregressive_skips_fixed_condition_positions_and_can_stop_early():
    target = _target()
    z_cond, region = _condition()
    model = TargetModel(target)
    out = decode_autoregressive(model, task="FP", condition_tokens=z_cond, condition_mask=region,
                                refine_condition=False, generator=torch.Generator().manual_seed(0))
    assert len(model.calls) == N - 16
    assert torch.equal(out[region], z_cond[region]) and torch.equal(out[~region], target[~region])
    partial = decode_autoregressive(TargetModel(target), task="CG", batch_size=2, max_tokens=5)
    assert torch.equal(partial.flatten(1)[:, :5], target.flatten(1)[:, :5])
    assert (partial.flatten(1)[:, 5:] == MASK).all()
