"""`vidgen eval`: judge a text-to-video model on Shapes prompts from pixels alone; for a MAGVIT task
model (`--tasks`) also its video tasks on held-out clips against simple baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """examples:
  vidgen eval                                       # the bundled cogvideox-shapes, all prompt sets, seeds 0 1
  vidgen eval --model runs/cogvideox-shapes-transformer/pipeline --sets heldout --json report.json
  vidgen eval --sets heldout paraphrase --seeds 0 1 2 --save-videos eval-videos/
  vidgen eval --model magvit-shapes --sets heldout                  # MAGVIT text-to-video, same protocol
  vidgen eval --model magvit-shapes --tasks all --sets --json magvit.json   # MAGVIT tasks vs baselines, CG
  vidgen eval --model magvit-shapes --tasks FP OPC --clips 8 --sets         # a quick look at two tasks

MAGVIT tasks (--tasks): FP FI OPC OPV OPH OPD IPC IPD CFP on held-out clips (Shapes held-out triples +
Digits test split), scored on the generated region (PSNR, SSIM; FP also the object-trajectory error)
against copy-last-frame (FP), linear blend (FI) and nearest-given-pixel (outpaint, inpaint) baselines;
CG generates the Shapes training classes (--seeds) and judges them like the text prompts. "all" = the
eight pixel tasks and CG. An empty --sets skips text-to-video.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from vidgen.evaluation.text_to_video import PROMPT_SETS

    parser = subparsers.add_parser(
        "eval", help="measure a text-to-video model's attribute accuracy on Shapes prompts",
        description="Generate videos for fixed Shapes prompt sets (held-out attribute combinations, unseen "
        "wordings, two objects) and judge colour, shape and direction from the pixels.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cogvideox-shapes", help="bundled name or pipeline folder")
    parser.add_argument("--sets", nargs="*", choices=PROMPT_SETS, default=list(PROMPT_SETS),
                        help="prompt sets (none: skip text-to-video)")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="MAGVIT task models: video tasks to score against baselines (FP FI OPC OPV OPH OPD IPC "
                             "IPD CFP CG, or all)")
    parser.add_argument("--clips", type=int, default=32,
                        help="held-out clips per video task (5/8 Shapes, 3/8 Digits; default 32)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds per prompt (default: 0 1)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--autoguidance", type=float, default=None,
                        help="autoguidance scale for diffusion models with a weak transformer (default: the model's)")
    parser.add_argument("--sampler", default=None,
                        help="sampler for diffusion models: dpm++, dpm++-sde or ddim (default: the model's)")
    parser.add_argument("--json", default=None, help="write the full report (per-video verdicts) here")
    parser.add_argument("--save-videos", default=None, help="folder to keep the generated GIFs in")
    parser.add_argument("--device", default=None, help="cpu or cuda")
    parser.set_defaults(func=run)


def _video_tasks(names: list[str] | None) -> tuple[list[str], bool]:
    """--tasks -> (pixel task abbreviations, whether CG is wanted); bad names raise VidgenError."""
    from vidgen.errors import VidgenError
    from vidgen.evaluation.magvit_tasks import DEFAULT_TASKS, TASK_CALLS

    if not names:
        return [], False
    wanted = [n.strip().upper() for n in names]
    if "ALL" in wanted:
        return list(DEFAULT_TASKS), True
    allowed = [*TASK_CALLS, "CG"]
    unknown = [n for n in names if n.strip().upper() not in allowed]
    if unknown:
        raise VidgenError(f"unknown task {unknown[0]!r} for --tasks: use {', '.join(allowed)} or all")
    return [n for n in wanted if n != "CG"], "CG" in wanted


def _attribute_summary(report: dict) -> dict:
    """The printed summary of a Shapes-evaluator report (text-to-video set or CG)."""
    return {**{k: round(report[k], 4) for k in ("colour", "shape", "direction", "all", "n")},
            "shape_by_value": report["by_value"]["shape"]}


def run(args: argparse.Namespace) -> int:
    from vidgen.errors import VidgenError
    from vidgen.evaluation.text_to_video import evaluate_pipeline
    from vidgen.modeling import write_json
    from vidgen.pipelines import load_pipeline

    pixel_tasks, class_generation = _video_tasks(args.tasks)
    if args.clips < 1:
        raise VidgenError(f"--clips {args.clips} must be at least 1")
    pipe = load_pipeline(args.model, device=args.device)
    if (pixel_tasks or class_generation) and not callable(getattr(pipe, "run_task", None)):
        raise VidgenError(f"--tasks needs a MAGVIT task model; {args.model!r} ({type(pipe).__name__}) only does "
                          "text-to-video")
    reports = {}
    if args.sets:
        from vidgen.cli.generate import require_diffusion_option

        if args.autoguidance is not None:
            require_diffusion_option(pipe, "autoguidance_scale", "--autoguidance", args.model, "has no autoguidance")
        if args.sampler is not None:
            require_diffusion_option(pipe, "sampler", "--sampler", args.model, "decodes tokens and has no sampler")
        reports = evaluate_pipeline(pipe, args.sets, args.seeds, args.steps, args.guidance, save_dir=args.save_videos,
                                    autoguidance_scale=args.autoguidance, sampler=args.sampler)
    summary = {name: _attribute_summary(r) for name, r in reports.items()}
    task_reports = {}
    if pixel_tasks or class_generation:
        from vidgen.evaluation import magvit_tasks as mt

        if pixel_tasks:
            num_shapes = round(args.clips * 5 / 8)
            clips = mt.heldout_clips(num_shapes, args.clips - num_shapes, num_frames=pipe.num_frames,
                                     size=pipe.height)
            task_reports = mt.evaluate_tasks(pipe, clips, pixel_tasks, args.steps, args.guidance)
            print(mt.markdown_table(task_reports))
        if class_generation:
            cg = mt.evaluate_class_generation(pipe, seeds=args.seeds, steps=args.steps, guidance=args.guidance)
            task_reports["CG"] = cg
            summary["CG (training classes)"] = _attribute_summary(cg)
        summary.update({name: {"psnr": round(r["model"]["psnr"], 3), "ssim": round(r["model"]["ssim"], 4),
                               "baseline_psnr": round(r["baseline"]["psnr"], 3),
                               "baseline_ssim": round(r["baseline"]["ssim"], 4), "beats_baseline": r["beats_baseline"]}
                        for name, r in task_reports.items() if "model" in r})
        summary.update({name: {"error": r["error"]} for name, r in task_reports.items() if "error" in r})
    if args.json:
        payload = {"model": args.model, "seeds": args.seeds, "steps": args.steps, "guidance": args.guidance,
                   "autoguidance": args.autoguidance, "sampler": args.sampler,
                   "reports": reports}
        if task_reports:
            payload["tasks"] = task_reports
        write_json(Path(args.json), payload)
        print(f"report written to {args.json}")
    print(json.dumps(summary, indent=2))
    return 0
