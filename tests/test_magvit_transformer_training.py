"""MAGVIT transformer training: precomputed COMMIT conditions, the token cache, the recipe kind
"magvit-transformer" (smoke recipe end to end, pipeline export, exact resume)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from vidgen.errors import VidgenError
from vidgen.generators.masked_transformer import MaskedTokenTransformer, magvit_transformer_tiny
from vidgen.tasks import MagvitObjective, get_task, get_tasks, prepare_condition
from vidgen.tasks.commit import precomputed_condition
from vidgen.text.encoders import TextEmbeddings
from vidgen.tokenizers.magvit_vq import magvit_vq_tiny
from vidgen.training.token_cache import (
    CachedTokens,
    TokenBatcher,
    build_cache,
    cache_key,
    condition_specs,
)

ALL = ["FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD", "CG", "CFP", "T2V"]


class FakeTextEncoder:
    """Deterministic 8-d "embeddings" (one token per word), so cache tests need no MiniLM."""

    dim = 8

    def encode(self, prompts, pad_to_max_length=False):
        length = 6
        embeddings = torch.zeros(len(prompts), length, self.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, prompt in enumerate(prompts):
            words = prompt.split()[:length]
            for j, word in enumerate(words):
                embeddings[i, j] = torch.tensor([float(ord(c)) for c in (word * 8)[:8]]) / 128
            mask[i, :len(words)] = True
        return TextEmbeddings(embeddings, mask, embeddings.mean(1))


@pytest.fixture(scope="module")
def tiny_vq():
    torch.manual_seed(0)
    return magvit_vq_tiny().eval()


@pytest.fixture(scope="module")
def clips():
    from vidgen.data import get_dataset

    return get_dataset("shapes+digits", split="train", num_items=3, size=32, num_frames=8)


# ----------------------------------------------------------------------------- precomputed conditions


def test_precomputed_condition_picks_one_draw_per_example():
    fp, opd, cg = get_tasks(["FP", "OPD", "CG"])
    tokens = {"FP": torch.arange(3 * 1 * 8).view(3, 1, 2, 2, 2),
              "OPD": 100 + torch.arange(3 * 4 * 8).view(3, 4, 2, 2, 2)}
    masks = {"FP": torch.ones(3, 1, 2, 2, 2, dtype=torch.bool),
             "OPD": torch.zeros(3, 4, 2, 2, 2, dtype=torch.bool)}
    masks["OPD"][:, :, 0] = True  # the first token frame is the condition of every draw
    z, region = precomputed_condition([fp, opd, cg], tokens, masks, torch.tensor([0.3, 0.6, 0.9]))
    assert torch.equal(z[0], tokens["FP"][0, 0]) and region[0].all()
    # example 1 takes draw floor(0.6 * 4) = 2 of OPD; outside its region the tokens are zeroed
    assert torch.equal(region[1], masks["OPD"][1, 2])
    assert torch.equal(z[1][0], tokens["OPD"][1, 2][0]) and (z[1][1] == 0).all()
    assert (z[2] == 0).all() and not region[2].any()  # CG has no pixels
    with pytest.raises(VidgenError, match="no precomputed condition for task FI"):
        precomputed_condition(get_tasks(["FI"]), tokens, masks, torch.zeros(1))


def test_objective_trains_on_precomputed_tokens_with_commit_inputs():
    torch.manual_seed(0)
    model = MaskedTokenTransformer(magvit_transformer_tiny())  # codebook 32, grid (2, 4, 4), 4 classes
    b = 6
    target = torch.randint(0, 32, (b, 2, 4, 4))
    condition = {"FP": torch.randint(0, 32, (b, 1, 2, 4, 4)), "OPC": torch.randint(0, 32, (b, 1, 2, 4, 4))}
    region = torch.zeros(b, 1, 2, 4, 4, dtype=torch.bool)
    region[:, :, 0] = True
    batch = {"tokens": target, "class_id": torch.arange(b) % 4, "condition_tokens": condition,
             "condition_masks": {"FP": region, "OPC": region}}
    objective = MagvitObjective(None, condition_dropout=0.0)
    # Without a video, the pixel tasks on offer are those with precomputed conditions.
    assert [t.abbreviation for t in objective.tasks_for(model, batch)] == ["FP", "OPC", "CG"]
    seen = []
    original = model.forward

    def spy(tokens, **kwargs):
        seen.append((tokens.clone(), kwargs["condition_positions"].clone(), kwargs["task"].clone()))
        return original(tokens, **kwargs)

    model.forward = spy
    out = objective(model, batch, torch.Generator().manual_seed(3))
    inputs, refine, task = seen[0]
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    assert set(out) >= {"refine", "mask", "recon", "mask_accuracy", "mask_ratio"}
    # COMMIT: refine positions hold the condition token, only inside the region of pixel tasks.
    pixel = torch.tensor([t in (get_task("FP").token, get_task("OPC").token) for t in task.tolist()])
    assert refine.any() and not refine[~pixel].any() and not refine[:, 1].any()
    name = {get_task("FP").token: "FP", get_task("OPC").token: "OPC"}
    for i in torch.nonzero(pixel).flatten().tolist():
        z = condition[name[int(task[i])]][i, 0]
        assert torch.equal(inputs[i][refine[i]], z[refine[i]])
    unmasked = inputs < 32
    assert torch.equal(inputs[unmasked & ~refine], target[unmasked & ~refine])
    with pytest.raises(VidgenError, match="FI needs"):
        MagvitObjective(None, tasks=["FI"]).tasks_for(model, batch)


# ----------------------------------------------------------------------------- the token cache


def test_token_cache_matches_on_the_fly_tokenization(tmp_path, tiny_vq, clips):
    specs = condition_specs(get_tasks(ALL), dynamic_draws=4)
    assert [s.name for s in specs] == ["FP", "FI", "OPC", "OPV", "OPH", "OPD", "IPC", "IPD"]
    assert specs[0].tasks == ("FP", "CFP")  # same region and padding: one cached condition
    logs = []
    cache = build_cache(tmp_path, "k", clips, tiny_vq, FakeTextEncoder(), specs, torch.device("cpu"),
                        batch_size=2, log=logs.append)
    video = torch.stack([clips[i]["video"] for i in range(3)])
    assert cache.grid == (2, 4, 4) and len(cache) == 3 and cache.video_shape == (3, 8, 32, 32)
    assert torch.equal(cache.tokens.long(), tiny_vq.encode(video))
    assert cache.class_id.tolist() == [clips[i]["class_id"] for i in range(3)]
    assert cache.captions[0] == "" and [cache.captions[i] for i in cache.caption_index] == \
        [clips[i]["caption"] for i in range(3)]
    for task in ("FP", "OPC", "IPC", "FI"):  # fixed regions: exactly what prepare_condition gives
        expected = prepare_condition(task, video, tiny_vq)
        name = cache.task_conditions[task]
        mask = cache.condition_masks[name][0, 0]
        assert torch.equal(mask.expand(3, *mask.shape), expected.mask)
        assert torch.equal(torch.where(mask, cache.conditions[name][:, 0].long(), 0), expected.tokens)
    # Dynamic: four distinct moving regions per clip (all motions), each tokenized with its own padding.
    opd = cache.condition_masks["OPD"]
    assert opd.shape == (3, 4, 2, 4, 4)
    assert all(len({tuple(opd[i, d].flatten().tolist()) for d in range(4)}) == 4 for i in range(3))

    batch = TokenBatcher(cache)([CachedTokens(cache)[i] for i in range(3)])
    assert batch["condition_tokens"]["CFP"] is batch["condition_tokens"]["FP"]
    assert batch["condition_tokens"]["OPD"].shape == (3, 4, 2, 4, 4)
    assert batch["text_mask"].any(0).all()  # trimmed to the longest caption of the batch
    again = build_cache(tmp_path, "k", clips, tiny_vq, FakeTextEncoder(), specs, torch.device("cpu"),
                        log=logs.append)
    assert "reusing" in logs[-1] and torch.equal(again.conditions["OPD"], cache.conditions["OPD"])


def test_token_cache_key_follows_tokenizer_data_and_conditions(tmp_path):
    torch.manual_seed(0)
    a, b = tmp_path / "a", tmp_path / "b"
    magvit_vq_tiny().save_pretrained(a)
    magvit_vq_tiny().save_pretrained(b)  # other random weights
    specs = condition_specs(get_tasks(ALL), 2)
    data = {"name": "shapes+digits", "num_items": 8}
    key = cache_key(a, data, specs, "minilm", 16, 0)
    assert key == cache_key(a, dict(data), specs, "minilm", 16, 0)
    others = {cache_key(b, data, specs, "minilm", 16, 0), cache_key(a, {**data, "num_items": 9}, specs, "minilm", 16, 0),
              cache_key(a, data, condition_specs(get_tasks(ALL), 4), "minilm", 16, 0),
              cache_key(a, data, specs, "minilm", 32, 0), cache_key(a, data, specs, "minilm", 16, 1)}
    assert key not in others and len(others) == 5


# ----------------------------------------------------------------------------- the recipe kind


def cli(*argv) -> int:
    from vidgen.cli import main as cli_main

    saved = cli_main.COMMAND_MODULES
    cli_main.COMMAND_MODULES = ["vidgen.cli.train"]
    try:
        return cli_main.main(list(argv))
    finally:
        cli_main.COMMAND_MODULES = saved


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vq") / "final"
    magvit_vq_tiny().save_pretrained(folder)
    return folder


def smoke_args(tokenizer_dir) -> list[str]:
    # CG samples: class 16 (trained) plus a held-out Shapes triple, which no training clip has (must be skipped).
    from vidgen.data.shapes import HELDOUT_TRIPLES, class_id

    return ["--set", f"condition.tokenizer=\"{tokenizer_dir}\"",
            "--set", f"sample.class_labels=[16, {class_id(*HELDOUT_TRIPLES[0])}]", "--no-progress"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tokenizer_dir):
    """`vidgen train magvit-shapes-transformer-smoke` once (4 steps of the tiny transformer on 8 clips)."""
    run = tmp_path_factory.mktemp("magvit-transformer") / "straight"
    assert cli("train", "magvit-shapes-transformer-smoke", "--output", str(run), *smoke_args(tokenizer_dir)) == 0
    return run


def test_smoke_recipe_logs_parts_and_exports_a_pipeline_folder(smoke_run, tokenizer_dir):
    from vidgen.modeling import load_safetensors, read_json

    records = [json.loads(line) for line in (smoke_run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if not r.get("eval")]
    evals = [r for r in records if r.get("eval")]
    assert [r["step"] for r in train] == [2, 4] and [r["step"] for r in evals] == [4]
    assert {"loss", "refine", "mask", "recon", "mask_accuracy", "grad_norm"} <= set(train[0])
    assert all(r["refine"] > 0 and r["mask"] > 0 and r["recon"] > 0 for r in train)
    assert {"heldout_loss", "heldout_refine", "heldout_mask", "heldout_recon"} <= set(evals[0])

    pipeline = smoke_run / "pipeline"
    settings = read_json(pipeline / "pipeline.json")
    assert settings["_class_name"] == "MagvitPipeline" and settings["system"] == "MAGVIT"
    assert settings["text_encoder"] == "minilm" and settings["text_max_length"] == 16
    assert (settings["num_frames"], settings["height"], settings["width"], settings["fps"]) == (8, 32, 32, 8.0)
    assert settings["default_steps"] == 2 and settings["recipe"] == "magvit-shapes-transformer-smoke.toml"
    # Decoding defaults: CG / T2V sample, the pixel tasks take the most likely token ([sample] defaults).
    assert (settings["temperature"], settings["pixel_temperature"], settings["pixel_guidance"]) == (1.0, 0.0, 1.0)
    assert "pixel_choice_temperature" not in settings  # unset in the recipe: the model-wide value applies
    assert settings["top_p"] == 0.8 and "pixel_top_p" not in settings
    assert len(settings["class_names"]) == 82 and settings["class_names"][75] == "digit 3"
    # Classes no training clip had are listed (their embeddings are untrained): all 16 held-out Shapes
    # triples at least, and none that a training item carries.
    from vidgen.data.mixed import ShapesDigitsDataset
    from vidgen.data.shapes import HELDOUT_TRIPLES, class_id

    seen = {ShapesDigitsDataset(split="train", num_items=8, size=32, num_frames=8)[i]["class_id"] for i in range(8)}
    untrained = settings["untrained_classes"]
    assert untrained == sorted(set(range(82)) - seen) and {class_id(*t) for t in HELDOUT_TRIPLES} <= set(untrained)
    assert settings["tasks"] == {
        "text-to-video": ["default"], "class-to-video": ["default"],
        "predict": ["first frame", "class + first frame"], "interpolate": ["first and last frame"],
        "outpaint": ["central", "vertical", "horizontal", "dynamic"], "inpaint": ["central", "dynamic"]}
    config = read_json(pipeline / "transformer" / "config.json")
    assert config["num_classes"] == 82 and config["text_dim"] == 384 and config["grid"] == [2, 4, 4]
    weights = load_safetensors(pipeline / "transformer" / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in weights.values() if v.is_floating_point())
    # The tokenizer is the exact one the tokens were cached with.
    assert (pipeline / "tokenizer" / "model.safetensors").read_bytes() == \
        (tokenizer_dir / "model.safetensors").read_bytes()
    names = sorted(p.name for p in (smoke_run / "samples").iterdir())  # the untrained class is skipped
    assert names == ["step_0000004_CG_class16.gif", "step_0000004_FP.gif", "step_0000004_T2V_00.gif"]

    from vidgen.pipelines.magvit import MagvitPipeline

    pipe = MagvitPipeline.from_pretrained(pipeline, device="cpu")
    assert pipe.transformer.config.codebook_size == 128


def test_smoke_resume_is_exact_and_reuses_the_cache(tmp_path, tokenizer_dir, smoke_run, capsys):
    from conftest import rewound_copy
    from vidgen.modeling import load_safetensors

    # The 4-step run interrupted after its step-2 checkpoint, then --resume: the same weights as 4 straight
    # steps (tasks, masks, condition draws and condition dropout all come from the checkpointed generator),
    # and the token cache is reused.
    # A fresh run tokenizes the clips once ...
    assert cli("train", "magvit-shapes-transformer-smoke", "--output", str(tmp_path / "fresh"), "--steps", "0",
               *smoke_args(tokenizer_dir)) == 0
    assert "token cache: tokenizing 8 of 8 clips" in capsys.readouterr().out
    # ... and a resumed one reuses its cache.
    split = rewound_copy(smoke_run, tmp_path / "split", 2)
    assert cli("train", "magvit-shapes-transformer-smoke", "--output", str(split), "--resume",
               *smoke_args(tokenizer_dir)) == 0
    out = capsys.readouterr().out
    assert "token cache: reusing" in out and "tokenizing" not in out and "step_00000002" in out
    a = load_safetensors(smoke_run / "final" / "model.safetensors")
    b = load_safetensors(split / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_object_weight_marks_the_object_tokens_of_the_cached_clips(tmp_path, tokenizer_dir, smoke_run, capsys):
    """objective.object_weight: the run finds the tokens objects cover in the clips (not in the cache) and
    weighs them more: with every weight >= 1 the first steps' losses exceed the plain run's."""
    run = tmp_path / "objects"
    assert cli("train", "magvit-shapes-transformer-smoke", "--output", str(run), "--set",
               "objective.object_weight=3.0", *smoke_args(tokenizer_dir)) == 0
    share = re.search(r"objective.object_weight = 3 on the tokens objects cover \(([\d.]+)% of the training tokens\)",
                      capsys.readouterr().out)
    assert share and 0 < float(share.group(1)) < 100

    def losses(folder):
        return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()
                if not json.loads(line).get("eval")]

    assert all(weighted > plain for weighted, plain in zip(losses(run), losses(smoke_run)))
    from vidgen.training.recipes import load_recipe

    with pytest.raises(VidgenError, match="objective.object_weight = 0.0: expected a number > 0"):
        load_recipe("magvit-shapes-transformer-smoke", ["objective.object_weight=0.0"])


def test_recipe_errors_name_the_allowed_values(tmp_path):
    from vidgen.training.recipes import load_recipe

    with pytest.raises(VidgenError, match="unknown task 'XX'"):
        load_recipe("magvit-shapes-transformer-smoke", ["objective.tasks=[\"FP\", \"XX\"]"])
    with pytest.raises(VidgenError, match="one weight per task"):
        load_recipe("magvit-shapes-transformer-smoke", ["objective.task_weights=[1.0]"])
    with pytest.raises(VidgenError, match="only pixel tasks"):
        load_recipe("magvit-shapes-transformer-smoke", ["sample.tasks=[\"CG\"]"])
    with pytest.raises(VidgenError, match=r"sample.guidance, .*pixel_temperature.* >= 0; got steps = 2, pixel_temperature = -0.5"):
        load_recipe("magvit-shapes-transformer-smoke", ["sample.pixel_temperature=-0.5"])
    with pytest.raises(VidgenError, match=r"sample.top_p = 0.0, sample.pixel_top_p = 1.5: expected a number in \(0, 1\]"):
        load_recipe("magvit-shapes-transformer-smoke", ["sample.top_p=0.0", "sample.pixel_top_p=1.5"])
    from vidgen.training.magvit_transformer import _resolve_tokenizer

    with pytest.raises(VidgenError, match="condition.tokenizer = .* is not a MagvitVQ folder"):
        _resolve_tokenizer(str(tmp_path / "missing"))
    # A pipeline folder (here the bundled one) gives its MagvitVQ sub-folder; one without a MagvitVQ is refused.
    from vidgen.modeling import BUNDLED_DIR

    assert _resolve_tokenizer("magvit-shapes") == BUNDLED_DIR / "magvit-shapes" / "tokenizer"
    with pytest.raises(VidgenError, match="no sub-folder\\(s\\) holding a MagvitVQ"):
        _resolve_tokenizer("cogvideox-shapes")


def test_code_geometry_run_stores_the_tokenizers_codes(tmp_path, tokenizer_dir, capsys):
    """model.code_dim: the run fills the code vectors from the tokenizer it cached with (standardised), and
    the exported pipeline loads them; a width other than the tokenizer's is refused by name."""
    from vidgen.modeling import load_safetensors
    from vidgen.pipelines.magvit import MagvitPipeline
    from vidgen.tokenizers.magvit_vq import MagvitVQ

    assert cli("train", "magvit-shapes-transformer-smoke", "--output", str(tmp_path / "bad"), "--set",
               "model.code_dim=8", *smoke_args(tokenizer_dir)) != 0
    assert "model.code_dim = 8 must equal the tokenizer's code width 16" in capsys.readouterr().err
    run = tmp_path / "codes"
    assert cli("train", "magvit-shapes-transformer-smoke", "--output", str(run), "--set", "model.code_dim=16",
               *smoke_args(tokenizer_dir)) == 0
    codebook = MagvitVQ.from_pretrained(tokenizer_dir).quantizer.codebook()
    expected = (codebook - codebook.mean(0)) / (codebook - codebook.mean(0)).std()
    stored = load_safetensors(run / "final" / "model.safetensors")["code_vectors"]
    torch.testing.assert_close(stored.float(), expected.to(stored.dtype).float(), atol=1e-6, rtol=0)  # as stored (bf16)
    pipe = MagvitPipeline.from_pretrained(run / "pipeline", device="cpu")
    assert pipe.transformer.config.code_dim == 16 and pipe.transformer.code_output.weight.abs().sum() > 0
