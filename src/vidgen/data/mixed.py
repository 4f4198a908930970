"""Shapes + Digits: one dataset mixing single-object Shapes clips and moving handwritten Digits.

What the bundled MAGVIT model trains on (`get_dataset("shapes+digits", ...)`): a tokenizer and a
transformer that must handle both flat-coloured geometry and grey handwriting.

Splits:
    "train"    Shapes train split (never a held-out triple) + Digits train split (4 of 5 images)
    "heldout"  Shapes held-out triples + Digits test split (images never seen in training)

Mixing is deterministic and even: item i is a Digits clip exactly when floor((i + 1) * f) >
floor(i * f), f = `digits_fraction`, so every window of items holds the same share of digits and
round(num_items * f) of them in total. Item i of either source is item j of that source's own
dataset, where j counts the earlier items of the same source; so an item is a pure function of
(seed, split, i), like its parts.

Items carry the keys common to both sources:
    video              float (3, T, H, W) in [-1, 1]
    caption            str (training wording in caption_mode="varied")
    canonical_caption  str ("a red circle moving left", "the digit 3 moving right")
    class_id           int, global: 0..71 Shapes (`vidgen.data.shapes.class_id`), 72..81 digits 0..9
    source             "shapes" or "digits"
    objects            Shapes: list of {"colour", "shape", "motion", ...} (as the Shapes labels), so
                       the Shapes evaluator can score; Digits: []
    index, fps
"""

from __future__ import annotations

import math

from torch.utils.data import Dataset

from vidgen.data.digits import NUM_CLASSES as NUM_DIGITS
from vidgen.data.digits import DigitsDataset
from vidgen.data.shapes import NUM_CLASSES as NUM_SHAPES_CLASSES
from vidgen.data.shapes import ShapesDataset, class_name
from vidgen.errors import VidgenError

__all__ = ["DIGIT_CLASS_OFFSET", "NUM_CLASSES", "SPLITS", "ShapesDigitsDataset", "class_names"]

SPLITS = ("train", "heldout")
DIGIT_CLASS_OFFSET = NUM_SHAPES_CLASSES            # digit d has class id 72 + d
NUM_CLASSES = NUM_SHAPES_CLASSES + NUM_DIGITS      # 82
_PART_SPLITS = {"train": ("train", "train"), "heldout": ("heldout", "test")}  # (shapes, digits)


def class_names() -> list[str]:
    """The 82 class names by global class id: "red circle moving left", ..., "digit 0", ..., "digit 9"."""
    return [class_name(i) for i in range(NUM_SHAPES_CLASSES)] + [f"digit {d}" for d in range(NUM_DIGITS)]


class ShapesDigitsDataset(Dataset):
    """Single-object Shapes clips mixed with Digits clips (module docstring).

    Args:
        split: "train" or "heldout".
        num_items: length of the dataset.
        size: frame height and width in pixels.
        num_frames: frames per clip (T).
        fps: frame rate reported in items.
        seed: changes every item (passed to both sources).
        digits_fraction: share of Digits clips, in [0, 1].
        caption_mode: "varied" (training wordings) or "canonical".
    """

    num_classes = NUM_CLASSES

    def __init__(self, split: str = "train", num_items: int = 10000, size: int = 64, num_frames: int = 16,
                 fps: float = 8, seed: int = 0, digits_fraction: float = 0.3, caption_mode: str = "varied"):
        if split not in SPLITS:
            raise VidgenError(f"shapes+digits split must be one of {', '.join(SPLITS)}; got {split!r}")
        if not 0.0 <= float(digits_fraction) <= 1.0:
            raise VidgenError(f"digits_fraction must be in [0, 1]; got {digits_fraction}")
        if caption_mode not in ("varied", "canonical"):
            raise VidgenError(f"shapes+digits caption_mode must be 'varied' or 'canonical'; got {caption_mode!r}")
        if num_items < 1:
            raise VidgenError(f"num_items must be >= 1; got {num_items}")
        self.split, self.num_items = split, int(num_items)
        self.digits_fraction = float(digits_fraction)
        self.num_digits = self._digits_before(self.num_items)
        shapes_split, digits_split = _PART_SPLITS[split]
        common = {"size": size, "num_frames": num_frames, "fps": fps, "seed": seed, "caption_mode": caption_mode}
        # Each part holds at least one item so that an all-Shapes or all-Digits mix still builds.
        self.shapes = ShapesDataset(split=shapes_split, num_items=max(1, self.num_items - self.num_digits),
                                    max_objects=1, **common)
        self.digits = DigitsDataset(split=digits_split, num_items=max(1, self.num_digits), num_digits=1, **common)
        self.fps = float(fps)

    def _digits_before(self, index: int) -> int:
        """How many of items 0..index-1 are Digits clips."""
        return math.floor(index * self.digits_fraction + 1e-9)

    def source_of(self, index: int) -> tuple[str, int]:
        """("shapes" | "digits", index within that source) of item `index`."""
        digits_before = self._digits_before(index)
        if self._digits_before(index + 1) > digits_before:
            return "digits", digits_before
        return "shapes", index - digits_before

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict:
        if not -self.num_items <= index < self.num_items:
            raise IndexError(f"index {index} out of range for a shapes+digits dataset of {self.num_items} items")
        index = index % self.num_items
        source, part_index = self.source_of(index)
        if source == "digits":
            item = self.digits[part_index]
            class_id, objects = DIGIT_CLASS_OFFSET + int(item["class_id"]), []
        else:
            item = self.shapes[part_index]
            class_id, objects = int(item["class_id"]), item["labels"]["objects"]
        return {
            "video": item["video"],  # (3, T, H, W)
            "caption": item["caption"],
            "canonical_caption": item["canonical_caption"],
            "class_id": class_id,
            "source": source,
            "objects": objects,
            "index": index,
            "fps": self.fps,
        }
