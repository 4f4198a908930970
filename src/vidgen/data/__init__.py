"""Datasets: deterministic toy worlds (Shapes, Digits) and your own folder of clips.

Every dataset is a `torch.utils.data.Dataset` whose items are dicts with at least

    video       float (3, T, H, W) in [-1, 1]
    caption     str
    class_id    int (-1 when unknown)
    labels      dict of ground truth (dataset specific)

and item `i` depends only on (seed, split, i). `collate` batches items: tensors are stacked, numbers
become tensors, strings and other objects become lists, dicts are collated key by key.

    ds = get_dataset("shapes", split="train", num_frames=9, size=32)
    loader = DataLoader(ds, batch_size=8, collate_fn=collate)

See docs/datasets.md for the vocabularies, splits and the folder manifest format.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidgen.data.digits import DigitsDataset
from vidgen.data.folder import FolderDataset
from vidgen.data.mixed import ShapesDigitsDataset
from vidgen.data.shapes import (
    HELDOUT_TRIPLES,
    NUM_CLASSES,
    ShapesDataset,
    canonical_caption,
    class_name,
    heldout_eval_prompts,
    two_object_eval_prompts,
)
from vidgen.errors import VidgenError

DATASETS: dict[str, type[Dataset]] = {
    "shapes": ShapesDataset,
    "digits": DigitsDataset,
    "folder": FolderDataset,
    "shapes+digits": ShapesDigitsDataset,
}

DESCRIPTIONS = {
    "shapes": "coloured circles/squares/triangles moving on black; 72 classes, held-out triples, depth/flow/audio",
    "digits": "handwritten digits (scikit-learn) bouncing around the frame; 10 classes, train/test by image",
    "folder": "your videos/images with captions from metadata.jsonl or metadata.csv (needs root=...)",
    "shapes+digits": "single-object Shapes mixed with Digits (MAGVIT's data); 82 classes, held-out triples + test digits",
}


def get_dataset(name: str, **kwargs) -> Dataset:
    """Build a dataset by name ("shapes", "digits", "folder") with its keyword arguments."""
    if name not in DATASETS:
        raise VidgenError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    cls = DATASETS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise VidgenError(
            f"dataset {name!r} has no option {', '.join(unknown)}; it takes: {', '.join(allowed)}"
        )
    return cls(**kwargs)


def collate(batch: list[dict]) -> dict:
    """Batch a list of items: stack tensors/arrays, tensor-ise numbers, list strings and other values."""
    if not batch:
        raise VidgenError("cannot collate an empty batch")
    return _collate_values(batch)


def _collate_values(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        return {key: _collate_values([v[key] for v in values]) for key in first}
    if isinstance(first, torch.Tensor):
        if all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values):
            return torch.stack(values)
        return list(values)  # e.g. clips of different lengths: leave them to the caller
    if isinstance(first, np.ndarray):
        return _collate_values([torch.from_numpy(np.asarray(v)) for v in values])
    if isinstance(first, bool):
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, numbers.Integral) and all(isinstance(v, numbers.Integral) for v in values):
        return torch.tensor(values, dtype=torch.long)
    if isinstance(first, numbers.Real) and all(isinstance(v, numbers.Real) for v in values):
        return torch.tensor(values, dtype=torch.float32)
    return list(values)


__all__ = [
    "DATASETS",
    "DESCRIPTIONS",
    "HELDOUT_TRIPLES",
    "NUM_CLASSES",
    "DigitsDataset",
    "FolderDataset",
    "ShapesDataset",
    "canonical_caption",
    "class_name",
    "collate",
    "get_dataset",
    "heldout_eval_prompts",
    "two_object_eval_prompts",
]
