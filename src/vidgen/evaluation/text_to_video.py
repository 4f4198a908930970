"""Text-to-video evaluation on Shapes: generate from prompts whose attributes are known, then judge
the videos from pixels alone with `vidgen.evaluation.shapes_eval` (colour by hue, shape by fill,
direction by centroid drift).

Prompt sets (all fixed, so numbers are comparable between runs and models):
- "heldout":    the 16 held-out (colour, shape, motion) triples never seen in training, each as its
                canonical caption and two training-style wordings: 48 prompts. The headline number.
- "paraphrase": the same triples in wordings never used in training: 32 prompts.
- "two-object": two objects of training triples with different colours: 24 prompts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vidgen.data.shapes import (
    HELDOUT_TRIPLES,
    canonical_caption,
    heldout_eval_prompts,
    two_object_eval_prompts,
    varied_caption,
)
from vidgen.errors import VidgenError
from vidgen.evaluation.shapes_eval import score_video

PROMPT_SETS = ("heldout", "paraphrase", "two-object")
ATTRIBUTES = ("colour", "shape", "direction", "all")


def heldout_prompts(wordings_per_triple: int = 2) -> list[tuple[str, list[dict]]]:
    """Canonical caption + `wordings_per_triple` training-style wordings for each held-out triple."""
    rng = np.random.default_rng(2024)  # fixed: the benchmark must not change between runs
    prompts = []
    for triple in HELDOUT_TRIPLES:
        expected = [dict(zip(("colour", "shape", "motion"), triple))]
        texts = [canonical_caption([triple])]
        while len(texts) < 1 + wordings_per_triple:
            text = varied_caption([triple], rng, heldout_wording=False)
            if text not in texts:
                texts.append(text)
        prompts.extend((text, [dict(e) for e in expected]) for text in texts)
    return prompts


def prompt_set(name: str) -> list[tuple[str, list[dict]]]:
    if name == "heldout":
        return heldout_prompts()
    if name == "paraphrase":
        return heldout_eval_prompts("paraphrase")
    if name == "two-object":
        return two_object_eval_prompts()
    raise VidgenError(f"prompt set {name!r} is not one of {', '.join(PROMPT_SETS)}")


def evaluate_text_to_video(generate: Callable[[str, int], np.ndarray], prompts: Sequence[tuple[str, list[dict]]],
                           seeds: Sequence[int] = (0, 1), save_dir: str | Path | None = None,
                           progress: Callable[[int, int], None] | None = None) -> dict:
    """Generate every prompt with every seed and score the videos.

    generate: (prompt, seed) -> uint8 frames (T, H, W, 3).
    Returns {"colour", "shape", "direction", "all": accuracies, "n": videos, "seconds_per_video",
    "by_value": per attribute and expected value [right, total] over objects (e.g. by_value["shape"]
    ["square"] = [0, 30]), "rows": per-video verdicts}.
    """
    if not prompts or not seeds:
        raise VidgenError("evaluation needs at least one prompt and one seed")
    rows, seconds = [], []
    total = len(prompts) * len(seeds)
    for index, ((prompt, expected), seed) in enumerate((p, s) for p in prompts for s in seeds):
        started = time.perf_counter()
        frames = generate(prompt, seed)
        seconds.append(time.perf_counter() - started)
        scores = score_video(frames, expected)
        rows.append({"prompt": prompt, "seed": seed, "expected": expected,
                     **{key: scores[key] for key in ATTRIBUTES}, "objects": scores["objects"],
                     "detections": scores["detections"]})
        if save_dir is not None:
            from vidgen.io import write_video

            write_video(Path(save_dir) / f"{index:03d}-seed{seed}.gif", frames, fps=8)
        if progress is not None:
            progress(index + 1, total)
    summary = {key: float(np.mean([row[key] for row in rows])) for key in ATTRIBUTES}
    return {**summary, "n": len(rows), "seconds_per_video": float(np.mean(seconds)),
            "by_value": accuracy_by_value(rows), "rows": rows}


def accuracy_by_value(rows: Sequence[dict]) -> dict[str, dict[str, list[int]]]:
    """{attribute: {expected value: [right, total]}} over every expected object of `rows` (the "objects"
    verdicts of `score_video`): which colours, shapes or motions a model gets wrong."""
    table: dict[str, dict[str, list[int]]] = {"colour": {}, "shape": {}, "direction": {}}
    for row in rows:
        for verdict in row["objects"]:
            for attribute, key in (("colour", "colour"), ("shape", "shape"), ("direction", "motion")):
                counts = table[attribute].setdefault(verdict["expected"][key], [0, 0])
                counts[0] += int(verdict[attribute])
                counts[1] += 1
    return {attribute: dict(sorted(values.items())) for attribute, values in table.items()}


def format_by_value(by_value: dict[str, dict[str, list[int]]], attribute: str) -> str:
    """"circle 30/30, square 0/30, triangle 36/36"."""
    return ", ".join(f"{value} {right}/{total}" for value, (right, total) in by_value[attribute].items())


def evaluate_pipeline(pipe, sets: Sequence[str] = PROMPT_SETS, seeds: Sequence[int] = (0, 1),
                      num_inference_steps: int | None = None, guidance_scale: float | None = None,
                      save_dir: str | Path | None = None, log: Callable[[str], None] = print,
                      autoguidance_scale: float | None = None, sampler: str | None = None) -> dict:
    """Evaluate a text-to-video pipeline on the named prompt sets: {set name: report}.

    autoguidance_scale, sampler: passed to the pipeline when given (None = the pipeline's default)."""
    extra = {key: value for key, value in (("autoguidance_scale", autoguidance_scale), ("sampler", sampler))
             if value is not None}
    reports = {}
    for name in sets:
        prompts = prompt_set(name)

        def generate(prompt: str, seed: int) -> np.ndarray:
            return pipe(prompt, seed=seed, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                        progress=False, **extra).frames

        directory = Path(save_dir) / name if save_dir is not None else None
        report = evaluate_text_to_video(generate, prompts, seeds, save_dir=directory)
        log(f"{name}: colour {report['colour']:.1%}  shape {report['shape']:.1%}  direction {report['direction']:.1%}"
            f"  all {report['all']:.1%}  ({report['n']} videos, {report['seconds_per_video']:.2f} s each)")
        log(f"{name}: shape by expected shape: {format_by_value(report['by_value'], 'shape')}")
        reports[name] = report
    return reports
