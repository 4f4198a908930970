"""Judge Shapes videos from their pixels alone: which colours, shapes and directions do they show?

The evaluator knows nothing about the generator; it reads uint8 frames (T, H, W, 3):

1. Foreground: pixels clearly bright and saturated against the near-black background
   (HSV value > 0.5 and saturation > 0.5; for clean renders this is the half-coverage contour).
2. Objects: each foreground pixel takes the nearest of the six Shapes hues (red 0, yellow 60,
   green 120, cyan 180, blue 240, magenta 300 degrees); per hue and frame the largest connected
   component is the object (specks from noise or colour fringes are ignored). A hue is an object if
   that component covers at least 0.4% of the frame in at least half of the frames.
3. Colour: the hue. Shape: median over frames of the fill ratio area / bounding-box area, nearest of
   circle (pi/4 = 0.785), square (1.0), triangle (0.5); thresholds sit halfway (0.64, 0.89), which
   tolerates blur. Direction: least-squares slope of the centroid over time, times (T - 1), gives the
   displacement; its dominant axis and sign give left/right/up/down, or "none" if it moved less than
   3% of the frame size.

`score_video(frames, expected)` matches expected objects (dicts with colour, shape, motion) to
detections by colour (falling back to the largest unmatched detection, which then scores a wrong
colour) and reports the fraction of expected objects with each attribute right. `evaluate` averages
over videos. `object_trajectory` gives per-frame centroids for trajectory errors in frame prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import ndimage

from vidgen.errors import VidgenError

HUES: dict[str, float] = {
    "red": 0.0,
    "yellow": 60.0,
    "green": 120.0,
    "cyan": 180.0,
    "blue": 240.0,
    "magenta": 300.0,
}
SHAPE_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
VALUE_THRESHOLD = 0.5
SATURATION_THRESHOLD = 0.5
MIN_AREA_FRACTION = 0.004
MIN_PRESENCE = 0.5  # fraction of frames an object must appear in
MIN_TRAVEL_FRACTION = 0.03


@dataclass
class Detection:
    """An object found in a video.

    trajectory: (T, 2) centroid (y, x) per frame, NaN where the object is not visible
    displacement: (dy, dx) pixels over the clip from a line fit through the centroids
    area: mean pixels per frame (over frames where visible)
    """

    colour: str
    shape: str
    direction: str
    fill_ratio: float
    displacement: tuple[float, float]
    area: float
    frames_present: int
    trajectory: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["trajectory"] = self.trajectory.tolist()
        return out


def _as_frames(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        from vidgen.io.video import tensor_to_frames

        return tensor_to_frames(frames)
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VidgenError(
            f"frames must be uint8 (T, H, W, 3) or a float tensor (3, T, H, W) in [-1, 1]; "
            f"got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


def hue_labels(frames: np.ndarray) -> np.ndarray:
    """Per pixel: index into HUES of the nearest hue for foreground pixels, -1 for background. (T, H, W)"""
    r8, g8, b8 = frames[..., 0], frames[..., 1], frames[..., 2]
    high = np.maximum(np.maximum(r8, g8), b8)  # elementwise: much faster than reducing a size-3 axis
    low = np.minimum(np.minimum(r8, g8), b8)
    # value > 0.5 and saturation (high - low) / high > 0.5, in integers to skip float work on background
    foreground = (high > VALUE_THRESHOLD * 255) & ((high.astype(np.int16) - low) * 2 > high)
    labels = np.full(frames.shape[:3], -1, np.int64)
    rgb = frames[foreground].astype(np.float32)  # (N, 3): only foreground pixels get a hue
    if rgb.size == 0:
        return labels
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    top = high[foreground].astype(np.float32)
    chroma = top - low[foreground]
    hue = (
        np.where(
            top == r,
            ((g - b) / chroma) % 6.0,
            np.where(top == g, (b - r) / chroma + 2.0, (r - g) / chroma + 4.0),
        )
        * 60.0
    )  # degrees; chroma > 0 on foreground
    centres = np.asarray(list(HUES.values()), np.float32)
    distance = np.abs((hue[:, None] - centres + 180.0) % 360.0 - 180.0)  # circular distance
    labels[foreground] = distance.argmin(-1)
    return labels


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (sizes.argmax() + 1)


def _classify_shape(fill: float) -> str:
    names = list(SHAPE_FILL)
    return names[int(np.argmin([abs(fill - SHAPE_FILL[n]) for n in names]))]


def _direction(displacement: tuple[float, float], size: int) -> str:
    dy, dx = displacement
    if max(abs(dy), abs(dx)) < MIN_TRAVEL_FRACTION * size:
        return "none"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def detect_objects(frames) -> list[Detection]:
    """All objects in a video (uint8 (T, H, W, 3) or tensor (3, T, H, W)), largest first."""
    frames = _as_frames(frames)
    count, height, width, _ = frames.shape
    labels = hue_labels(frames)
    min_area = max(4.0, MIN_AREA_FRACTION * height * width)
    detections = []
    for index, colour in enumerate(HUES):
        mask = labels == index
        if mask.sum() < min_area * max(1, count * MIN_PRESENCE):
            continue
        trajectory = np.full((count, 2), np.nan)
        fills, areas = [], []
        for t in range(count):
            component = _largest_component(mask[t])
            area = component.sum()
            if area < min_area:
                continue
            ys, xs = np.nonzero(component)
            box = (ys[-1] - ys[0] + 1) * (np.ptp(xs) + 1)  # nonzero() returns rows in order
            fills.append(area / box)
            areas.append(area)
            trajectory[t] = ys.mean() + 0.5, xs.mean() + 0.5  # pixel centres, as the renderer uses
        if len(areas) < max(1, MIN_PRESENCE * count):
            continue
        present = ~np.isnan(trajectory[:, 0])
        times = np.arange(count)[present]
        if present.sum() >= 2:
            slope = np.polyfit(times, trajectory[present], 1)[0]  # (2,) pixels per frame
            displacement = (float(slope[0] * (count - 1)), float(slope[1] * (count - 1)))
        else:
            displacement = (0.0, 0.0)
        # Occlusion by a nearer object only removes pixels: judge the shape on the least-occluded frames.
        fills, areas_arr = np.asarray(fills), np.asarray(areas)
        fill = float(np.median(fills[areas_arr >= 0.9 * areas_arr.max()]))
        detections.append(
            Detection(
                colour=colour,
                shape=_classify_shape(fill),
                direction=_direction(displacement, min(height, width)),
                fill_ratio=fill,
                displacement=displacement,
                area=float(np.mean(areas)),
                frames_present=int(present.sum()),
                trajectory=trajectory,
            )
        )
    return sorted(detections, key=lambda d: -d.area)


def _check_expected(expected) -> list[dict]:
    if isinstance(expected, dict):
        expected = [expected]
    out = []
    for obj in expected:
        motion = obj.get("motion", obj.get("direction"))
        valid_motion = motion in ("left", "right", "up", "down")
        if obj.get("colour") not in HUES or obj.get("shape") not in SHAPE_FILL or not valid_motion:
            raise VidgenError(
                f"expected objects need colour in {list(HUES)}, shape in {list(SHAPE_FILL)} and motion in "
                f"left/right/up/down; got {obj!r}"
            )
        out.append({"colour": obj["colour"], "shape": obj["shape"], "motion": motion})
    if not out:
        raise VidgenError("expected must list at least one object")
    return out


def score_video(frames, expected: Sequence[dict] | dict) -> dict:
    """Score one video against the objects it should show.

    Args:
        frames: uint8 (T, H, W, 3) (or a float tensor (3, T, H, W) in [-1, 1]).
        expected: [{"colour", "shape", "motion"}] (a single dict is allowed).

    Returns {"colour", "shape", "direction", "all"}: fraction of expected objects with that attribute
    (or all three) right; "count": 1.0 if as many objects were found as expected; "objects": per
    expected object its match and verdicts; "detections": everything found (as dicts).
    """
    expected = _check_expected(expected)
    detections = detect_objects(frames)
    unmatched = list(detections)
    results = []
    # Colour matches first, so a wrong-coloured object cannot steal a right-coloured one's match.
    matches: list[Detection | None] = [None] * len(expected)
    for i, obj in enumerate(expected):
        same = [d for d in unmatched if d.colour == obj["colour"]]
        if same:
            matches[i] = same[0]
            unmatched.remove(same[0])
    for i in range(len(expected)):
        if matches[i] is None and unmatched:
            matches[i] = unmatched.pop(0)
    for obj, match in zip(expected, matches):
        verdict = {
            "colour": match is not None and match.colour == obj["colour"],
            "shape": match is not None and match.shape == obj["shape"],
            "direction": match is not None and match.direction == obj["motion"],
        }
        results.append({"expected": obj, "detected": None if match is None else match.to_dict(), **verdict})
    scores = {key: float(np.mean([r[key] for r in results])) for key in ("colour", "shape", "direction")}
    scores["all"] = float(np.mean([r["colour"] and r["shape"] and r["direction"] for r in results]))
    scores["count"] = float(len(detections) == len(expected))
    scores["objects"] = results
    scores["detections"] = [d.to_dict() for d in detections]
    return scores


def evaluate(samples: Iterable[tuple[object, Sequence[dict] | dict]]) -> dict:
    """Mean scores over videos: {"colour", "shape", "direction", "all", "count", "n"}.

    samples: (frames, expected) pairs as taken by `score_video`.
    """
    keys = ("colour", "shape", "direction", "all", "count")
    totals = dict.fromkeys(keys, 0.0)
    n = 0
    for frames, expected in samples:
        scores = score_video(frames, expected)
        for key in keys:
            totals[key] += scores[key]
        n += 1
    if n == 0:
        raise VidgenError("evaluate needs at least one (frames, expected) pair")
    return {**{key: totals[key] / n for key in keys}, "n": n}


def object_trajectory(frames, colour: str | None = None) -> np.ndarray:
    """Centroid (y, x) per frame of one object: (T, 2), NaN where it is not visible.

    `colour` picks the object; by default the largest one. If nothing is detected, all NaN.
    Centroids are of the visible pixels (for triangles that is below the bounding-box centre).
    """
    frames = _as_frames(frames)
    if colour is not None and colour not in HUES:
        raise VidgenError(f"colour must be one of {', '.join(HUES)}; got {colour!r}")
    for detection in detect_objects(frames):
        if colour is None or detection.colour == colour:
            return detection.trajectory
    return np.full((frames.shape[0], 2), np.nan)


def trajectory_error(frames, reference_frames, colour: str | None = None) -> float:
    """Mean distance in pixels between the object's centroids in two videos (frames where both see it).

    Returns NaN if the object is never visible in both.
    """
    a = object_trajectory(frames, colour)
    b = object_trajectory(reference_frames, colour)
    both = ~(np.isnan(a[:, 0]) | np.isnan(b[:, 0]))
    if not both.any():
        return float("nan")
    return float(np.linalg.norm(a[both] - b[both], axis=1).mean())
