"""Encode a dataset once with a frozen VAE and text encoder; train the diffusion model on the cache.

Latent diffusion spends most of a naive training step re-encoding the same clips and captions. Here
every clip is encoded once into its posterior q(z | x) = N(mean, std^2) (both stored, float32, so the
training objective can draw a fresh z = mean + std * eps each step from its checkpointed generator,
as the VAE intended, or use the mean), and every *unique* caption once (captions repeat a lot in toy
datasets) into padded token embeddings. Index 0 of the caption table is always the empty prompt, the
unconditional input of classifier-free guidance.

Layout (`run_dir/cache/<key>/`, key = hash of the VAE's config and encoder-side weights + dataset + text
encoder settings; the decoder's weights are left out, so a decoder-only fine-tune keeps the cache):
    latents.safetensors   mean, std (N, C, T', H', W'); caption_index (N,) int64
    text.safetensors      embeddings (U, L, D) float32; mask (U, L) bool
    cache.json            captions (U strings), latent statistics, scaling_factor, fps, shapes
cache.json is written last, so a cache folder without it is incomplete and is rebuilt. While it is built,
`run_dir/cache/<key>.parts/` holds the clips encoded so far (`vidgen.training.cache_parts`), so an
interrupted build continues where it stopped.

Latent scale (LDM, Rombach et al. 2022, appendix): diffusion assumes unit-variance data, so latents
are multiplied by `scaling_factor = 1 / std(z)`, with the std of z ~ q(z | x) over the whole dataset
computed exactly from the stored moments: Var(z) = Var(mean) + E[std^2].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from vidgen.diffusion.latent_norm import latent_scaling_factor
from vidgen.errors import CheckpointError
from vidgen.modeling import atomic_save_safetensors, atomic_write_dir, load_safetensors, read_json, write_json
from vidgen.training.cache_parts import CacheParts, parts_folder, remove_leftover_parts
from vidgen.training.data import ItemView

CACHE_VERSION = 1


@dataclasses.dataclass
class LatentCache:
    mean: torch.Tensor              # (N, C, T', H', W') float32, posterior means
    std: torch.Tensor               # (N, C, T', H', W') float32, posterior stds
    caption_index: torch.Tensor     # (N,) int64 into `captions`
    text_embeddings: torch.Tensor   # (U, L, D) float32
    text_mask: torch.Tensor         # (U, L) bool
    captions: list[str]             # U unique captions; captions[0] == ""
    scaling_factor: float           # 1 / std of the latents
    fps: float
    path: Path

    def __len__(self) -> int:
        return self.mean.shape[0]


class CachedLatents(Dataset):
    """Items {"mean", "std" (C, T', H', W'), "caption_index" () int64} of a `LatentCache`."""

    def __init__(self, cache: LatentCache):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"mean": self.cache.mean[index], "std": self.cache.std[index],
                "caption_index": self.cache.caption_index[index]}


def _video_and_caption(item: dict[str, Any], index: int) -> dict[str, Any]:
    """Only what the cache needs from a dataset item (skips collating audio, depth, labels ...)."""
    return {"video": item["video"], "caption": str(item.get("caption", "")), "fps": float(item.get("fps", 8.0))}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"video": torch.stack([i["video"] for i in items]), "caption": [i["caption"] for i in items],
            "fps": items[0]["fps"]}


# Weights that only decode: a fine-tune of these alone leaves every latent (or token) unchanged.
DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


def encoder_digest(folder: Path) -> str:
    """sha256 over a model folder's .json files and the weights of its .safetensors files except the
    decoder's (`DECODER_PREFIXES`): what determines the latents or tokens a VAE or tokenizer encodes to."""
    from safetensors import SafetensorError, safe_open

    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors"))
    if not files:
        raise CheckpointError(f"{folder} holds no .json or .safetensors files")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        if path.suffix == ".json":
            digest.update(path.read_bytes())
            continue
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in sorted(f.keys()):
                    if name.startswith(DECODER_PREFIXES):
                        continue
                    tensor = f.get_tensor(name).contiguous()
                    digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                    digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:  # corrupt or not safetensors
            raise CheckpointError(f"{path} is not a readable .safetensors file: {error}") from None
    return digest.hexdigest()


def cache_key(vae_folder: Path, data: dict[str, Any], text_encoder: str, text_max_length: int) -> str:
    description = {"version": CACHE_VERSION, "vae": encoder_digest(vae_folder), "data": data,
                   "text_encoder": text_encoder, "text_max_length": text_max_length}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


def load_cache(folder: Path) -> LatentCache | None:
    """The cache in `folder`, or None when it is missing or incomplete."""
    if not (folder / "cache.json").is_file():
        return None
    info = read_json(folder / "cache.json")
    latents = load_safetensors(folder / "latents.safetensors")
    text = load_safetensors(folder / "text.safetensors")
    return LatentCache(mean=latents["mean"], std=latents["std"], caption_index=latents["caption_index"],
                       text_embeddings=text["embeddings"], text_mask=text["mask"], captions=info["captions"],
                       scaling_factor=float(info["scaling_factor"]), fps=float(info["fps"]), path=folder)


def encode_unique_captions(captions: Sequence[str], text_encoder: Any, batch_size: int = 64
                           ) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each distinct caption encoded once: (unique captions, "" first; caption_index (N,) int64 into them;
    embeddings (U, L, D) float32; mask (U, L) bool), padded to the encoder's max length."""
    unique = [""] + sorted(set(captions) - {""})
    position = {caption: i for i, caption in enumerate(unique)}
    caption_index = torch.tensor([position[c] for c in captions], dtype=torch.int64)
    embeddings, masks = [], []
    for start in range(0, len(unique), batch_size):
        encoded = text_encoder.encode(unique[start:start + batch_size], pad_to_max_length=True)
        embeddings.append(encoded.embeddings.float().cpu())
        masks.append(encoded.mask.bool().cpu())
    return unique, caption_index, torch.cat(embeddings), torch.cat(masks)


@torch.no_grad()
def build_cache(root: Path, key: str, dataset: Dataset, vae: torch.nn.Module, text_encoder: Any,
                device: torch.device, batch_size: int = 16, progress: bool = True,
                log: Callable[[str], None] = print, parts_every: int = 512) -> LatentCache:
    """Encode `dataset` (items with "video" (3, T, H, W) in [-1, 1] and "caption") into root/key/,
    or load it if it is already there.

    The build is saved every `parts_every` clips (`vidgen.training.cache_parts`): started again after an
    interruption, it continues from the last saved part and gives the same cache."""
    folder = root / key
    cached = load_cache(folder)
    if cached is not None:
        remove_leftover_parts(root, key)
        log(f"latent cache: reusing {folder} ({len(cached)} clips, {len(cached.captions)} captions)")
        return cached
    total = len(dataset)
    parts = CacheParts(parts_folder(root, key), key, total, every=parts_every, log=log)
    log(f"latent cache: encoding {total - parts.done} of {total} clips into {folder} (once; later runs reuse "
        "it; an interrupted build continues)")
    remaining = Subset(ItemView(dataset, _video_and_caption), range(parts.done, total))
    loader = DataLoader(remaining, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=parts.done, desc="encode clips", unit="clip", dynamic_ncols=True)
    vae = vae.eval()
    for batch in loader:
        posterior = vae.encode_posterior(batch["video"].to(device))  # float32, no autocast: exact moments
        parts.add({"mean": posterior.mean.float(), "std": posterior.std.float()}, batch["caption"],
                  {"fps": batch["fps"]})
        if bar is not None:
            bar.update(len(batch["caption"]))
    if bar is not None:
        bar.close()
    encoded, captions, info = parts.collect()
    mean, std, fps = torch.cat(encoded["mean"]), torch.cat(encoded["std"]), float(info.get("fps", 8.0))

    unique, caption_index, text_embeddings, text_mask = encode_unique_captions(captions, text_encoder)
    scaling_factor = latent_scaling_factor(mean, std)

    def write(tmp: Path) -> None:
        atomic_save_safetensors({"mean": mean, "std": std, "caption_index": caption_index},
                                tmp / "latents.safetensors")
        atomic_save_safetensors({"embeddings": text_embeddings, "mask": text_mask}, tmp / "text.safetensors")
        write_json(tmp / "cache.json", {
            "version": CACHE_VERSION, "key": key, "num_clips": len(captions), "captions": unique,
            "latent_shape": list(mean.shape[1:]), "text_shape": list(text_embeddings.shape[1:]),
            "latent_mean": float(mean.double().mean()), "latent_std": 1.0 / scaling_factor,
            "scaling_factor": scaling_factor, "fps": float(fps)})

    atomic_write_dir(folder, write)  # a crash leaves no half-written cache
    parts.remove()
    log(f"latent cache: {len(captions)} clips -> latents {tuple(mean.shape[1:])}, {len(unique)} unique "
        f"captions; latent std {1.0 / scaling_factor:.4f} -> scaling_factor {scaling_factor:.4f}")
    return load_cache(folder)
