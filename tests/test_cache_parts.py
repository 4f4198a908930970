"""Cache builds saved in parts: an interrupted token or latent cache build continues where it stopped
and gives the same cache as an uninterrupted one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

from test_magvit_transformer_training import FakeTextEncoder
from vidgen.errors import CheckpointError
from vidgen.training.cache_parts import CacheParts


def _batch(first: int, size: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    rows = torch.arange(first, first + size)
    return {"x": rows[:, None].float().expand(size, 3), "shared": torch.zeros(1, 2)}, [f"clip {i}" for i in rows]


def test_parts_are_saved_and_a_new_build_resumes_after_them(tmp_path):
    folder = tmp_path / "k.parts"
    parts = CacheParts(folder, "k", total=7, every=3, log=lambda _: None)
    for first in (0, 2, 4):  # batches of 2: a part is written once 3 or more clips are buffered
        parts.add(*_batch(first, 2), {"fps": 8.0})
    assert parts.done == 4 and parts.buffered == 2  # one part of clips 0-3; clips 4-5 only in memory
    assert sorted(p.name for p in folder.iterdir()) == ["key.json", "part_00000000.json", "part_00000000.safetensors"]
    # "Interrupted": a new build with the same key continues after the saved part.
    logs = []
    again = CacheParts(folder, "k", total=7, every=3, log=logs.append)
    assert again.done == 4 and "resuming after 4 of 7 clips" in logs[0]
    again.add(*_batch(4, 3), {"fps": 9.0})
    tensors, captions, info = again.collect()
    assert captions == [f"clip {i}" for i in range(7)] and info == {"fps": 9.0}
    assert torch.equal(torch.cat(tensors["x"])[:, 0], torch.arange(7).float())
    assert torch.cat(tensors["shared"]).shape == (3, 2)  # one row per batch kept: 2 saved + 1 after resuming
    again.remove()
    assert not folder.exists()


def test_parts_of_another_build_or_unfinished_parts_are_not_reused(tmp_path):
    folder = tmp_path / "k.parts"
    parts = CacheParts(folder, "k", total=6, every=2, log=lambda _: None)
    for first in (0, 2, 4):
        parts.add(*_batch(first, 2))
    assert parts.done == 6
    # Another key (another tokenizer or dataset): everything is discarded.
    assert CacheParts(folder, "other", total=6, every=2).done == 0 and not list(folder.glob("part_*"))
    parts = CacheParts(folder, "k", total=6, every=2, log=lambda _: None)
    for first in (0, 2, 4):
        parts.add(*_batch(first, 2))
    # A part whose json is missing (stopped between the two writes) ends the resumable run; a damaged one too.
    (folder / "part_00000002.json").unlink()
    assert CacheParts(folder, "k", total=6, every=2).done == 2
    assert not (folder / "part_00000004.json").exists()  # parts after the gap are dropped
    parts = CacheParts(folder, "k", total=6, every=2)
    parts.add(*_batch(2, 2))
    (folder / "part_00000002.safetensors").write_bytes(b"not safetensors")
    logs = []
    assert CacheParts(folder, "k", total=6, every=2, log=logs.append).done == 2 and "unreadable" in logs[0]
    with pytest.raises(CheckpointError, match="hold 2 clips, expected 6"):
        CacheParts(folder, "k", total=6, every=2).collect()
    with pytest.raises(ValueError, match="every=0"):
        CacheParts(folder, "k", total=6, every=0)


class StopAt(Dataset):
    """`dataset`, but reading item `stop` raises KeyboardInterrupt (Ctrl-C during a build); records reads."""

    def __init__(self, dataset, stop: int | None):
        self.dataset, self.stop, self.read = dataset, stop, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if index == self.stop:
            raise KeyboardInterrupt
        self.read.append(index)
        return self.dataset[index]


def test_an_interrupted_token_cache_build_resumes_to_the_same_cache(tmp_path):
    from vidgen.data import get_dataset
    from vidgen.tasks import get_tasks
    from vidgen.tokenizers.magvit_vq import magvit_vq_tiny
    from vidgen.training.token_cache import build_cache, condition_specs

    torch.manual_seed(0)
    tokenizer = magvit_vq_tiny().eval()
    clips = get_dataset("shapes+digits", split="train", num_items=5, size=32, num_frames=8)
    specs = condition_specs(get_tasks(["FP", "OPD", "CG"]), dynamic_draws=2)
    cpu = torch.device("cpu")
    whole = build_cache(tmp_path / "whole", "k", clips, tokenizer, FakeTextEncoder(), specs, cpu, batch_size=2,
                        log=lambda _: None, parts_every=2)
    assert not (tmp_path / "whole" / "k.parts").exists()  # removed once the cache is written
    stopped = StopAt(clips, stop=4)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "run", "k", stopped, tokenizer, FakeTextEncoder(), specs, cpu, batch_size=2,
                    log=lambda _: None, parts_every=2)
    assert not (tmp_path / "run" / "k").exists() and (tmp_path / "run" / "k.parts" / "part_00000002.json").is_file()
    logs, resumed = [], StopAt(clips, stop=None)
    cache = build_cache(tmp_path / "run", "k", resumed, tokenizer, FakeTextEncoder(), specs, cpu, batch_size=2,
                        log=logs.append, parts_every=2)
    assert resumed.read == [4] and any("resuming after 4 of 5 clips" in line for line in logs)
    assert cache.captions == whole.captions and torch.equal(cache.caption_index, whole.caption_index)
    for name in ("tokens", "class_id"):
        assert torch.equal(getattr(cache, name), getattr(whole, name)) and getattr(cache, name).dtype == \
            getattr(whole, name).dtype
    for name in whole.conditions:
        assert torch.equal(cache.conditions[name], whole.conditions[name])
        assert torch.equal(cache.condition_masks[name], whole.condition_masks[name])
    assert cache.condition_masks["FP"].shape[0] == 1 and cache.condition_masks["OPD"].shape[0] == 5
    assert cache.video_shape == whole.video_shape == (3, 8, 32, 32) and cache.fps == whole.fps
    assert not (tmp_path / "run" / "k.parts").exists()
    # Stopped between writing the cache and deleting its parts: the next run reuses the cache, drops them.
    (tmp_path / "run" / "k.parts").mkdir()
    (tmp_path / "run" / "k.parts" / "part_00000000.json").write_text("{}")
    logs = []
    build_cache(tmp_path / "run", "k", clips, tokenizer, FakeTextEncoder(), specs, cpu, log=logs.append)
    assert "reusing" in logs[-1] and not (tmp_path / "run" / "k.parts").exists()


class MomentsVAE(torch.nn.Module):
    """A stand-in VAE: the posterior moments are pooled pixels, so every clip's latents are known."""

    def encode_posterior(self, video):
        mean = torch.nn.functional.avg_pool3d(video, (1, 8, 8))
        return SimpleNamespace(mean=mean, std=mean.abs() + 0.1)


def test_an_interrupted_latent_cache_build_resumes_to_the_same_cache(tmp_path):
    from vidgen.data import get_dataset
    from vidgen.training.latent_cache import build_cache

    clips = get_dataset("shapes", split="train", num_items=5, size=32, num_frames=5)
    cpu = torch.device("cpu")
    whole = build_cache(tmp_path / "whole", "k", clips, MomentsVAE(), FakeTextEncoder(), cpu, batch_size=2,
                        progress=False, log=lambda _: None, parts_every=2)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "run", "k", StopAt(clips, stop=3), MomentsVAE(), FakeTextEncoder(), cpu,
                    batch_size=2, progress=False, log=lambda _: None, parts_every=2)
    resumed = StopAt(clips, stop=None)
    cache = build_cache(tmp_path / "run", "k", resumed, MomentsVAE(), FakeTextEncoder(), cpu, batch_size=2,
                        progress=False, log=lambda _: None, parts_every=2)
    assert resumed.read == [2, 3, 4]  # the batch holding clip 3 was never saved: clips 2-4 again
    assert torch.equal(cache.mean, whole.mean) and torch.equal(cache.std, whole.std)
    assert cache.captions == whole.captions and cache.scaling_factor == whole.scaling_factor
    assert not (tmp_path / "run" / "k.parts").exists()
