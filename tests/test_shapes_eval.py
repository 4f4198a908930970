"""The Shapes evaluator: perfect on ground-truth renders, and it catches wrong colours/shapes/directions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vidgen.data import ShapesDataset
from vidgen.data import shapes as S
from vidgen.errors import VidgenError
from vidgen.evaluation.shapes_eval import (
    detect_objects,
    evaluate,
    object_trajectory,
    score_video,
    trajectory_error,
)
from vidgen.io import tensor_to_frames


def clips(split="all", count=24, size=64, num_frames=17, seed=0, max_objects=2):
    ds = ShapesDataset(split=split, size=size, num_frames=num_frames, seed=seed, max_objects=max_objects)
    for index in range(count):
        item = ds[index]
        yield tensor_to_frames(item["video"]), item["labels"]["objects"]


def render(colour, shape, motion, size=64, num_frames=9, seed=0):
    rng = np.random.default_rng(seed)
    objects = S.sample_objects([(colour, shape, motion)], size, num_frames, rng)
    frames, _, _ = S.render_objects(objects, size, num_frames)
    return (frames.transpose(1, 2, 3, 0) * 255).round().astype(np.uint8), objects[0]


@pytest.mark.parametrize(("size", "num_frames"), [(64, 17), (32, 9)])
def test_perfect_on_clean_renders(size, num_frames):
    result = evaluate(clips(count=20, size=size, num_frames=num_frames, seed=size))
    assert result["n"] == 20
    for key in ("colour", "shape", "direction", "all", "count"):
        assert result[key] == 1.0, (key, result)


def test_every_class_is_recognised():
    for index in range(S.NUM_CLASSES):
        colour, shape, motion = S.class_triple(index)
        frames, _ = render(colour, shape, motion, size=32, num_frames=5, seed=index)
        (detection,) = detect_objects(frames)
        assert (detection.colour, detection.shape, detection.direction) == (colour, shape, motion)


def test_heldout_split_and_prompts_agree():
    samples = list(clips(split="heldout", count=16, num_frames=9))
    assert evaluate(samples)["all"] == 1.0
    prompt_attrs = {tuple(e[0].values()) for _, e in S.heldout_eval_prompts()}
    assert prompt_attrs == set(S.HELDOUT_TRIPLES)


def test_wrong_attributes_fail():
    frames, _ = render("blue", "circle", "right")
    right = score_video(frames, [{"colour": "blue", "shape": "circle", "motion": "right"}])
    assert right["all"] == 1.0
    wrong_colour = score_video(frames, [{"colour": "red", "shape": "circle", "motion": "right"}])
    assert wrong_colour["colour"] == 0.0 and wrong_colour["shape"] == 1.0 and wrong_colour["direction"] == 1.0
    wrong_shape = score_video(frames, {"colour": "blue", "shape": "square", "motion": "right"})
    assert wrong_shape["shape"] == 0.0 and wrong_shape["all"] == 0.0
    backwards = score_video(frames[::-1], [{"colour": "blue", "shape": "circle", "motion": "right"}])
    assert backwards["direction"] == 0.0 and backwards["objects"][0]["detected"]["direction"] == "left"
    two = score_video(
        frames,
        [
            {"colour": "blue", "shape": "circle", "motion": "right"},
            {"colour": "red", "shape": "square", "motion": "up"},
        ],
    )
    assert two["count"] == 0.0 and two["colour"] == 0.5 and two["objects"][1]["detected"] is None


def test_static_and_empty_videos():
    frames, _ = render("green", "triangle", "down")
    still = np.repeat(frames[:1], 9, axis=0)
    assert detect_objects(still)[0].direction == "none"
    assert score_video(still, {"colour": "green", "shape": "triangle", "motion": "down"})["direction"] == 0.0
    black = np.zeros_like(frames)
    empty = score_video(black, {"colour": "green", "shape": "triangle", "motion": "down"})
    assert empty["all"] == 0.0 and empty["colour"] == 0.0 and empty["detections"] == []
    assert np.isnan(object_trajectory(black)).all()


def test_robust_to_blur_noise_and_dim_colours():
    rng = np.random.default_rng(0)
    samples = []
    for frames, expected in clips(count=12, seed=7, max_objects=1):
        blurred = ndimage.gaussian_filter(frames.astype(np.float32), sigma=(0, 1.0, 1.0, 0))
        noisy = blurred * 0.85 + rng.normal(0, 8, frames.shape) + 12  # dimmer, noisy, grey-ish background
        samples.append((np.clip(noisy, 0, 255).astype(np.uint8), expected))
    result = evaluate(samples)
    assert result["colour"] == 1.0 and result["direction"] == 1.0 and result["shape"] >= 0.9, result


def test_trajectory_follows_the_object():
    frames, obj = render("yellow", "circle", "down", num_frames=9)
    trajectory = object_trajectory(frames, colour="yellow")
    truth = np.asarray(obj.start) + np.asarray(obj.velocity) * np.arange(9)[:, None]
    assert np.abs(trajectory - truth).max() < 0.3  # the circle's pixel centroid is its centre
    assert trajectory_error(frames, frames) == 0.0
    shifted = np.roll(frames, 3, axis=2)  # 3 px to the right
    assert trajectory_error(shifted, frames) == pytest.approx(3.0, abs=0.3)
    assert np.isnan(object_trajectory(frames, colour="red")).all()


def test_accepts_tensors_and_rejects_bad_expectations():
    item = ShapesDataset(split="all", max_objects=1, num_frames=5)[0]
    assert score_video(item["video"], item["labels"]["objects"])["all"] == 1.0
    with pytest.raises(VidgenError, match="colour"):
        score_video(
            tensor_to_frames(item["video"]), [{"colour": "purple", "shape": "circle", "motion": "left"}]
        )
    with pytest.raises(VidgenError, match="uint8"):
        detect_objects(np.zeros((2, 8, 8, 3), np.float32))
