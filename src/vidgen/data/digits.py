"""Digits: real handwritten digits bouncing around the frame (a Moving-MNIST analogue, offline).

The digit images are scikit-learn's `load_digits()` (1797 handwritten 8x8 digits, bundled with the
package: nothing is downloaded), enlarged smoothly to about 40% of the frame (26 px at size 64). Each
digit moves with constant velocity and bounces off the frame edges; two digits are combined with
`max` (as in Moving MNIST) and drawn white on black, replicated to 3 channels.

Split by image: the test split uses every 5th image (index % 5 == 0, 360 images), the train split the
other 1437, so test clips show handwriting never seen in training.

Motion: the dominant direction is one of left/right/up/down, with a smaller random sideways component
(up to half the speed); the start is placed so the digit does not bounce along the dominant axis in
the first half of the clip. Captions name the digit and the direction it starts moving in, e.g.
"the digit 3 moving right"; varied captions add synonyms and say when it bounces back.
`class_id` is the (first) digit, 0..9.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vidgen.data.shapes import DIRECTION_WORDS, MOTION_NAMES, MOTIONS, TRAIN_VERBS, fix_articles
from vidgen.errors import VidgenError

NUM_CLASSES = 10
SPLITS = ("train", "test")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_MODES = ("varied", "canonical")
CANONICAL_PROBABILITY = 0.3


@lru_cache(maxsize=1)
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (1797, 8, 8) in [0, 1], targets int (1797,)) from scikit-learn's bundled copy.

    The CSV that `sklearn.datasets.load_digits` parses is read directly when it can be found, which
    skips importing scikit-learn (seconds on a busy CPU); the data is identical.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    csv = None
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
        csv = candidate if candidate.is_file() else None
    if csv is not None:
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        images, targets = table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, targets = digits.images.astype(np.float32), digits.target.astype(np.int64)
    return images / 16.0, targets


def split_indices(split: str) -> np.ndarray:
    """Image indices of a split: test = every 5th image, train = the rest (disjoint)."""
    if split not in SPLITS:
        raise VidgenError(f"digits split must be one of {', '.join(SPLITS)}; got {split!r}")
    count = len(_digit_images()[1])
    index = np.arange(count)
    return index[index % 5 == 0] if split == "test" else index[index % 5 != 0]


@lru_cache(maxsize=8192)
def _enlarged_digit(image_index: int, digit_size: int) -> np.ndarray:
    """One digit image enlarged to (digit_size, digit_size), float32 in [0, 1] (cached).

    A 1-pixel black border is added first so the bicubic filter has room to round the strokes off
    instead of clipping them at the image edge.
    """
    padded = np.pad(_digit_images()[0][image_index], 1)
    enlarged = Image.fromarray(padded, mode="F").resize((digit_size, digit_size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(enlarged), 0.0, 1.0)


def digits_caption(digits: list[int], motions: list[str], bounced: list[bool], rng, mode: str) -> str:
    """Canonical ("the digit 3 moving right") or varied wording; two digits are joined with "and"."""
    if mode == "canonical" or rng.random() < CANONICAL_PROBABILITY:
        return " and ".join(f"the digit {d} moving {m}" for d, m in zip(digits, motions))
    phrases = []
    for digit, motion, bounce in zip(digits, motions, bounced):
        name = (str(digit), DIGIT_WORDS[digit])[rng.integers(2)]
        noun = ("the digit {}", "a handwritten {}", "digit {}", "the number {}")[rng.integers(4)].format(name)
        ing = TRAIN_VERBS[rng.integers(len(TRAIN_VERBS))][0]
        direction = DIRECTION_WORDS[motion][rng.integers(len(DIRECTION_WORDS[motion]))]
        phrase = f"{noun} {ing} {direction}"
        if bounce:
            phrase += (" and bouncing back", ", bouncing off the edge")[rng.integers(2)]
        phrases.append(phrase)
    return fix_articles(" and ".join(phrases))


class DigitsDataset(Dataset):
    """Moving handwritten digits; item `i` is a pure function of (seed, split, i).

    Args:
        split: "train" or "test" (disjoint digit images).
        num_items: length of the dataset.
        size: frame height and width in pixels.
        num_frames: frames per clip (T).
        fps: reported frame rate.
        num_digits: 1 or 2 digits per clip.
        seed: changes every item.
        caption_mode: "varied" (30% canonical) or "canonical".

    Item: {"video": float (3, T, H, W) in [-1, 1], "caption", "canonical_caption", "class_id" (first
    digit), "labels": {"digits": LongTensor (num_digits,), "motion_ids": LongTensor (num_digits,),
    "digit": int, "motion_id": int, "image_index": LongTensor (num_digits,), "positions": float
    (num_digits, T, 2) top-left (y, x) of each digit, "velocity": float (num_digits, 2) initial (dy, dx)},
    "fps", "index"}.
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        split: str = "train",
        num_items: int = 10000,
        size: int = 64,
        num_frames: int = 17,
        fps: float = 8,
        num_digits: int = 1,
        seed: int = 0,
        caption_mode: str = "varied",
    ):
        if num_digits not in (1, 2):
            raise VidgenError(f"num_digits must be 1 or 2; got {num_digits}")
        if caption_mode not in CAPTION_MODES:
            raise VidgenError(f"caption_mode must be one of {', '.join(CAPTION_MODES)}; got {caption_mode!r}")
        if size < 16:
            raise VidgenError(f"digits size must be >= 16 pixels; got {size}")
        if num_frames < 1 or num_items < 1:
            raise VidgenError(f"num_frames and num_items must be >= 1; got {num_frames}, {num_items}")
        self.image_indices = split_indices(split)
        self.split, self.num_items, self.size, self.num_frames = (
            split,
            int(num_items),
            int(size),
            int(num_frames),
        )
        self.fps, self.num_digits, self.seed, self.caption_mode = (
            float(fps),
            num_digits,
            int(seed),
            caption_mode,
        )
        self.digit_size = max(8, round(size * 0.4))

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict:
        if not -self.num_items <= index < self.num_items:
            raise IndexError(f"index {index} out of range for a DigitsDataset of {self.num_items} items")
        index = index % self.num_items
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        _images, targets = _digit_images()
        room = self.size - self.digit_size  # top-left corner range [0, room]
        frames = np.zeros((self.num_frames, self.size, self.size), np.float32)
        digits, motions, bounced, image_ids, paths, velocities = [], [], [], [], [], []
        for _ in range(self.num_digits):
            image_id = int(self.image_indices[rng.integers(len(self.image_indices))])
            motion = MOTION_NAMES[rng.integers(len(MOTION_NAMES))]
            speed = self.size * rng.uniform(0.025, 0.05)  # 1.6 to 3.2 px per frame at 64 px
            main = np.asarray(MOTIONS[motion], np.float64)
            side = np.asarray([main[1], main[0]]) * rng.uniform(-0.5, 0.5)
            velocity = (main + side) * speed
            position = rng.uniform(0, room, size=2)
            # Keep the first half of the clip free of bounces along the dominant axis, so the caption's
            # direction is what one sees first.
            axis = int(np.argmax(np.abs(main)))
            run = min(room, abs(velocity[axis]) * (self.num_frames - 1) / 2)
            position[axis] = rng.uniform(0, room - run) + (run if main[axis] < 0 else 0.0)
            path, bounce = _bounce_path(position, velocity, room, self.num_frames, main)
            sprite = _enlarged_digit(image_id, self.digit_size)
            for t, (y, x) in enumerate(np.round(path).astype(int)):
                region = frames[t, y : y + self.digit_size, x : x + self.digit_size]
                np.maximum(region, sprite, out=region)
            digits.append(int(targets[image_id]))
            motions.append(motion)
            bounced.append(bounce)
            image_ids.append(image_id)
            paths.append(path)
            velocities.append(velocity)

        video = torch.from_numpy(frames).mul(2.0).sub(1.0)[None].expand(3, -1, -1, -1).contiguous()
        labels = {
            "digits": torch.tensor(digits),
            "motion_ids": torch.tensor([MOTION_NAMES.index(m) for m in motions]),
            "digit": digits[0],
            "motion_id": MOTION_NAMES.index(motions[0]),
            "image_index": torch.tensor(image_ids),
            "positions": torch.from_numpy(np.stack(paths)).float(),
            "velocity": torch.from_numpy(np.stack(velocities)).float(),
        }
        return {
            "video": video,  # (3, T, H, W)
            "caption": digits_caption(digits, motions, bounced, rng, self.caption_mode),
            "canonical_caption": digits_caption(digits, motions, bounced, rng, "canonical"),
            "class_id": digits[0],
            "labels": labels,
            "fps": self.fps,
            "index": index,
        }


def _bounce_path(
    position: np.ndarray, velocity: np.ndarray, room: float, num_frames: int, main: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Top-left corners (T, 2) of a point moving at `velocity` and reflecting off [0, room].

    Also returns whether the motion along the dominant axis (`main`) reversed during the clip.
    """
    path = np.empty((num_frames, 2))
    position, velocity = position.astype(np.float64).copy(), velocity.astype(np.float64).copy()
    axis = int(np.argmax(np.abs(main)))
    reversed_main = False
    for t in range(num_frames):
        path[t] = position
        position = position + velocity
        for k in range(2):
            if position[k] < 0 or position[k] > room:
                position[k] = -position[k] if position[k] < 0 else 2 * room - position[k]
                velocity[k] = -velocity[k]
                if k == axis and t + 1 < num_frames:
                    reversed_main = True
    return path, reversed_main
