"""Text-to-video evaluation: prompt sets and scoring of generated videos."""

import numpy as np
import pytest

from vidgen.data.shapes import (
    HELDOUT_TRIPLES,
    TRAIN_TRIPLES,
    render_objects,
    sample_objects,
    training_caption_set,
)
from vidgen.errors import VidgenError
from vidgen.evaluation.text_to_video import evaluate_text_to_video, heldout_prompts, prompt_set


def render(expected, seed, wrong_colour=False, squares_as_circles=False):
    triples = [(e["colour"], e["shape"], e["motion"]) for e in expected]
    if wrong_colour:
        triples = [("blue" if c != "blue" else "red", s, m) for c, s, m in triples]
    if squares_as_circles:
        triples = [(c, "circle" if s == "square" else s, m) for c, s, m in triples]
    objects = sample_objects(triples, 64, 17, np.random.default_rng(seed))
    frames, _, _ = render_objects(objects, 64, 17)
    return (frames.transpose(1, 2, 3, 0) * 255).round().astype(np.uint8)


def test_prompt_sets_are_fixed_and_cover_the_heldout_split():
    heldout = prompt_set("heldout")
    assert len(heldout) >= 40 and heldout == heldout_prompts()
    triples = {tuple(e[0].values()) for _, e in heldout}
    assert triples == set(HELDOUT_TRIPLES)
    for prompt, expected in heldout:  # wordings are training-style, but the combination is held out
        assert tuple(expected[0].values()) not in TRAIN_TRIPLES
    paraphrases = prompt_set("paraphrase")
    for prompt, expected in paraphrases:
        assert prompt not in training_caption_set(tuple(expected[0].values()))
    assert all(len(e) == 2 for _, e in prompt_set("two-object"))
    with pytest.raises(VidgenError, match="prompt set 'nope'"):
        prompt_set("nope")


def test_scores_ground_truth_renders_perfectly_and_catches_wrong_colours(tmp_path):
    prompts = prompt_set("heldout")[:6]
    good = evaluate_text_to_video(lambda p, s: render(dict(prompts)[p], s), prompts, seeds=(0, 1), save_dir=tmp_path)
    assert good["n"] == 12 and good["colour"] == good["shape"] == good["direction"] == 1.0
    assert len(list(tmp_path.glob("*.gif"))) == 12
    bad = evaluate_text_to_video(lambda p, s: render(dict(prompts)[p], s, wrong_colour=True), prompts, seeds=(0,))
    assert bad["colour"] == 0.0 and bad["direction"] == 1.0
    # The per-value table counts every expected object once, and names the value that fails.
    shapes = [e[0]["shape"] for _, e in prompts]
    assert good["by_value"]["shape"] == {s: [2 * shapes.count(s)] * 2 for s in sorted(set(shapes))}
    rounded = evaluate_text_to_video(lambda p, s: render(dict(prompts)[p], s, squares_as_circles=True), prompts,
                                     seeds=(0,))
    assert "square" in shapes and rounded["by_value"]["shape"]["square"] == [0, shapes.count("square")]
    assert all(right == total for v, (right, total) in rounded["by_value"]["shape"].items() if v != "square")
    assert rounded["by_value"]["colour"] == {c: [n, n] for c, (_, n) in rounded["by_value"]["colour"].items()}
    with pytest.raises(VidgenError, match="at least one prompt"):
        evaluate_text_to_video(lambda p, s: None, [], seeds=(0,))


def test_evaluate_pipeline_passes_only_the_options_given():
    from vidgen.evaluation.text_to_video import evaluate_pipeline

    class Recorder:
        """A pipeline stand-in that renders the prompt's ground truth and records its keyword arguments."""

        def __init__(self):
            self.calls = []
            self.truth = dict(prompt_set("heldout"))

        def __call__(self, prompt, seed, **kwargs):
            self.calls.append(kwargs)

            class Video:
                frames = render(self.truth[prompt], seed)
            return Video()

    pipe = Recorder()
    reports = evaluate_pipeline(pipe, ["heldout"], seeds=[0], sampler="dpm++-sde", log=lambda *_: None)
    assert reports["heldout"]["shape"] == 1.0 and len(pipe.calls) == len(prompt_set("heldout"))
    assert all(c["sampler"] == "dpm++-sde" and "autoguidance_scale" not in c for c in pipe.calls)
    pipe.calls.clear()
    evaluate_pipeline(pipe, ["heldout"], seeds=[0], autoguidance_scale=1.5, log=lambda *_: None)
    assert all(c["autoguidance_scale"] == 1.5 and "sampler" not in c for c in pipe.calls)
