"""MAGVIT's measured results: every task on held-out clips, against a simple baseline.

Pixel tasks (FP, FI, OPC, OPV, OPH, OPD, IPC, IPD, and CFP): each held-out clip is given to the
pipeline whole; the pipeline keeps the pixels its task conditions on (the task's region from
`vidgen.tasks.registry`) and generates the rest. The *generated region* is the complement of the
given pixels, and both the model and the task's baseline are scored there only:

    region PSNR   over the generated pixels of a clip (all channels), in dB, averaged over clips
    region SSIM   the mean SSIM (`vidgen.evaluation.metrics.ssim`: 11x11 Gaussian windows) over the
                  windows that touch at least one generated pixel, after pasting the given pixels of
                  the ground truth back (so windows fully inside the given region, which would score
                  exactly 1, are left out), averaged over clips
    trajectory    FP and CFP on Shapes clips: mean distance in pixels between the object's centroid
                  in the output and in the ground truth over the generated frames, both found by the
                  pixel-only Shapes evaluator (`shapes_eval.object_trajectory`); clips where the output
                  loses the object are counted separately ("lost"), not averaged in

Baselines (no learning; each keeps the given pixels exactly, as the scores above do):

    FP, CFP       copy the last given frame to every later frame
    FI            linear blend, per pixel, between the last of the first given frames and the first of
                  the last given frames
    OPC/OPV/OPH   edge replication: each missing pixel takes the nearest given pixel in its own frame
                  (along the column first, then along the row), like `numpy.pad(mode="edge")`
    OPD           the same edge replication within each frame (the moving strip's edges)
    IPC, IPD      the same nearest-given-pixel fill within each frame (from the nearer side of the hole)

All of them are `vidgen.tasks.regions.pad_condition`: "replicate" / "interpolate" along time for FP and
FI, and "replicate" applied frame by frame (time removed) for the spatial tasks.

Reproducible regions: static regions do not depend on anything. The dynamic ones (OPD, IPD) must be
the same for the model and the baseline, in this order of preference:
    1. the pipeline's task method takes `region=`: the evaluation draws it from a `torch.Generator`
       seeded with `region_seed + clip index` (`task_region`) and hands it over;
    2. the pipeline reports the region it used in `GeneratedVideo.info["region"]` (T, H, W): that one;
    3. otherwise `MagvitPipeline`'s convention: the region is the first draw of
       `torch.Generator().manual_seed(seed)`, seed = the generation seed (`seed_convention_region`),
       checked on the output (the pipeline pastes the given pixels back, so they must equal the input).
If none holds the task is not scored and the report says why.

Class generation (CG) and text-to-video (T2V) have no pixel ground truth: CG generates the Shapes
training classes (the held-out triples' class tokens were never trained, so they would measure nothing
but noise) and T2V runs the text-to-video protocol of `vidgen.evaluation.text_to_video` (held-out,
paraphrase and two-object prompt sets, two seeds); both are judged by the Shapes evaluator
(attribute accuracy; chance is colour 1/6, shape 1/3, direction 1/4).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidgen.errors import VidgenError
from vidgen.evaluation.metrics import psnr, ssim
from vidgen.evaluation.shapes_eval import object_trajectory, score_video
from vidgen.tasks.masking import commit_inputs
from vidgen.tasks.regions import pad_condition
from vidgen.tasks.registry import PIXEL_TASKS, Task, get_task

SSIM_WINDOW = 11  # metrics.ssim's default window; the region SSIM counts windows of the same size

# Task abbreviation -> (pipeline method, mode passed to it / to run_task). The modes are the
# pipeline.json "tasks" map of the MAGVIT spec.
TASK_CALLS: dict[str, tuple[str, str]] = {
    "FP": ("predict", "first frame"),
    "CFP": ("predict", "class + first frame"),
    "FI": ("interpolate", "first and last frame"),
    "OPC": ("outpaint", "central"),
    "OPV": ("outpaint", "vertical"),
    "OPH": ("outpaint", "horizontal"),
    "OPD": ("outpaint", "dynamic"),
    "IPC": ("inpaint", "central"),
    "IPD": ("inpaint", "dynamic"),
}
DEFAULT_TASKS = PIXEL_TASKS  # FP FI OPC OPV OPH OPD IPC IPD
REGION_INFO_KEYS = ("region", "condition_region", "pixel_mask")
BASELINES = {
    "FP": "copy the last given frame",
    "CFP": "copy the last given frame",
    "FI": "linear blend of the given first and last frames",
    "OPC": "edge replication (nearest given pixel)",
    "OPV": "edge replication (nearest given pixel)",
    "OPH": "edge replication (nearest given pixel)",
    "OPD": "edge replication (nearest given pixel, per frame)",
    "IPC": "nearest given pixel fill (per frame)",
    "IPD": "nearest given pixel fill (per frame)",
}


# ----------------------------------------------------------------------------- held-out clips


@dataclass
class EvalClip:
    """One held-out clip.

    frames: uint8 (T, H, W, 3), what the pipeline receives; video: the same as float (3, T, H, W) in
    [-1, 1] (the ground truth every score compares with). objects: Shapes labels (colour, shape,
    motion, ...), empty for Digits. class_id: the global MAGVIT class (Shapes 0..71, digit d = 72 + d).
    """

    frames: np.ndarray
    video: torch.Tensor
    source: str
    index: int
    class_id: int
    caption: str
    objects: list[dict] = field(default_factory=list)


def _clip(item: dict, source: str, class_id: int, objects: list[dict]) -> EvalClip:
    from vidgen.io import frames_to_tensor, tensor_to_frames

    frames = tensor_to_frames(item["video"])
    return EvalClip(frames, frames_to_tensor(frames), source, int(item["index"]), int(class_id),
                    str(item["caption"]), objects)


def heldout_clips(num_shapes: int = 20, num_digits: int = 12, num_frames: int = 16, size: int = 64,
                  seed: int = 0) -> list[EvalClip]:
    """The evaluation clips: Shapes held-out triples (single objects, never seen in training) followed by
    Digits test-split clips (handwriting never seen in training). Pure function of the arguments."""
    from vidgen.data.digits import DigitsDataset
    from vidgen.data.shapes import ShapesDataset

    if num_shapes < 0 or num_digits < 0 or num_shapes + num_digits == 0:
        raise VidgenError(f"need at least one clip; got num_shapes={num_shapes}, num_digits={num_digits}")
    clips = []
    if num_shapes:
        shapes = ShapesDataset("heldout", num_items=num_shapes, size=size, num_frames=num_frames, max_objects=1,
                               seed=seed, caption_mode="canonical")
        for i in range(num_shapes):
            item = shapes[i]
            clips.append(_clip(item, "shapes", item["class_id"], item["labels"]["objects"]))
    if num_digits:
        from vidgen.data.shapes import NUM_CLASSES

        digits = DigitsDataset("test", num_items=num_digits, size=size, num_frames=num_frames, num_digits=1,
                               seed=seed, caption_mode="canonical")
        for i in range(num_digits):
            item = digits[i]
            clips.append(_clip(item, "digits", NUM_CLASSES + int(item["class_id"]), []))
    return clips


# ----------------------------------------------------------------------------- regions and baselines


def task_region(task: str | Task, grid: tuple[int, int, int], clip_index: int = 0, region_seed: int = 0) -> torch.Tensor:
    """(T, H, W) bool, True = given, for one clip. Dynamic regions are drawn from a generator seeded with
    `region_seed + clip_index`, so a run is reproducible and every clip gets its own motion."""
    task = get_task(task)
    generator = torch.Generator().manual_seed(int(region_seed) + int(clip_index)) if task.dynamic else None
    return task.condition_region(tuple(grid), generator)


def baseline_fill(task: str | Task, video: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The task's simple baseline (module docstring): `video (3, T, H, W)` with the pixels outside
    `region (T, H, W)` filled from the given ones; given pixels are kept exactly."""
    task = get_task(task)
    if task.abbreviation not in BASELINES:
        raise VidgenError(f"task {task.abbreviation} has no pixel baseline; pixel tasks: {', '.join(BASELINES)}")
    if video.dim() != 4 or tuple(region.shape) != tuple(video.shape[1:]):
        raise VidgenError(f"video must be (3, T, H, W) and region (T, H, W) of the same grid; got "
                          f"{tuple(video.shape)} and {tuple(region.shape)}")
    region = region.bool().to(video.device)
    if task.abbreviation in ("FP", "CFP", "FI"):
        padding = "interpolate" if task.abbreviation == "FI" else "replicate"
        return pad_condition(video[None], region, padding)[0]
    # Spatial tasks: each frame on its own (a clip of one frame), so nothing is copied across time.
    frames = rearrange(video, "c t h w -> t c 1 h w")
    filled = pad_condition(frames, region[:, None], "replicate")  # (T, C, 1, H, W)
    return rearrange(filled, "t c 1 h w -> c t h w")


# ----------------------------------------------------------------------------- scores


def _check_pair(output: torch.Tensor, target: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    if output.shape != target.shape or output.dim() != 4:
        raise VidgenError(f"output and target must both be (3, T, H, W); got {tuple(output.shape)} and "
                          f"{tuple(target.shape)}")
    if tuple(generated.shape) != tuple(target.shape[1:]):
        raise VidgenError(f"generated region {tuple(generated.shape)} does not match the clip {tuple(target.shape)}")
    generated = generated.bool().to(target.device)
    if not generated.any():
        raise VidgenError("the generated region is empty: nothing to score")
    return generated


def region_psnr(output: torch.Tensor, target: torch.Tensor, generated: torch.Tensor) -> float:
    """PSNR (dB) over the generated pixels of one clip. output/target: (3, T, H, W) in [-1, 1];
    generated: (T, H, W) bool, True = generated (scored)."""
    generated = _check_pair(output, target, generated)
    # The generated pixels as one (C, 1, 1, N) "frame": metrics.psnr then averages over exactly them.
    def pick(x: torch.Tensor) -> torch.Tensor:
        return x[:, generated][:, None, None, :]

    return psnr(pick(output.float()), pick(target.float()))


def region_ssim(output: torch.Tensor, target: torch.Tensor, generated: torch.Tensor) -> float:
    """Mean SSIM over the windows that touch the generated region of one clip (module docstring).

    The given pixels of `target` are pasted into `output` first. Windows lying entirely in the given
    region then compare identical pixels and score exactly 1 in `metrics.ssim`; removing them from the
    per-frame means leaves the mean over the windows that see generated pixels.
    """
    generated = _check_pair(output, target, generated)
    composite = torch.where(generated[None], output.float(), target.float())
    per_frame = ssim(composite, target.float(), reduction="none", window_size=SSIM_WINDOW)[0]  # (T,)
    touched = F.max_pool2d(generated[:, None].float(), SSIM_WINDOW, stride=1)[:, 0]  # (T, H-10, W-10)
    windows = touched[0].numel()
    counts = touched.flatten(1).sum(1).double()  # (T,) windows with a generated pixel
    if counts.sum() == 0:
        raise VidgenError("no SSIM window touches the generated region")
    region_sums = per_frame.double().cpu() * windows - (windows - counts)  # sum of SSIM over touched windows
    return float(region_sums.sum() / counts.sum())


def trajectory_error(output_frames: np.ndarray, target_frames: np.ndarray, colour: str,
                     frames: Sequence[int] | np.ndarray) -> float:
    """Mean centroid distance (pixels) of the `colour` object over `frames` where both videos show it;
    NaN when the target never shows it there, +inf when the target does but the output never does."""
    a = object_trajectory(output_frames, colour)[np.asarray(frames)]
    b = object_trajectory(target_frames, colour)[np.asarray(frames)]
    seen_a, seen_b = ~np.isnan(a[:, 0]), ~np.isnan(b[:, 0])
    if not seen_b.any():
        return float("nan")
    both = seen_a & seen_b
    if not both.any():
        return float("inf")
    return float(np.linalg.norm(a[both] - b[both], axis=1).mean())


# ----------------------------------------------------------------------------- calling the pipeline


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _call(fn: Callable, *args, **kwargs):
    """Call `fn` with the keyword arguments it takes (None values are left to its defaults)."""
    return fn(*args, **{k: v for k, v in kwargs.items() if v is not None and _accepts(fn, k)})


def _as_region(value, grid: tuple[int, int, int]) -> torch.Tensor | None:
    if value is None:
        return None
    region = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).bool().cpu()
    while region.dim() > 3 and region.shape[0] == 1:
        region = region[0]
    if tuple(region.shape) != tuple(grid):
        raise VidgenError(f"the pipeline reported a region of shape {tuple(region.shape)}, expected {grid}")
    return region


def run_pipeline_task(pipe, task: str | Task, frames: np.ndarray, region: torch.Tensor, seed: int,
                      steps: int | None = None, guidance: float | None = None,
                      class_label: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one pixel task: returns (output (3, T, H, W) in [-1, 1], uint8-quantized; the region used).

    Calls the pipeline's task method (`predict`, `interpolate`, `outpaint(mode=)`, `inpaint(mode=)`)
    with `region=` when it takes one. The region the pipeline reports in `info` (if any) wins for
    dynamic tasks and must equal ours for static ones.
    """
    from vidgen.io import frames_to_tensor

    task = get_task(task)
    if task.abbreviation not in TASK_CALLS:
        raise VidgenError(f"task {task.abbreviation} is not a pixel task; pixel tasks: {', '.join(TASK_CALLS)}")
    method_name, mode = TASK_CALLS[task.abbreviation]
    grid = tuple(region.shape)
    method = getattr(pipe, method_name, None)
    kwargs = {"seed": seed, "num_inference_steps": steps, "guidance_scale": guidance, "progress": False}
    if task.uses_class:
        kwargs["class_label"] = class_label
    passes_region = False
    if callable(method):
        passes_region = _accepts(method, "region")
        if passes_region:
            kwargs["region"] = region.clone()
        if method_name in ("outpaint", "inpaint"):
            kwargs["mode"] = mode
        out = _call(method, frames, **kwargs)
    elif callable(getattr(pipe, "run_task", None)) and not task.uses_class:
        passes_region = _accepts(pipe.run_task, "region")
        out = _call(pipe.run_task, method_name, frames, mode=mode, seed=seed, steps=steps, guidance=guidance,
                    region=region.clone() if passes_region else None)
    else:
        raise VidgenError(f"the pipeline {type(pipe).__name__} has no {method_name}() for task {task.abbreviation}")
    info = getattr(out, "info", None) or {}
    reported = next((_as_region(info[k], grid) for k in REGION_INFO_KEYS if info.get(k) is not None), None)
    if reported is not None:
        if (passes_region or not task.dynamic) and not torch.equal(reported, region.bool()):
            raise VidgenError(f"task {task.abbreviation}: the pipeline used a different region than the "
                              f"evaluation ({int(reported.sum())} vs {int(region.sum())} given pixels)")
        used = reported
    elif task.dynamic and not passes_region:
        used = seed_convention_region(task, grid, seed)
        output, truth = frames_to_tensor(out.frames), frames_to_tensor(frames)
        if not torch.equal(output[:, used], truth[:, used]):
            raise VidgenError(f"task {task.abbreviation} has a random region, but the pipeline's {method_name}() "
                              f"takes no region=, reports none in info['region'], and its output does not keep "
                              f"the input on the region drawn from its seed: the model and the baseline would "
                              f"fill different holes")
        return output, used
    else:
        used = region.bool()
    return frames_to_tensor(out.frames), used


def seed_convention_region(task: str | Task, grid: tuple[int, int, int], seed: int) -> torch.Tensor:
    """The region a pipeline following `MagvitPipeline`'s convention uses for a dynamic task: the first
    draw of `torch.Generator().manual_seed(seed)` (the generation seed). `run_pipeline_task` checks it:
    such a pipeline pastes the given pixels back, so its output equals the input there exactly."""
    return get_task(task).condition_region(tuple(grid), torch.Generator().manual_seed(int(seed)))


# ----------------------------------------------------------------------------- the evaluation


def region_scores(video: torch.Tensor, target: torch.Tensor, generated: torch.Tensor) -> dict[str, float]:
    """{"psnr", "ssim"} of `video` against `target` on the generated region (`region_psnr`, `region_ssim`)."""
    return {"psnr": region_psnr(video, target, generated), "ssim": region_ssim(video, target, generated)}


def mean_scores(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of `region_scores` results over clips."""
    return {key: float(np.mean([r[key] for r in scores])) for key in ("psnr", "ssim")}


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def evaluate_pixel_task(pipe, task: str | Task, clips: Sequence[EvalClip], steps: int | None = None,
                        guidance: float | None = None, seed: int = 0, region_seed: int = 0,
                        progress: Callable[[str, int, int], None] | None = None,
                        reconstructions: Sequence[torch.Tensor] | None = None) -> dict:
    """Score the pipeline and the task's baseline on `clips` (module docstring).

    Returns {"task", "baseline_name", "n", "model": {"psnr", "ssim"}, "baseline": {...},
    "beats_baseline": {"psnr", "ssim"} (bools), "seconds_per_clip", "rows" (per clip)} and for FP/CFP
    "trajectory": {"model", "baseline" (mean pixels), "n", "model_lost", "baseline_lost"}; with a pipeline that
    has `reconstruct` (MAGVIT) also "tokenizer": {"psnr", "ssim"}, the clip tokenized and decoded, i.e. the
    score of a transformer that predicts every token right (no model on this tokenizer can do better);
    `reconstructions` (one (3, T, H, W) per clip) passes them in when they are already computed.
    The clip's generation seed is `seed + clip position`.
    """
    task = get_task(task)
    if not clips:
        raise VidgenError("the evaluation needs at least one clip")
    if reconstructions is None and hasattr(pipe, "reconstruct"):
        reconstructions = _reconstructions(pipe, clips)
    rows, seconds = [], []
    for position, clip in enumerate(clips):
        target = clip.video
        grid = tuple(target.shape[1:])
        region = task_region(task, grid, position, region_seed)
        started = time.perf_counter()
        output, used = run_pipeline_task(pipe, task, clip.frames, region, seed + position, steps, guidance,
                                         class_label=clip.class_id if task.uses_class else None)
        seconds.append(time.perf_counter() - started)
        if tuple(output.shape) != tuple(target.shape):
            raise VidgenError(f"task {task.abbreviation}: the pipeline returned {tuple(output.shape)} for a clip "
                              f"{tuple(target.shape)}")
        generated = ~used
        base = baseline_fill(task, target, used)
        row = {"clip": position, "source": clip.source, "index": clip.index, "seed": seed + position,
               "given_fraction": float(used.float().mean())}
        scored = [("model", output), ("baseline", base)]
        if reconstructions is not None:  # the tokenizer's ceiling: every token predicted right
            scored.append(("tokenizer", reconstructions[position]))
        for name, video in scored:
            row[name] = region_scores(video, target, generated)
        if task.abbreviation in ("FP", "CFP") and clip.objects:
            from vidgen.io import tensor_to_frames

            later = np.nonzero(generated.flatten(1).any(1).numpy())[0]  # the generated frames
            colour = clip.objects[0]["colour"]
            composite = torch.where(generated[None], output, target)
            row["trajectory"] = {"model": trajectory_error(tensor_to_frames(composite), clip.frames, colour, later),
                                 "baseline": trajectory_error(tensor_to_frames(base), clip.frames, colour, later)}
        rows.append(row)
        if progress is not None:
            progress(task.abbreviation, position + 1, len(clips))
    report = {"task": task.abbreviation, "name": task.name, "baseline_name": BASELINES[task.abbreviation],
              "n": len(rows), "seconds_per_clip": float(np.mean(seconds))}
    for name in ("model", "baseline", "tokenizer"):
        if all(name in r for r in rows):
            report[name] = mean_scores([r[name] for r in rows])
    report["beats_baseline"] = {key: report["model"][key] > report["baseline"][key] for key in ("psnr", "ssim")}
    traj = [r["trajectory"] for r in rows if "trajectory" in r and not math.isnan(r["trajectory"]["baseline"])]
    if traj:
        model_err = _mean([t["model"] for t in traj])
        base_err = _mean([t["baseline"] for t in traj])
        report["trajectory"] = {"model": model_err, "baseline": base_err, "n": len(traj),
                                "model_lost": sum(math.isinf(t["model"]) for t in traj),
                                "baseline_lost": sum(math.isinf(t["baseline"]) for t in traj)}
        # A mean over the clips where the object survived flatters a model that loses it: losing it more
        # often than the baseline is a loss whatever the mean.
        lost = report["trajectory"]["model_lost"] > report["trajectory"]["baseline_lost"]
        report["beats_baseline"]["trajectory"] = not lost and model_err < base_err
    report["rows"] = rows
    return report


def _reconstructions(pipe, clips: Sequence[EvalClip]) -> list[torch.Tensor]:
    """Every clip tokenized and decoded by the pipeline (`MagvitPipeline.reconstruct`), float (3, T, H, W)."""
    return [pipe.reconstruct(clip.video).tensor.cpu().float() for clip in clips]


def tokenizer_ceiling(reconstruct: Callable[[torch.Tensor], torch.Tensor], clips: Sequence[EvalClip],
                      tasks: Sequence[str] = DEFAULT_TASKS, region_seed: int = 0) -> dict:
    """What any transformer on this tokenizer could score at best: every clip tokenized and decoded
    (`reconstruct((3, T, H, W)) -> (3, T, H, W)`, i.e. all tokens predicted right), scored on each task's
    generated region exactly as `evaluate_pixel_task` scores the model, next to the task's baseline.
    Dynamic regions follow `task_region(task, grid, clip position, region_seed)`.
    Returns {task: {"n", "tokenizer": {"psnr", "ssim"}, "baseline": {"psnr", "ssim"}}}."""
    if not clips:
        raise VidgenError("the evaluation needs at least one clip")
    reconstructions = [reconstruct(clip.video).float().cpu() for clip in clips]
    reports = {}
    for name in tasks:
        task = get_task(name)
        rows: dict[str, list[dict[str, float]]] = {"tokenizer": [], "baseline": []}
        for position, (clip, reconstruction) in enumerate(zip(clips, reconstructions)):
            target = clip.video
            given = task_region(task, tuple(target.shape[1:]), position, region_seed)
            for key, video in (("tokenizer", reconstruction), ("baseline", baseline_fill(task, target, given))):
                rows[key].append(region_scores(video, target, ~given))
        reports[task.abbreviation] = {"n": len(clips), **{key: mean_scores(values) for key, values in rows.items()}}
    return reports


def evaluate_class_generation(pipe, class_ids: Sequence[int] | None = None, seeds: Sequence[int] = (0,),
                              steps: int | None = None, guidance: float | None = None,
                              progress: Callable[[str, int, int], None] | None = None) -> dict:
    """CG: generate Shapes classes (default: the 56 training triples) and judge them with the Shapes
    evaluator. Returns {"colour", "shape", "direction", "all", "n", "classes", "seconds_per_video", "by_value"
    (see `text_to_video.accuracy_by_value`), "rows"}."""
    from vidgen.data.shapes import TRAIN_TRIPLES, class_id, class_triple
    from vidgen.evaluation.text_to_video import accuracy_by_value

    if class_ids is None:
        class_ids = [class_id(*t) for t in TRAIN_TRIPLES]
    if not class_ids or not seeds:
        raise VidgenError("class generation needs at least one class and one seed")
    rows, seconds = [], []
    total = len(class_ids) * len(seeds)
    for label in class_ids:
        colour, shape, motion = class_triple(label)
        expected = [{"colour": colour, "shape": shape, "motion": motion}]
        for seed in seeds:
            started = time.perf_counter()
            out = _call(pipe.generate_class, int(label), seed=int(seed), num_inference_steps=steps,
                        guidance_scale=guidance, progress=False)
            seconds.append(time.perf_counter() - started)
            scores = score_video(out.frames, expected)
            rows.append({"class_id": int(label), "seed": int(seed), "expected": expected,
                         **{k: scores[k] for k in ("colour", "shape", "direction", "all")},
                         "objects": scores["objects"]})
            if progress is not None:
                progress("CG", len(rows), total)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("colour", "shape", "direction", "all")}
    return {**summary, "n": len(rows), "classes": len(class_ids), "seconds_per_video": float(np.mean(seconds)),
            "by_value": accuracy_by_value(rows), "rows": rows}


@torch.no_grad()
def condition_use(transformer, tokens: torch.Tensor, task: str, conditions: dict[str, dict[str, Any]],
                  mask_ratios: Sequence[float] = (0.5, 0.9, 1.0), seed: int = 0,
                  generator: torch.Generator | None = None) -> dict[str, dict[str, float]]:
    """How well each of several conditions predicts real tokens: `task` (CG or T2V) on `tokens` with a share
    of them masked (the same masks for every condition), cross-entropy and argmax accuracy at the masked
    positions.

    tokens: (N, t, h, w) codebook indices; conditions: {name: forward keywords for all N clips, e.g.
    {"class_labels": (N,)} or {"text": (N, L, D), "text_mask": (N, L)}}.
    The masks are drawn from `generator` (default: a CPU generator seeded with `seed`).
    Returns {str(ratio): {name: mean cross-entropy (nats), f"accuracy_{name}": accuracy}}.
    """
    tokens = torch.as_tensor(tokens).long()
    if tokens.dim() != 4 or tokens.shape[0] == 0:
        raise VidgenError(f"tokens must be (N, t, h, w) with N >= 1, got {tuple(tokens.shape)}")
    device = next(transformer.parameters()).device
    tokens = tokens.to(device)
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    task_ids = torch.full(tokens.shape[:1], get_task(task).token, dtype=torch.long, device=device)
    conditions = {name: {k: v.to(device) for k, v in keywords.items()} for name, keywords in conditions.items()}
    report = {}
    for ratio in mask_ratios:
        if not 0.0 < ratio <= 1.0:
            raise VidgenError(f"mask ratio {ratio} must be in (0, 1]")
        masked = (torch.rand(tokens.shape, generator=generator) < ratio).to(device)
        # As training and decoding build CG / T2V inputs: [MASK] where masked, no condition region.
        inputs, refine = commit_inputs(tokens, masked, transformer.mask_token_id)
        row = {}
        for name, keywords in conditions.items():
            logits = transformer(inputs, task=task_ids, condition_positions=refine, **keywords).float()[masked]
            row[name] = float(F.cross_entropy(logits, tokens[masked]))  # (M, K) against (M,)
            row[f"accuracy_{name}"] = float((logits.argmax(-1) == tokens[masked]).float().mean())
        report[f"{ratio:g}"] = row
    return report


def class_condition_use(transformer, tokens: torch.Tensor, class_ids: torch.Tensor,
                        mask_ratios: Sequence[float] = (0.5, 0.9, 1.0), seed: int = 0) -> dict[str, dict[str, float]]:
    """Does the transformer use its class token? `condition_use` of the CG task given the right class, a
    wrong class (each label shifted by a random non-zero offset) and the null class.

    tokens: (N, t, h, w) codebook indices; class_ids: (N,) labels in [0, num_classes).
    Returns {str(ratio): {"right", "wrong", "null" (mean cross-entropy, nats), "accuracy_right",
    "accuracy_null", "gain" = null - right}}. A model that ignores the class has gain ~0 and right ~ wrong.
    """
    cfg = transformer.config
    tokens, class_ids = torch.as_tensor(tokens).long(), torch.as_tensor(class_ids).long().reshape(-1)
    if tokens.dim() != 4 or tokens.shape[0] != class_ids.shape[0] or tokens.shape[0] == 0:
        raise VidgenError(f"tokens (N, t, h, w) and class_ids (N,) must match, got {tuple(tokens.shape)} and "
                          f"{tuple(class_ids.shape)}")
    if cfg.num_classes < 2 or class_ids.min() < 0 or class_ids.max() >= cfg.num_classes:
        raise VidgenError(f"class_ids must lie in [0, {cfg.num_classes}) and the model needs >= 2 classes")
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, cfg.num_classes, class_ids.shape, generator=generator)  # then the masks
    labels = {"right": class_ids, "wrong": (class_ids + shift) % cfg.num_classes,
              "null": torch.full_like(class_ids, -1)}
    report = condition_use(transformer, tokens, "CG", {name: {"class_labels": label} for name, label in labels.items()},
                           mask_ratios, generator=generator)
    for row in report.values():
        del row["accuracy_wrong"]
        row["gain"] = row["null"] - row["right"]
    return report


def evaluate_text_sets(pipe, sets: Sequence[str] = ("heldout", "paraphrase", "two-object"),
                       seeds: Sequence[int] = (0, 1), steps: int | None = None, guidance: float | None = None,
                       log: Callable[[str], None] | None = print) -> dict:
    """T2V: the text-to-video protocol (`vidgen.evaluation.text_to_video`) for any pipeline whose
    `__call__(prompt, seed=...)` returns a GeneratedVideo (only the keywords it takes are passed)."""
    from vidgen.evaluation.text_to_video import evaluate_text_to_video, prompt_set

    def generate(prompt: str, seed: int) -> np.ndarray:
        return _call(pipe, prompt, seed=seed, num_inference_steps=steps, guidance_scale=guidance,
                     progress=False).frames

    reports = {}
    for name in sets:
        report = evaluate_text_to_video(generate, prompt_set(name), seeds)
        if log is not None:
            log(f"T2V {name}: colour {report['colour']:.1%}  shape {report['shape']:.1%}  direction "
                f"{report['direction']:.1%}  all {report['all']:.1%}  ({report['n']} videos, "
                f"{report['seconds_per_video']:.2f} s each)")
        reports[name] = report
    return reports


def evaluate_tasks(pipe, clips: Sequence[EvalClip], tasks: Sequence[str] = DEFAULT_TASKS, steps: int | None = None,
                   guidance: float | None = None, seed: int = 0, region_seed: int = 0,
                   log: Callable[[str], None] | None = print) -> dict:
    """Every pixel task in `tasks` on `clips`: {abbreviation: report of `evaluate_pixel_task`}. A task the
    pipeline cannot be scored on (e.g. a dynamic region it neither takes nor reports) gets {"error": why}."""
    reports = {}
    # One tokenizer pass per clip for every task's ceiling (the same reconstruction for all of them).
    reconstructions = None
    if hasattr(pipe, "reconstruct"):
        try:
            reconstructions = _reconstructions(pipe, clips)
        except VidgenError:
            pass  # each task then reports the error itself, as when it reconstructs on its own
    for name in tasks:
        task = get_task(name)
        try:
            report = evaluate_pixel_task(pipe, task, clips, steps, guidance, seed, region_seed,
                                         reconstructions=reconstructions)
        except VidgenError as error:
            if log is not None:
                log(f"{task.abbreviation}: not scored: {error}")
            reports[task.abbreviation] = {"task": task.abbreviation, "error": str(error)}
            continue
        if log is not None:
            log(format_task_line(report))
        reports[task.abbreviation] = report
    return reports


# ----------------------------------------------------------------------------- reporting


def format_task_line(report: dict) -> str:
    m, b = report["model"], report["baseline"]
    line = (f"{report['task']}: PSNR {m['psnr']:.2f} vs baseline {b['psnr']:.2f} dB, SSIM {m['ssim']:.4f} vs "
            f"{b['ssim']:.4f} ({report['n']} clips, {report['seconds_per_clip']:.2f} s each)")
    if "tokenizer" in report:
        k = report["tokenizer"]
        line += f"; tokenizer ceiling PSNR {k['psnr']:.2f} dB, SSIM {k['ssim']:.4f}"
    if "trajectory" in report:
        t = report["trajectory"]
        line += (f"; trajectory error {t['model']:.2f} vs {t['baseline']:.2f} px ({t['n']} Shapes clips, "
                 f"model lost the object in {t['model_lost']})")
    return line


def markdown_table(reports: dict) -> str:
    """The pixel-task results as a markdown table (model vs baseline, region PSNR/SSIM, FP trajectory)."""
    lines = [("| task | baseline | clips | PSNR model | PSNR baseline | SSIM model | SSIM baseline | "
              "trajectory error model / baseline (px) | beats baseline | tokenizer ceiling PSNR / SSIM |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for abbreviation, r in reports.items():
        if "error" in r:
            lines.append(f"| {abbreviation} | {BASELINES.get(abbreviation, '')} | - | - | - | - | - | - | "
                         f"not scored: {r['error']} | - |")
            continue
        m, b = r["model"], r["baseline"]
        traj = "-"
        if "trajectory" in r:
            t = r["trajectory"]
            traj = f"{t['model']:.2f} / {t['baseline']:.2f} (object lost in {t['model_lost']}/{t['n']})"
        wins = [k for k, v in r["beats_baseline"].items() if v]
        losses = [k for k, v in r["beats_baseline"].items() if not v]
        verdict = "yes" if not losses else ("no" if not wins else f"{', '.join(wins)} only")
        ceiling = f"{r['tokenizer']['psnr']:.2f} / {r['tokenizer']['ssim']:.4f}" if "tokenizer" in r else "-"
        lines.append(f"| {abbreviation} | {r['baseline_name']} | {r['n']} | {m['psnr']:.2f} | {b['psnr']:.2f} | "
                     f"{m['ssim']:.4f} | {b['ssim']:.4f} | {traj} | {verdict} | {ceiling} |")
    return "\n".join(lines)


def attribute_table(reports: dict) -> str:
    """CG / T2V attribute accuracies as a markdown table: {label: report with colour/shape/direction/all/n}."""
    lines = ["| set | videos | colour | shape | direction | all three |", "| --- | --- | --- | --- | --- | --- |"]
    for label, r in reports.items():
        lines.append(f"| {label} | {r['n']} | {r['colour']:.1%} | {r['shape']:.1%} | {r['direction']:.1%} | "
                     f"{r['all']:.1%} |")
    return "\n".join(lines)


def strip_rows(report):
    """The report without per-clip / per-video rows (for printing)."""
    if isinstance(report, dict):
        return {k: strip_rows(v) for k, v in report.items() if k != "rows"}
    return report


__all__ = [
    "BASELINES",
    "DEFAULT_TASKS",
    "TASK_CALLS",
    "EvalClip",
    "attribute_table",
    "baseline_fill",
    "class_condition_use",
    "condition_use",
    "evaluate_class_generation",
    "evaluate_pixel_task",
    "evaluate_tasks",
    "evaluate_text_sets",
    "heldout_clips",
    "markdown_table",
    "mean_scores",
    "region_psnr",
    "region_scores",
    "region_ssim",
    "run_pipeline_task",
    "seed_convention_region",
    "task_region",
    "tokenizer_ceiling",
    "trajectory_error",
]
