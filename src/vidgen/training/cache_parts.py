"""Build a cache in parts that survive an interruption (the token and latent caches).

Encoding a dataset once for training (`vidgen.training.token_cache`, `vidgen.training.latent_cache`)
can take most of an hour on a CPU (8192 clips through the 3D-VQ, 11 passes each). The encoded batches
are therefore saved every `every` clips into a parts folder next to the cache; a build that was
stopped (Ctrl-C, a session limit, a crash) starts again from the last saved part instead of from clip
0. The finished cache is written as before (atomically, `cache.json` last) and the parts are deleted.

Layout of `root/<key>.parts/`:
    key.json                          the cache key: parts of another build are never reused
    part_<first>.safetensors          the tensors of clips [first, first + n), concatenated along dim 0
    part_<first>.json                 n, captions and `info` (e.g. fps); written after the tensors, so a
                                      part without it is unfinished and is dropped with everything after it

Clips must be encoded in dataset order and each clip's result must depend only on the clip (and fixed
seeds), never on what was encoded before it: then a resumed build gives the same cache, tensor for
tensor, as an uninterrupted one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vidgen.errors import CheckpointError
from vidgen.modeling import atomic_save_safetensors, load_safetensors, read_json, write_json


def parts_folder(root: Path, key: str) -> Path:
    """Where the parts of cache `root/key` are kept while it is built."""
    return Path(root) / f"{key}.parts"


def remove_leftover_parts(root: Path, key: str) -> None:
    """Delete parts a finished build left behind (stopped between writing the cache and deleting them)."""
    shutil.rmtree(parts_folder(root, key), ignore_errors=True)


class CacheParts:
    """The encoded batches of one cache build, saved in parts (module docstring).

    folder: the parts folder (`root/<key>.parts`); key: the cache key it belongs to; total: clips in the
    dataset; every: clips per part (a part is written once at least this many are buffered).

        parts = CacheParts(parts_folder(root, key), key, len(dataset))
        for batch in batches_from(parts.done):            # resume after the saved clips
            parts.add({"tokens": ...}, batch["caption"], {"fps": 8.0})
        tensors, captions, info = parts.collect()          # {name: [one tensor per part]}, all captions
        ... write the cache ...
        parts.remove()
    """

    def __init__(self, folder: Path, key: str, total: int, every: int = 512,
                 log: Callable[[str], None] = print):
        if every < 1:
            raise ValueError(f"every={every} must be >= 1")
        self.folder, self.key, self.total, self.every = Path(folder), key, int(total), int(every)
        self._parts: list[tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]] = []
        self._buffer: list[tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]] = []
        self.done = 0  # clips in saved parts (the buffer not counted)
        self._load(log)

    def _load(self, log: Callable[[str], None]) -> None:
        key_file = self.folder / "key.json"
        saved_key = None
        if key_file.is_file():
            try:
                saved_key = read_json(key_file).get("key")
            except CheckpointError:
                saved_key = None
        if saved_key != self.key:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(key_file, {"key": self.key, "total": self.total})
            return
        while (meta_file := self.folder / f"part_{self.done:08d}.json").is_file():
            try:
                meta = read_json(meta_file)
                tensors = load_safetensors(self.folder / f"part_{self.done:08d}.safetensors")
            except CheckpointError as error:  # a damaged part: encode from here again
                log(f"cache parts: {meta_file.name} unreadable ({error}); encoding again from clip {self.done}")
                break
            count = int(meta["count"])
            if count < 1 or self.done + count > self.total:
                break
            self._parts.append((tensors, list(meta["captions"]), dict(meta.get("info", {}))))
            self.done += count
        for stale in self.folder.glob("part_*"):  # anything after the last good part
            first = int(stale.name.split("_")[1].split(".")[0])
            if first >= self.done:
                stale.unlink()
        if self.done:
            log(f"cache parts: resuming after {self.done} of {self.total} clips saved in {self.folder}")

    @property
    def buffered(self) -> int:
        return sum(len(captions) for _, captions, _ in self._buffer)

    def add(self, tensors: dict[str, torch.Tensor], captions: list[str], info: dict[str, Any] | None = None) -> None:
        """One encoded batch: tensors whose dim 0 runs over the batch's clips (or any per-batch rows, e.g.
        a region shared by the batch), its captions (one per clip) and JSON-able info."""
        self._buffer.append(({k: v.detach().cpu() for k, v in tensors.items()}, list(captions), dict(info or {})))
        if self.buffered >= self.every:
            self.flush()

    def flush(self) -> None:
        """Save the buffered batches as one part."""
        if not self._buffer:
            return
        names = self._buffer[0][0].keys()
        tensors = {name: torch.cat([t[name] for t, _, _ in self._buffer]) for name in names}
        captions = [c for _, batch, _ in self._buffer for c in batch]
        info = self._buffer[-1][2]
        stem = self.folder / f"part_{self.done:08d}"
        atomic_save_safetensors(tensors, stem.with_suffix(".safetensors"))
        write_json(stem.with_suffix(".json"), {"count": len(captions), "captions": captions, "info": info})
        self._parts.append((tensors, captions, info))
        self.done += len(captions)
        self._buffer = []

    def collect(self) -> tuple[dict[str, list[torch.Tensor]], list[str], dict[str, Any]]:
        """Everything encoded, saved or not: {name: [tensor per part]}, all captions in order, the last info."""
        self.flush()
        if self.done != self.total:
            raise CheckpointError(f"cache parts in {self.folder} hold {self.done} clips, expected {self.total}")
        names = self._parts[0][0].keys() if self._parts else []
        tensors = {name: [t[name] for t, _, _ in self._parts] for name in names}
        captions = [c for _, batch, _ in self._parts for c in batch]
        info = self._parts[-1][2] if self._parts else {}
        return tensors, captions, info

    def remove(self) -> None:
        """Delete the parts (once the cache they built is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
