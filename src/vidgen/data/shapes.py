"""Shapes: procedurally rendered clips of coloured shapes moving on a black background.

The toy world every vidgen model can learn on a CPU, with ground truth for everything:

    colours  red, green, blue, yellow, cyan, magenta   (fully saturated RGB; see COLOURS)
    shapes   circle, square, triangle                  (apex-up triangle; all of similar area)
    motions  left, right, up, down                     (constant velocity, the object stays in frame)

A clip holds one or two objects (two objects always have different colours and different depths;
the nearer one occludes the other). `class_id` is the index of the first object's (colour, shape,
motion) triple: `(colour * 3 + shape) * 4 + motion`, 0..71 (`NUM_CLASSES`), named by `class_name`.

Held-out split: the 16 single-object triples in `HELDOUT_TRIPLES` never appear in the train split,
neither alone nor as either object of a two-object clip. Every colour, shape and motion, and every
pair of them (colour+shape, colour+motion, shape+motion) still appears in training, so generating a
held-out triple tests composition of known attributes. `heldout_eval_prompts()` turns them into
prompts with the attributes the Shapes evaluator (`vidgen.evaluation.shapes_eval`) should find.

Captions: `caption_mode="varied"` uses the canonical form ("a red circle moving left") 30% of the time
and training templates with synonyms otherwise ("a crimson ball drifting to the left", "red circle
moves left"). A separate set of paraphrase templates and verbs (`HELDOUT_VERBS`, the held-out
templates) is never used in training (`caption_mode="paraphrase"` uses only those), to measure
generalisation to unseen wordings.

Items are a pure function of (seed, split, index): the same item comes back in any process.
Each item:
    video    float (3, T, H, W) in [-1, 1]
    depth    float (1, T, H, W): distance in [0, 1]; background 1.0, objects 0.35 (near) / 0.65 (far)
    flow     float (2, T, H, W): (dx, dy) pixel displacement to the next frame (channel 0 = x, right
             positive; channel 1 = y, down positive); 0 on background; objects move at constant
             velocity, so the last frame (which has no successor) carries the same velocity
    audio    float (N,) mono waveform, N = round(T / fps * sample_rate): one sine tone per object,
             pitch set by its colour (COLOUR_FREQUENCIES, Hz), two objects sum
    caption, canonical_caption, class_id, labels (see `ShapesDataset.__getitem__`), fps, sample_rate
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from vidgen.errors import VidgenError

# ----------------------------------------------------------------------------- vocabulary

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: dict[str, tuple[int, int]] = {
    "left": (0, -1),
    "right": (0, 1),
    "up": (-1, 0),
    "down": (1, 0),
}  # (dy, dx)
COLOUR_NAMES = tuple(COLOURS)
MOTION_NAMES = tuple(MOTIONS)
NUM_CLASSES = len(COLOURS) * len(SHAPES) * len(MOTIONS)  # 72

# Tone of each colour in the audio track: major thirds up from A3, so two objects never share a pitch.
COLOUR_FREQUENCIES: dict[str, float] = {
    "red": 220.0,
    "green": 277.18,
    "blue": 349.23,
    "yellow": 440.0,
    "cyan": 554.37,
    "magenta": 698.46,
}

# Never rendered in the train split. One per (colour, shape) and (colour, motion) pair at most, four
# per motion, five or six per shape, two or three per colour (see the module docstring).
HELDOUT_TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "left"),
    ("red", "square", "up"),
    ("red", "triangle", "right"),
    ("green", "circle", "down"),
    ("green", "square", "right"),
    ("green", "triangle", "left"),
    ("blue", "circle", "right"),
    ("blue", "square", "down"),
    ("blue", "triangle", "up"),
    ("yellow", "circle", "up"),
    ("yellow", "triangle", "down"),
    ("cyan", "square", "left"),
    ("cyan", "triangle", "right"),
    ("magenta", "circle", "left"),
    ("magenta", "square", "down"),
    ("magenta", "triangle", "up"),
)
ALL_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(itertools.product(COLOURS, SHAPES, MOTIONS))
TRAIN_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(t for t in ALL_TRIPLES if t not in HELDOUT_TRIPLES)

SPLITS = ("train", "heldout", "all")
CAPTION_MODES = ("varied", "canonical", "paraphrase")
CANONICAL_PROBABILITY = 0.3  # share of canonical captions in caption_mode="varied"
TWO_OBJECT_PROBABILITY = 0.35  # share of two-object clips when max_objects=2 (train and all splits)
DEPTHS = (0.35, 0.65)  # near, far (background is 1.0)


def class_id(colour: str, shape: str, motion: str) -> int:
    """Index of a (colour, shape, motion) triple, 0..71."""
    try:
        return (COLOUR_NAMES.index(colour) * len(SHAPES) + SHAPES.index(shape)) * len(
            MOTIONS
        ) + MOTION_NAMES.index(motion)
    except ValueError:
        raise VidgenError(
            f"unknown shapes attributes ({colour!r}, {shape!r}, {motion!r}); colours: {', '.join(COLOURS)}; "
            f"shapes: {', '.join(SHAPES)}; motions: {', '.join(MOTIONS)}"
        ) from None


def class_triple(index: int) -> tuple[str, str, str]:
    """Inverse of `class_id`: (colour, shape, motion)."""
    if not 0 <= int(index) < NUM_CLASSES:
        raise VidgenError(f"shapes class id must be in 0..{NUM_CLASSES - 1}; got {index}")
    colour_shape, motion = divmod(int(index), len(MOTIONS))
    colour, shape = divmod(colour_shape, len(SHAPES))
    return COLOUR_NAMES[colour], SHAPES[shape], MOTION_NAMES[motion]


def class_name(index: int) -> str:
    """Readable name of a class id, the canonical caption without article: "red circle moving left"."""
    colour, shape, motion = class_triple(index)
    return f"{colour} {shape} moving {motion}"


# ----------------------------------------------------------------------------- captions

# Training wording. Synonyms are chosen uniformly; the first entry of each list is the canonical word.
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson"),
    "green": ("green", "lime"),
    "blue": ("blue", "cobalt"),
    "yellow": ("yellow", "golden"),
    "cyan": ("cyan", "aqua"),
    "magenta": ("magenta", "fuchsia"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
}
DIRECTION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "to the left", "leftwards"),
    "right": ("right", "to the right", "rightwards"),
    "up": ("up", "upwards", "towards the top"),
    "down": ("down", "downwards", "towards the bottom"),
}
# (participle, present tense)
TRAIN_VERBS: tuple[tuple[str, str], ...] = (
    ("moving", "moves"),
    ("drifting", "drifts"),
    ("sliding", "slides"),
    ("gliding", "glides"),
    ("travelling", "travels"),
)
# Object phrases: {c} colour, {s} shape, {ing}/{verb} verb forms, {d} direction. Noun phrases can be
# wrapped ("a video of ..."); clauses cannot.
TRAIN_NOUN_PHRASES = ("a {c} {s} {ing} {d}", "a {c} {s} that {verb} {d}", "the {c} {s} {ing} {d}")
TRAIN_CLAUSES = ("{c} {s} {verb} {d}", "the {c} {s} {verb} {d}")
TRAIN_WRAPPERS = (
    "{}",
    "{}",
    "a video of {}",
    "{} on a black background",
    "footage of {}",
    "an animation of {}",
)
TRAIN_JOINS = (" and ",)
TRAIN_CLAUSE_JOINS = (" and ", " while ")

# Held-out wording: never produced for training. Every held-out caption uses a held-out verb, so it
# can never coincide with a training caption.
HELDOUT_VERBS: tuple[tuple[str, str], ...] = (
    ("heading", "heads"),
    ("floating", "floats"),
    ("shifting", "shifts"),
    ("cruising", "cruises"),
)
HELDOUT_SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "orb"),
    "square": ("square", "tile"),
    "triangle": ("triangle",),
}
HELDOUT_NOUN_PHRASES = (
    "one {c} {s} {ing} {d}",
    "a {s} coloured {c}, {ing} {d}",
    "a {c}-coloured {s} {ing} {d}",
)
HELDOUT_CLAUSES = ("there is a {c} {s} and it {verb} {d}", "a {c} {s} is {ing} {d}")
HELDOUT_WRAPPERS = ("{}", "a clip showing {}", "{} against a dark backdrop")
# Alias named after what it holds, for users looking for "the paraphrase templates".
PARAPHRASE_TEMPLATES_HELDOUT = HELDOUT_NOUN_PHRASES + HELDOUT_CLAUSES


def canonical_caption(objects: list[dict] | list[tuple[str, str, str]]) -> str:
    """Canonical caption: "a red circle moving left", or "... and a blue square moving up" for two."""
    triples = [_triple(obj) for obj in objects]
    return " and ".join(f"a {c} {s} moving {m}" for c, s, m in triples)


def varied_caption(objects, rng: np.random.Generator, heldout_wording: bool = False) -> str:
    """A random natural wording of the objects, from the training vocabulary or the held-out one."""
    triples = [_triple(obj) for obj in objects]
    if heldout_wording:
        verbs, shape_words = HELDOUT_VERBS, HELDOUT_SHAPE_WORDS
        noun_phrases, clauses, wrappers = HELDOUT_NOUN_PHRASES, HELDOUT_CLAUSES, HELDOUT_WRAPPERS
        joins, clause_joins = (" and ",), (" and ",)
    else:
        verbs, shape_words = TRAIN_VERBS, SHAPE_WORDS
        noun_phrases, clauses, wrappers = TRAIN_NOUN_PHRASES, TRAIN_CLAUSES, TRAIN_WRAPPERS
        joins, clause_joins = TRAIN_JOINS, TRAIN_CLAUSE_JOINS
    use_clause = rng.random() < len(clauses) / (len(clauses) + len(noun_phrases))
    templates = clauses if use_clause else noun_phrases
    phrases = []
    for colour, shape, motion in triples:
        ing, verb = verbs[rng.integers(len(verbs))]
        phrases.append(
            templates[rng.integers(len(templates))].format(
                c=_choice(rng, COLOUR_WORDS[colour]),
                s=_choice(rng, shape_words[shape]),
                d=_choice(rng, DIRECTION_WORDS[motion]),
                ing=ing,
                verb=verb,
            )
        )
    text = _choice(rng, clause_joins if use_clause else joins).join(phrases)
    return fix_articles(text if use_clause else _choice(rng, wrappers).format(text))


def training_caption_set(triple: tuple[str, str, str]) -> set[str]:
    """Every caption of a single object the training wording can produce (for tests and audits)."""
    colour, shape, motion = triple
    captions = {canonical_caption([triple])}
    for c, s, d, (ing, verb) in itertools.product(
        COLOUR_WORDS[colour], SHAPE_WORDS[shape], DIRECTION_WORDS[motion], TRAIN_VERBS
    ):
        for template in TRAIN_CLAUSES:
            captions.add(fix_articles(template.format(c=c, s=s, d=d, ing=ing, verb=verb)))
        for template, wrapper in itertools.product(TRAIN_NOUN_PHRASES, TRAIN_WRAPPERS):
            captions.add(fix_articles(wrapper.format(template.format(c=c, s=s, d=d, ing=ing, verb=verb))))
    return captions


def fix_articles(text: str) -> str:
    """Turn "a orb" into "an orb": templates say "a" and synonyms may start with a vowel sound."""
    return _ARTICLE.sub(lambda m: m.group(1) + "n ", text)


_ARTICLE = re.compile(r"\b([aA]) (?=[aeiouAEIOU]|8\b|eight\b|11\b|18\b)")


def _choice(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _triple(obj) -> tuple[str, str, str]:
    if isinstance(obj, dict):
        return obj["colour"], obj["shape"], obj["motion"]
    return tuple(obj)


def heldout_eval_prompts(wording: str = "all") -> list[tuple[str, list[dict]]]:
    """Prompts for the 16 held-out triples, with the attributes a correct video must show.

    wording: "canonical" (16 prompts, "a red circle moving left"), "paraphrase" (32 prompts, two held-out
    wordings per triple, e.g. "a clip showing one red orb heading left") or "all" (both, 48 prompts).
    Returns [(prompt, [{"colour", "shape", "motion"}])], in a fixed order.
    """
    if wording not in ("all", "canonical", "paraphrase"):
        raise VidgenError(f"wording must be 'all', 'canonical' or 'paraphrase'; got {wording!r}")
    rng = np.random.default_rng(1234)  # fixed: the benchmark must not change between runs
    prompts = []
    for triple in HELDOUT_TRIPLES:
        expected = [dict(zip(("colour", "shape", "motion"), triple))]
        paraphrases = []
        while len(paraphrases) < 2:
            text = varied_caption([triple], rng, heldout_wording=True)
            if text not in paraphrases:
                paraphrases.append(text)
        if wording in ("all", "canonical"):
            prompts.append((canonical_caption([triple]), expected))
        if wording in ("all", "paraphrase"):
            prompts.extend((text, [dict(e) for e in expected]) for text in paraphrases)
    return prompts


def two_object_eval_prompts(count: int = 24) -> list[tuple[str, list[dict]]]:
    """Canonical two-object prompts built from training triples with different colours.

    Returns [(prompt, [first object attrs, second object attrs])], a fixed list.
    """
    rng = np.random.default_rng(4321)
    prompts, seen = [], set()
    while len(prompts) < count:
        first = TRAIN_TRIPLES[rng.integers(len(TRAIN_TRIPLES))]
        second = TRAIN_TRIPLES[rng.integers(len(TRAIN_TRIPLES))]
        if first[0] == second[0] or (first, second) in seen:
            continue
        seen.add((first, second))
        expected = [dict(zip(("colour", "shape", "motion"), t)) for t in (first, second)]
        prompts.append((canonical_caption([first, second]), expected))
    return prompts


# ----------------------------------------------------------------------------- rendering


@dataclass
class ShapeObject:
    """One object of a clip. Positions are in pixels, (y, x), of the shape's centre at frame 0."""

    colour: str
    shape: str
    motion: str
    start: tuple[float, float]
    velocity: tuple[float, float]  # (dy, dx) pixels per frame
    radius: float  # circle radius; squares and triangles are sized to a similar area
    depth: float

    @property
    def extent(self) -> float:
        """Half the width/height of the shape's bounding box."""
        return self.radius * _EXTENT_FACTOR[self.shape]

    def to_label(self) -> dict:
        return {
            "colour": self.colour,
            "shape": self.shape,
            "motion": self.motion,
            "start": tuple(float(v) for v in self.start),
            "velocity": tuple(float(v) for v in self.velocity),
            "radius": float(self.radius),
            "depth": float(self.depth),
        }


# Square of equal area to the circle (half side sqrt(pi)/2 r); triangle with base = height = 2.3 r.
_EXTENT_FACTOR = {"circle": 1.0, "square": 0.886, "triangle": 1.15}


def _signed_distance(shape: str, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance in pixels from pixel centres to the shape's edge (negative inside)."""
    if shape == "circle":
        return np.sqrt(dy * dy + dx * dx) - radius
    half = radius * _EXTENT_FACTOR[shape]
    if shape == "square":
        qy, qx = np.abs(dy) - half, np.abs(dx) - half
        outside = np.sqrt(np.maximum(qy, 0) ** 2 + np.maximum(qx, 0) ** 2)
        return outside + np.minimum(np.maximum(qy, qx), 0)
    # Apex-up triangle with base = height = 2 * half: intersection of the base half-plane and the two
    # slanted sides |x| <= (y + half) / 2 (an approximate distance outside, exact enough for antialiasing).
    sides = (np.abs(dx) - 0.5 * dy - 0.5 * half) / np.sqrt(1.25)
    return np.maximum(sides, dy - half)


def render_objects(
    objects: list[ShapeObject], size: int, num_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a clip, channels first (the library layout, so no strided copies later).

    Returns:
        frames: float32 (3, T, H, W) in [0, 1], black background
        depth:  float32 (T, H, W), background 1.0
        flow:   float32 (2, T, H, W), (dx, dy) of the visible object, 0 on background
    Coverage is analytic antialiasing: a pixel is covered by clip(0.5 - signed distance, 0, 1).
    """
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    times = np.arange(num_frames, dtype=np.float32)[:, None, None]
    frames = np.zeros((3, num_frames, size, size), np.float32)
    depth = np.ones((num_frames, size, size), np.float32)
    flow = np.zeros((2, num_frames, size, size), np.float32)
    for obj in sorted(objects, key=lambda o: -o.depth):  # far to near: the nearer object is painted last
        cy = obj.start[0] + obj.velocity[0] * times  # (T, 1, 1)
        cx = obj.start[1] + obj.velocity[1] * times
        dist = _signed_distance(obj.shape, grid[None, :, None] - cy, grid[None, None, :] - cx, obj.radius)
        cover = np.clip(0.5 - dist, 0.0, 1.0)  # (T, H, W)
        keep = 1.0 - cover
        for channel, value in enumerate(COLOURS[obj.colour]):
            frames[channel] *= keep
            if value:
                frames[channel] += (value / 255.0) * cover
        depth *= keep
        depth += obj.depth * cover
        visible = cover >= 0.5
        flow[0][visible] = obj.velocity[1]
        flow[1][visible] = obj.velocity[0]
    return frames, depth, flow


def render_audio(colours: list[str], duration: float, sample_rate: int) -> np.ndarray:
    """One sine tone per object at its colour's frequency, 10 ms fades: float32 (round(duration * sr),)."""
    count = round(duration * sample_rate)
    t = np.arange(count, dtype=np.float64) / sample_rate
    wave = np.zeros(count, np.float64)
    for colour in colours:
        wave += 0.3 * np.sin(2 * np.pi * COLOUR_FREQUENCIES[colour] * t)
    fade = min(count // 2, int(0.01 * sample_rate))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[count - fade :] *= ramp[::-1]
    return wave.astype(np.float32)


def sample_objects(
    triples: list[tuple[str, str, str]], size: int, num_frames: int, rng: np.random.Generator
) -> list[ShapeObject]:
    """Random sizes, positions and speeds for the given triples such that objects stay in frame.

    Each object travels between half and all of the free room along its axis over the clip (at most
    8% of the frame per frame). With two objects, placements are re-drawn (up to 50 times) until the
    objects' bounding boxes overlap by at most 10%, so both stay visible (or the best try is kept).
    """
    best, best_gap = None, -np.inf
    for _ in range(50):
        objects = []
        for rank, (colour, shape, motion) in enumerate(triples):
            radius = size * rng.uniform(0.13, 0.17)
            extent = radius * _EXTENT_FACTOR[shape]
            low, high = extent + 1.0, size - extent - 1.0
            room = high - low
            travel = rng.uniform(0.5, 1.0) * min(room, 0.08 * size * max(num_frames - 1, 0))
            speed = travel / max(num_frames - 1, 1)
            dy, dx = MOTIONS[motion]
            along = low + rng.uniform(0, room - travel)
            if dy + dx < 0:  # moving towards 0: start at the far end of the path
                along += travel
            across = rng.uniform(low, high)
            start = (along, across) if dy != 0 else (across, along)
            objects.append(
                ShapeObject(colour, shape, motion, start, (dy * speed, dx * speed), radius, DEPTHS[rank])
            )
        if len(objects) < 2:
            return objects
        gap = _min_gap(objects, num_frames)
        if gap >= 0.9:
            return objects
        if gap > best_gap:
            best, best_gap = objects, gap
    return best


def _min_gap(objects: list[ShapeObject], num_frames: int) -> float:
    """Smallest bounding-box separation over the clip: max(|dy|, |dx|) of the centres over the summed
    extents (>= 1: the boxes never overlap)."""
    t = np.arange(num_frames)[:, None]
    a, b = objects
    pa = np.asarray(a.start) + np.asarray(a.velocity) * t
    pb = np.asarray(b.start) + np.asarray(b.velocity) * t
    return float(np.min(np.abs(pa - pb).max(axis=1)) / (a.extent + b.extent))


# ----------------------------------------------------------------------------- dataset

_SPLIT_CODE = {"train": 0, "heldout": 1, "all": 2}


class ShapesDataset(Dataset):
    """Procedural Shapes clips; item `i` is a pure function of (seed, split, i).

    Args:
        split: "train" (never shows a held-out triple), "heldout" (single objects of held-out triples
            only) or "all" (any triple).
        num_items: length of the dataset.
        size: frame height and width in pixels.
        num_frames: frames per clip (T).
        fps: frame rate used for the audio length and reported in items.
        max_objects: 1 or 2; with 2, 35% of train/all clips hold two objects (held-out clips hold one).
        seed: changes every item.
        caption_mode: "varied" (training wordings, 30% canonical), "canonical", or "paraphrase"
            (held-out wordings only: for evaluation, never for training).
        sample_rate: audio samples per second.
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        split: str = "train",
        num_items: int = 10000,
        size: int = 64,
        num_frames: int = 17,
        fps: float = 8,
        max_objects: int = 2,
        seed: int = 0,
        caption_mode: str = "varied",
        sample_rate: int = 16000,
    ):
        if split not in SPLITS:
            raise VidgenError(f"shapes split must be one of {', '.join(SPLITS)}; got {split!r}")
        if caption_mode not in CAPTION_MODES:
            raise VidgenError(f"caption_mode must be one of {', '.join(CAPTION_MODES)}; got {caption_mode!r}")
        if max_objects not in (1, 2):
            raise VidgenError(f"max_objects must be 1 or 2; got {max_objects}")
        if size < 16:
            raise VidgenError(f"shapes size must be >= 16 pixels; got {size}")
        if num_frames < 1 or num_items < 1:
            raise VidgenError(f"num_frames and num_items must be >= 1; got {num_frames}, {num_items}")
        self.split, self.num_items, self.size, self.num_frames = (
            split,
            int(num_items),
            int(size),
            int(num_frames),
        )
        self.fps, self.max_objects, self.seed = float(fps), max_objects, int(seed)
        self.caption_mode, self.sample_rate = caption_mode, int(sample_rate)
        self.triples = {"train": TRAIN_TRIPLES, "heldout": HELDOUT_TRIPLES, "all": ALL_TRIPLES}[split]

    def __len__(self) -> int:
        return self.num_items

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_CODE[self.split], index])

    def sample_triples(self, rng: np.random.Generator) -> list[tuple[str, str, str]]:
        two = self.split != "heldout" and self.max_objects == 2 and rng.random() < TWO_OBJECT_PROBABILITY
        first = self.triples[rng.integers(len(self.triples))]
        if not two:
            return [first]
        others = [t for t in self.triples if t[0] != first[0]]  # different colours keep objects apart by hue
        return [first, others[rng.integers(len(others))]]

    def caption(self, objects: list, rng: np.random.Generator) -> str:
        if self.caption_mode == "canonical":
            return canonical_caption(objects)
        if self.caption_mode == "paraphrase":
            return varied_caption(objects, rng, heldout_wording=True)
        if rng.random() < CANONICAL_PROBABILITY:
            return canonical_caption(objects)
        return varied_caption(objects, rng)

    def __getitem__(self, index: int) -> dict:
        if not -self.num_items <= index < self.num_items:
            raise IndexError(f"index {index} out of range for a ShapesDataset of {self.num_items} items")
        index = index % self.num_items
        rng = self._rng(index)
        triples = self.sample_triples(rng)
        objects = sample_objects(triples, self.size, self.num_frames, rng)
        frames, depth, flow = render_objects(objects, self.size, self.num_frames)
        audio = render_audio([o.colour for o in objects], self.num_frames / self.fps, self.sample_rate)
        caption = self.caption(triples, rng)

        ids = torch.full((2, 3), -1, dtype=torch.long)  # (object, [colour, shape, motion]); -1 = absent
        for row, (colour, shape, motion) in enumerate(triples):
            ids[row] = torch.tensor(
                [COLOUR_NAMES.index(colour), SHAPES.index(shape), MOTION_NAMES.index(motion)]
            )
        labels = {
            "objects": [o.to_label() for o in objects],
            "num_objects": len(objects),
            "colour_id": int(ids[0, 0]),
            "shape_id": int(ids[0, 1]),
            "motion_id": int(ids[0, 2]),
            "object_ids": ids,
        }
        return {
            "video": torch.from_numpy(frames * 2.0 - 1.0),  # (3, T, H, W)
            "depth": torch.from_numpy(depth)[None],  # (1, T, H, W)
            "flow": torch.from_numpy(flow),  # (2, T, H, W)
            "audio": torch.from_numpy(audio),  # (N,)
            "caption": caption,
            "canonical_caption": canonical_caption(triples),
            "class_id": class_id(*triples[0]),
            "labels": labels,
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "index": index,
        }
