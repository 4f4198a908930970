"""Checkpoints: config.json + model.safetensors round trips, atomic writes and clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vidgen import modeling
from vidgen.errors import CheckpointError, VidgenError
from vidgen.modeling import PretrainedModel, atomic_save_safetensors, atomic_write_text, resolve_model_path


@dataclasses.dataclass
class TinyConfig:
    dim: int = 8
    hidden: tuple[int, ...] = (6, 4)
    kernels: tuple[tuple[int, int], ...] = ((1, 3), (3, 3))
    scale: float = 0.1
    name: str = "tiny"
    use_bias: bool = True


class TinyModel(PretrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.inp = nn.Linear(config.dim, config.hidden[0], bias=config.use_bias)
        self.out = nn.Linear(config.hidden[0], config.hidden[1], bias=config.use_bias)
        self.register_buffer("steps", torch.arange(5))  # an integer buffer: never cast to bf16

    def forward(self, x):
        return self.out(torch.tanh(self.inp(x)))


class OtherModel(TinyModel):
    """Same config class and weights, different name: its checkpoints must not load as TinyModel."""


def _tmp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = TinyModel(TinyConfig())
    model.save_pretrained(tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


# ----------------------------------------------------------------------------- round trips


def test_round_trip_weights_and_config(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    data = json.loads((folder / "config.json").read_text())
    assert data["_class_name"] == "TinyModel" and data["kernels"] == [[1, 3], [3, 3]]
    loaded = TinyModel.from_pretrained(folder)
    assert loaded.config == model.config  # tuples (also nested) come back as tuples
    assert isinstance(loaded.config.hidden, tuple) and isinstance(loaded.config.kernels[0], tuple)
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)
    x = torch.randn(3, 8)
    assert torch.equal(model(x), loaded(x))


def test_round_trip_non_default_config_and_dtype(tmp_path):
    config = TinyConfig(dim=5, hidden=(7, 2), kernels=((5, 5),), scale=1e-3, name="x", use_bias=False)
    TinyModel(config).save_pretrained(tmp_path)
    loaded = TinyModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.config == config and loaded.inp.weight.shape == (7, 5) and loaded.inp.bias is None
    assert loaded.inp.weight.dtype == torch.bfloat16


def test_bf16_storage_loads_back_close(tmp_path):
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(dim=64, hidden=(64, 64)))
    model.save_pretrained(tmp_path / "fp32")
    model.save_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    stored = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert stored["inp.weight"].dtype == torch.bfloat16 and stored["steps"].dtype == torch.int64
    size = lambda name: (tmp_path / name / "model.safetensors").stat().st_size
    assert size("bf16") < 0.6 * size("fp32")
    loaded = TinyModel.from_pretrained(tmp_path / "bf16")
    assert loaded.inp.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.inp.weight, model.inp.weight, rtol=1e-2, atol=1e-3)
    assert not torch.equal(loaded.inp.weight, model.inp.weight)  # it really went through bf16
    assert torch.equal(loaded.steps, model.steps)


def test_tied_weights_save_and_load(tmp_path):
    model = TinyModel(TinyConfig(dim=4, hidden=(4, 4)))
    model.out.weight = model.inp.weight  # two names, one storage: safetensors refuses that as is
    model.save_pretrained(tmp_path)
    loaded = TinyModel(TinyConfig(dim=4, hidden=(4, 4)))
    loaded.load_state_dict_strict(load_file(str(tmp_path / "model.safetensors")))
    assert torch.equal(loaded.out.weight, model.inp.weight)


# ----------------------------------------------------------------------------- atomic writes


def test_save_leaves_no_temp_files_and_overwrites(saved):
    model, folder = saved
    torch.manual_seed(1)
    TinyModel(TinyConfig()).save_pretrained(folder)
    assert _tmp_files(folder) == []
    assert not torch.equal(TinyModel.from_pretrained(folder).inp.weight, model.inp.weight)


def test_failed_save_keeps_previous_checkpoint(saved, monkeypatch):
    model, folder = saved
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def half_write_then_fail(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(modeling, "save_file", half_write_then_fail)
    other = TinyModel(TinyConfig(dim=3, hidden=(2, 2)))
    with pytest.raises(OSError, match="disk full"):
        other.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # untouched, no temp files
    loaded = TinyModel.from_pretrained(folder)
    assert torch.equal(loaded.inp.weight, model.inp.weight)


def test_failed_text_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_text(target, "old")

    def fail(fd):
        raise OSError("io error")

    monkeypatch.setattr(modeling.os, "fsync", fail)
    with pytest.raises(OSError, match="io error"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and _tmp_files(tmp_path) == []



def test_atomic_folder_write_replaces_only_a_complete_folder(tmp_path):
    target = tmp_path / "export"
    modeling.atomic_write_dir(target, lambda tmp: (tmp / "a.txt").write_text("one"))
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]

    def fail_halfway(tmp):
        (tmp / "b.txt").write_text("two")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        modeling.atomic_write_dir(target, fail_halfway)
    assert [(p.name, p.read_text()) for p in target.iterdir()] == [("a.txt", "one")]  # untouched
    assert modeling.atomic_write_dir(target, lambda tmp: (tmp / "b.txt").write_text("two")) == target
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp or old folders left

@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_writes_get_the_usual_permissions(tmp_path):
    # mkstemp creates 0600 files; a checkpoint must be readable like any file the user writes.
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "notes.txt", "hello")
        atomic_save_safetensors({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
        TinyModel(TinyConfig()).save_pretrained(tmp_path / "ckpt")
    finally:
        os.umask(previous)
    written = [tmp_path / "notes.txt", tmp_path / "w.safetensors", tmp_path / "ckpt" / "config.json",
               tmp_path / "ckpt" / "model.safetensors"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: "0o640" for p in written}
    assert _tmp_files(tmp_path) == [] and _tmp_files(tmp_path / "ckpt") == []


# ----------------------------------------------------------------------------- errors


def test_missing_files_name_the_path(tmp_path, saved):
    with pytest.raises(CheckpointError, match=str(tmp_path / "config.json")):
        TinyModel.from_pretrained(tmp_path)
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=str(folder / "model.safetensors")):
        TinyModel.from_pretrained(folder)


@pytest.mark.parametrize("content", [random.Random(0).randbytes(1000), b"",
                                     b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}", b"\xff" * 64],
                         ids=["random", "empty", "bad-header", "huge-header"])
def test_corrupt_safetensors(saved, content):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        TinyModel.from_pretrained(folder)


def test_truncated_safetensors(saved):
    _, folder = saved
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        TinyModel.from_pretrained(folder)


@pytest.mark.parametrize("content, match", [
    (b"{not json", "cannot parse"),
    (b"[1, 2, 3]", "must hold a JSON object, got list"),
    (b"\"a string\"", "must hold a JSON object, got str"),
    (b"\xff\xfe\x00garbage", "cannot parse"),
])
def test_corrupt_config(saved, content, match):
    _, folder = saved
    (folder / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as info:
        TinyModel.from_pretrained(folder)
    assert "config.json" in str(info.value)


def test_unknown_config_keys_list_allowed(saved):
    _, folder = saved
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "depth": 4, "heads": 2}))
    with pytest.raises(CheckpointError) as info:
        TinyModel.from_pretrained(folder)
    message = str(info.value)
    assert "['depth', 'heads']" in message
    for field in dataclasses.fields(TinyConfig):
        assert field.name in message.split("allowed keys:")[1]


def test_wrong_class_name(saved):
    _, folder = saved
    with pytest.raises(CheckpointError, match="describes a TinyModel, not a OtherModel"):
        OtherModel.from_pretrained(folder)


def test_mismatched_weights_list_every_problem(saved):
    model, folder = saved
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["out.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["inp.weight"] = torch.zeros(3, 3)
    atomic_save_safetensors(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        TinyModel.from_pretrained(folder)
    message = str(info.value)
    assert "missing keys: out.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "inp.weight: checkpoint (3, 3) vs model (6, 8)" in message
    assert str(folder / "model.safetensors") in message


def test_unknown_model_name_lists_bundled(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    for name in ("shapes-vae", "cogvideox-shapes"):
        (bundled / name).mkdir(parents=True)
    TinyModel(TinyConfig()).save_pretrained(bundled / "cogvideox-shapes" / "vae")
    monkeypatch.setattr(modeling, "BUNDLED_DIR", bundled)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"'no-such-model'.*bundled models: cogvideox-shapes, shapes-vae"):
        TinyModel.from_pretrained("no-such-model")
    assert TinyModel.from_pretrained("cogvideox-shapes/vae").config == TinyConfig()
    (tmp_path / "secret").mkdir()
    with pytest.raises(CheckpointError, match="neither a local folder"):
        resolve_model_path("../secret")  # relative to the bundled folder: must not escape it
    with pytest.raises(CheckpointError):
        resolve_model_path("")  # not the current folder


def test_no_bundled_models_says_none(tmp_path, monkeypatch):
    monkeypatch.setattr(modeling, "BUNDLED_DIR", tmp_path / "absent")
    with pytest.raises(CheckpointError, match=r"bundled models: \(none\)"):
        TinyModel.from_pretrained(tmp_path / "nope")


class _Payload:
    """Unpickling this creates a marker folder: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_loading_never_unpickles(saved, monkeypatch):
    model, folder = saved
    marker = folder.parent / "unpickled"
    for name in ("pytorch_model.bin", "model.pt", "model.ckpt"):
        (folder / name).write_bytes(pickle.dumps({"inp.weight": _Payload(marker)}))

    def forbidden(*args, **kwargs):
        raise AssertionError("a pickle loader was called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    loaded = TinyModel.from_pretrained(folder)  # the pickles beside it are ignored
    assert torch.equal(loaded.inp.weight, model.inp.weight)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        TinyModel.from_pretrained(folder)
    assert not marker.exists()


def test_errors_are_vidgen_errors_and_config_type_checked():
    assert issubclass(CheckpointError, VidgenError)
    with pytest.raises(TypeError, match="TinyConfig"):
        TinyModel({"dim": 8})
