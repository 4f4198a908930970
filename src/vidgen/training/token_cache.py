"""Tokenize a dataset once with a frozen MAGVIT tokenizer; train the masked transformer on the cache.

A naive COMMIT training step runs the frozen 3D-VQ encoder on the target clip and on the padded
condition clip of every example, and the text encoder on every prompt, although the inputs repeat
every epoch. Here everything the objective needs is computed once per clip:

    target tokens z        (N, t, h, w)      the clip's tokens
    condition tokens z~    (N, D, t, h, w)   per condition (region + padding) of the pixel tasks:
                                             the tokens of the padded condition clip, D draws
    condition regions      (N or 1, D, t, h, w) bool, the region on the token grid
                                             (`pixel_to_token_mask` of the pixel region)
    class ids, caption indices (N,); MiniLM embeddings of every *unique* caption (U, L, D_text)

Pixel tasks with the same region and padding share one entry (FP and CFP both give the first frame,
replicate-padded). Fixed regions need one draw (D = 1, one region for all clips, stored once).
Dynamic regions (OPD, IPD: a strip or box moving along w or h, forwards or backwards) get `draws`
regions per clip, drawn from a generator seeded by (seed, clip, condition) and kept distinct while
possible: with draws = 4 each clip has all four motions of both dynamic tasks. The objective picks
one of the D draws per example from its checkpointed generator (`vidgen.tasks.commit`).

Layout (`run_dir/cache/<key>/`, key = hash of the tokenizer's config and encoder + codebook weights (not
the decoder: a decoder-only fine-tune keeps every token) + dataset settings + conditions + text encoder
settings, so another tokenizer or dataset never reuses a stale cache):
    tokens.safetensors    tokens (N, t, h, w) int16/int32; class_id, caption_index (N,) int64;
                          cond.<name>.tokens (N, D, t, h, w); cond.<name>.mask (N or 1, D, t, h, w) bool
    text.safetensors      embeddings (U, L, D) float32; mask (U, L) bool (row 0 = the empty prompt)
    cache.json            captions, {task: condition name}, draws, video shape, fps; written last
                          (a folder without it is incomplete and is rebuilt)
While it is built, `run_dir/cache/<key>.parts/` holds the clips encoded so far (`vidgen.training.cache_parts`),
so an interrupted build continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from vidgen.errors import VidgenError
from vidgen.modeling import atomic_save_safetensors, atomic_write_dir, load_safetensors, read_json, write_json
from vidgen.tasks.commit import encode_tokens
from vidgen.tasks.regions import pad_condition, pixel_to_token_mask
from vidgen.tasks.registry import Task
from vidgen.training.cache_parts import CacheParts, parts_folder, remove_leftover_parts
from vidgen.training.data import ItemView
from vidgen.training.latent_cache import encode_unique_captions, encoder_digest

CACHE_VERSION = 1


# ----------------------------------------------------------------------------- conditions


@dataclasses.dataclass(frozen=True)
class ConditionSpec:
    """One cached condition: a region + padding shared by `tasks` (abbreviations), with `draws` draws."""

    name: str
    tasks: tuple[str, ...]
    region: Any
    padding: str
    dynamic: bool
    draws: int

    def describe(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "region": repr(self.region), "padding": self.padding,
                "dynamic": self.dynamic, "draws": self.draws}


def condition_specs(tasks: Sequence[Task], dynamic_draws: int) -> list[ConditionSpec]:
    """Group the pixel tasks among `tasks` by (region, padding); the first task names the group."""
    if dynamic_draws < 1:
        raise VidgenError(f"dynamic_draws = {dynamic_draws} must be >= 1")
    groups: dict[tuple[Any, str], list[Task]] = {}
    for task in tasks:
        if task.uses_pixels:
            groups.setdefault((task.region, task.padding), []).append(task)
    return [ConditionSpec(name=members[0].abbreviation, tasks=tuple(t.abbreviation for t in members),
                          region=region, padding=padding, dynamic=members[0].dynamic,
                          draws=dynamic_draws if members[0].dynamic else 1)
            for (region, padding), members in groups.items()]


def _draw_regions(spec: ConditionSpec, grid: tuple[int, int, int], seed: int, index: int) -> torch.Tensor:
    """(draws, T, H, W) bool: distinct regions of a dynamic condition for clip `index` while the region
    family has enough of them (then repeats), from a generator seeded by (seed, clip, condition)."""
    name_code = int(hashlib.sha256(spec.name.encode()).hexdigest()[:8], 16)
    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) * 7919 + name_code)
    found: list[torch.Tensor] = []
    for _ in range(8 * spec.draws):
        region = spec.region(grid, generator)
        if not any(torch.equal(region, other) for other in found):
            found.append(region)
        if len(found) == spec.draws:
            break
    return torch.stack([found[d % len(found)] for d in range(spec.draws)])


# ----------------------------------------------------------------------------- the cache


@dataclasses.dataclass
class TokenCache:
    tokens: torch.Tensor                         # (N, t, h, w) int16/int32 target tokens
    class_id: torch.Tensor                       # (N,) int64 (-1 = unknown)
    caption_index: torch.Tensor                  # (N,) int64 into `captions`
    conditions: dict[str, torch.Tensor]          # name -> (N, D, t, h, w) condition tokens
    condition_masks: dict[str, torch.Tensor]     # name -> (N or 1, D, t, h, w) bool
    task_conditions: dict[str, str]              # task abbreviation -> condition name
    text_embeddings: torch.Tensor                # (U, L, D_text) float32
    text_mask: torch.Tensor                      # (U, L) bool
    captions: list[str]                          # U unique captions; captions[0] == ""
    video_shape: tuple[int, int, int, int]       # (C, T, H, W) of the clips
    fps: float
    path: Path
    # (N, t, h, w) bool, the tokens objects cover: not stored, set by a run that weights them
    object_masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(self.tokens.shape[1:])


class CachedTokens(Dataset):
    """Items of a `TokenCache`: {"tokens" (t, h, w), "class_id" (), "caption_index" (), "conditions":
    {name: (D, t, h, w)}, "masks": {name: (D, t, h, w)}}; batch them with `TokenBatcher`."""

    def __init__(self, cache: TokenCache):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        c = self.cache
        masks = {name: mask[index if mask.shape[0] > 1 else 0] for name, mask in c.condition_masks.items()}
        item = {"tokens": c.tokens[index], "class_id": c.class_id[index], "caption_index": c.caption_index[index],
                "conditions": {name: tokens[index] for name, tokens in c.conditions.items()}, "masks": masks}
        if c.object_masks is not None:
            item["object_mask"] = c.object_masks[index]
        return item


class TokenBatcher:
    """collate_fn: items of `CachedTokens` -> the batch `MagvitObjective` reads.

    {"tokens" (B, t, h, w) long, "class_id" (B,), "text_embeddings" (B, L', D) + "text_mask" (B, L')
    (L' = the longest caption of the batch: padding keys are masked anyway, and a shorter sequence is
    cheaper), "condition_tokens" / "condition_masks": {task: (B, D, t, h, w)}}.
    """

    def __init__(self, cache: TokenCache):
        self.text_embeddings, self.text_mask = cache.text_embeddings, cache.text_mask
        self.task_conditions = dict(cache.task_conditions)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        caption_index = torch.stack([torch.as_tensor(i["caption_index"]) for i in items])
        text_mask = self.text_mask[caption_index]
        length = max(1, int(text_mask.any(0).nonzero().max()) + 1 if text_mask.any() else 1)
        conditions = {name: torch.stack([i["conditions"][name] for i in items]).long()
                      for name in items[0]["conditions"]}
        masks = {name: torch.stack([i["masks"][name] for i in items]) for name in items[0]["masks"]}
        extra = {"object_mask": torch.stack([i["object_mask"] for i in items])} if "object_mask" in items[0] else {}
        return {**extra,
            "tokens": torch.stack([i["tokens"] for i in items]).long(),
            "class_id": torch.stack([torch.as_tensor(i["class_id"]) for i in items]).long(),
            "text_embeddings": self.text_embeddings[caption_index, :length],
            "text_mask": text_mask[:, :length],
            "condition_tokens": {task: conditions[name] for task, name in self.task_conditions.items()},
            "condition_masks": {task: masks[name] for task, name in self.task_conditions.items()},
        }


def cache_key(tokenizer_folder: Path, data: dict[str, Any], specs: Sequence[ConditionSpec], text_encoder: str,
              text_max_length: int, seed: int) -> str:
    description = {"version": CACHE_VERSION, "tokenizer": encoder_digest(tokenizer_folder), "data": data,
                   "conditions": [s.describe() for s in specs], "text_encoder": text_encoder,
                   "text_max_length": text_max_length, "seed": seed}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


def load_cache(folder: Path) -> TokenCache | None:
    """The cache in `folder`, or None when it is missing or incomplete."""
    if not (folder / "cache.json").is_file():
        return None
    info = read_json(folder / "cache.json")
    tensors = load_safetensors(folder / "tokens.safetensors")
    text = load_safetensors(folder / "text.safetensors")
    names = info["conditions"]
    return TokenCache(tokens=tensors["tokens"], class_id=tensors["class_id"], caption_index=tensors["caption_index"],
                      conditions={n: tensors[f"cond.{n}.tokens"] for n in names},
                      condition_masks={n: tensors[f"cond.{n}.mask"] for n in names},
                      task_conditions=dict(info["task_conditions"]), text_embeddings=text["embeddings"],
                      text_mask=text["mask"], captions=list(info["captions"]),
                      video_shape=tuple(info["video_shape"]), fps=float(info["fps"]), path=folder)


def _clip_item(item: dict[str, Any], index: int) -> dict[str, Any]:
    """Only what the cache needs from a dataset item (skips collating audio, depth, labels ...)."""
    try:
        class_id = int(item.get("class_id", -1))
    except (TypeError, ValueError):  # a dataset without integer classes
        class_id = -1
    return {"video": item["video"], "caption": str(item.get("caption", "") or ""), "class_id": class_id,
            "fps": float(item.get("fps", 8.0)), "index": index}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"video": torch.stack([i["video"] for i in items]), "caption": [i["caption"] for i in items],
            "class_id": torch.tensor([i["class_id"] for i in items], dtype=torch.int64),
            "index": [i["index"] for i in items], "fps": items[0]["fps"]}


def _encode_chunks(tokenizer: Any, videos: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    return torch.cat([encode_tokens(tokenizer, videos[i:i + batch_size].to(device)).cpu()
                      for i in range(0, videos.shape[0], batch_size)])


@torch.no_grad()
def build_cache(root: Path, key: str, dataset: Dataset, tokenizer: Any, text_encoder: Any,
                specs: Sequence[ConditionSpec], device: torch.device, seed: int = 0, batch_size: int = 16,
                log: Callable[[str], None] = print, parts_every: int = 512) -> TokenCache:
    """Tokenize `dataset` (items with "video" (3, T, H, W) in [-1, 1], "caption", "class_id") and the
    conditions `specs` of every clip into root/key/, or load the cache if it is already there.

    The build is saved every `parts_every` clips (`vidgen.training.cache_parts`): started again after an
    interruption, it continues from the last saved part and gives the same cache."""
    folder = root / key
    cached = load_cache(folder)
    if cached is not None:
        remove_leftover_parts(root, key)
        log(f"token cache: reusing {folder} ({len(cached)} clips, {len(cached.captions)} captions)")
        return cached
    total = len(dataset)
    encodes = 1 + sum(s.draws for s in specs)
    parts = CacheParts(parts_folder(root, key), key, total, every=parts_every, log=log)
    log(f"token cache: tokenizing {total - parts.done} of {total} clips x {encodes} (target + condition "
        f"clips) into {folder} (once; later runs and --resume reuse it; an interrupted build continues)")
    tokenizer = tokenizer.eval()
    remaining = Subset(ItemView(dataset, _clip_item), range(parts.done, total))
    loader = DataLoader(remaining, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    fixed_regions: dict[str, torch.Tensor] = {}
    started, done, next_report = time.perf_counter(), parts.done, 0.1
    for batch in loader:
        video = batch["video"]  # (B, 3, T, H, W)
        b, grid_pixels = video.shape[0], tuple(video.shape[2:])
        target = _encode_chunks(tokenizer, video, batch_size, device)  # (B, t, h, w)
        grid = tuple(target.shape[1:])
        encoded = {"tokens": target.int(), "class_id": batch["class_id"]}
        for spec in specs:
            if spec.dynamic:
                regions = torch.stack([_draw_regions(spec, grid_pixels, seed, i) for i in batch["index"]])
            else:
                if spec.name not in fixed_regions:
                    fixed_regions[spec.name] = spec.region(grid_pixels, None)
                regions = fixed_regions[spec.name].expand(b, spec.draws, *grid_pixels)
            padded = torch.cat([pad_condition(video, regions[:, d], spec.padding) for d in range(spec.draws)])
            tokens = _encode_chunks(tokenizer, padded, batch_size, device)  # (D * B, t, h, w), draw-major
            encoded[f"cond.{spec.name}.tokens"] = tokens.int().view(spec.draws, b, *grid).transpose(0, 1)
            token_regions = pixel_to_token_mask(regions, grid)  # (B, D, t, h, w)
            # A fixed region is the same for every clip: one row per batch (the first is kept).
            encoded[f"cond.{spec.name}.mask"] = token_regions[:1] if not spec.dynamic else token_regions
        parts.add(encoded, batch["caption"], {"fps": batch["fps"], "video_shape": list(video.shape[1:])})
        done += b
        if done >= next_report * total or done == total:
            elapsed = time.perf_counter() - started
            log(f"token cache: {done}/{total} clips, {elapsed:.0f} s")
            next_report = done / total + 0.1

    encoded, captions, info = parts.collect()
    fps, video_shape = float(info.get("fps", 8.0)), tuple(info.get("video_shape", ()))
    tokens = torch.cat(encoded["tokens"])
    conditions = {s.name: encoded[f"cond.{s.name}.tokens"] for s in specs}
    codebook = int(max([tokens.max()] + [torch.cat(c).max() for c in conditions.values()])) + 1
    index_dtype = torch.int16 if codebook <= torch.iinfo(torch.int16).max else torch.int32
    unique, caption_index, text_embeddings, text_mask = encode_unique_captions(captions, text_encoder)
    tensors = {"tokens": tokens.to(index_dtype), "class_id": torch.cat(encoded["class_id"]),
               "caption_index": caption_index}
    for spec in specs:
        tensors[f"cond.{spec.name}.tokens"] = torch.cat(conditions[spec.name]).to(index_dtype).contiguous()
        stacked = torch.cat(encoded[f"cond.{spec.name}.mask"])
        tensors[f"cond.{spec.name}.mask"] = (stacked[:1] if not spec.dynamic else stacked).contiguous()

    def write(tmp: Path) -> None:
        atomic_save_safetensors(tensors, tmp / "tokens.safetensors")
        atomic_save_safetensors({"embeddings": text_embeddings, "mask": text_mask}, tmp / "text.safetensors")
        write_json(tmp / "cache.json", {
            "version": CACHE_VERSION, "key": key, "num_clips": len(captions), "grid": list(tokens.shape[1:]),
            "video_shape": list(video_shape), "fps": float(fps), "captions": unique,
            "conditions": {s.name: s.describe() for s in specs},
            "task_conditions": {task: s.name for s in specs for task in s.tasks},
            "seconds": round(time.perf_counter() - started, 1)})

    atomic_write_dir(folder, write)  # a crash leaves no half-written cache
    parts.remove()
    log(f"token cache: {len(captions)} clips -> tokens {tuple(tokens.shape[1:])}, "
        f"{sum(s.draws for s in specs)} condition draws per clip, {len(unique)} unique captions, "
        f"{time.perf_counter() - started:.0f} s")
    return load_cache(folder)
