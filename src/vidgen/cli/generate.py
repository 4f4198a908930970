"""`vidgen generate PROMPT -o out.mp4`: text-to-video with a bundled or local pipeline, and
`vidgen generate --class NAME_OR_ID --model magvit-shapes -o out.mp4`: class-conditional generation."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

DEFAULT_MODEL = "cogvideox-shapes"
DEFAULT_CLASS_MODEL = "magvit-shapes"  # the default with --class

EXAMPLES = """examples:
  vidgen generate "a red circle moving left" -o out.mp4
  vidgen generate "a red circle moving left" -o out.mp4 -o out.gif      # both formats, one generation
  vidgen generate "a green triangle sliding up" -o out.gif --seed 3 --steps 40 --guidance 5
  vidgen generate "a blue square moving right" -o out.mp4 --negative-prompt "a red circle"
  vidgen generate "a yellow circle moving down" -o out.mp4 --model ./runs/my-pipeline
  vidgen generate "a red circle moving left" -o out.gif --model magvit-shapes      # MAGVIT, 12 steps
  vidgen generate --class "red circle moving right" -o out.mp4                     # magvit-shapes
  vidgen generate --class 5 -o out.gif --guidance 3 --seed 1                       # a class id
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate a video from a text prompt (or a class)",
        description="Generate a video from a text prompt with a text-to-video pipeline "
        f"(default: the bundled {DEFAULT_MODEL}), or from a class with a class-conditional model "
        "(--class, e.g. magvit-shapes).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", nargs="?", default=None, help="what the video shows (omit it with --class)")
    parser.add_argument("--class", dest="class_label", default=None, metavar="CLASS",
                        help="class-conditional generation instead of a prompt: a class name (e.g. \"red circle "
                        "moving left\") or class id; needs a class-conditional model such as magvit-shapes "
                        "(`vidgen info MODEL` lists its classes)")
    parser.add_argument("-o", "--output", required=True, action="append",
                        help="output file: .mp4, .gif, .mkv or .png (contact sheet); repeat to write several")
    parser.add_argument("--model", default=None, help="bundled model name or local pipeline folder "
                        f"(default: {DEFAULT_MODEL}, or {DEFAULT_CLASS_MODEL} with --class; see `vidgen models`)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed reproduces the video")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale "
                        "(default: the model's; 1 = no guidance)")
    parser.add_argument("--autoguidance", type=float, default=None, help="autoguidance scale: guidance away "
                        "from the model's weak transformer (default: the model's; 0 = off)")
    parser.add_argument("--negative-prompt", default=None, help="what the video should not show")
    parser.add_argument("--frames", type=int, default=None, help="number of frames (4k+1; default: the model's)")
    parser.add_argument("--height", type=int, default=None, help="height in pixels (default: the model's)")
    parser.add_argument("--width", type=int, default=None, help="width in pixels (default: the model's)")
    parser.add_argument("--fps", type=float, default=None, help="frames per second of the written file")
    parser.add_argument("--sampler", default=None,  # checked by the pipeline (vidgen.diffusion.SAMPLERS)
                        help="sampler (default: the model's): dpm++ (DPM-Solver++(2M)), dpm++-sde (its SDE "
                             "variant, CogVideoX's) or ddim")
    parser.add_argument("--temperature", type=float, default=None,
                        help="token models (MAGVIT): token sampling temperature (default: the model's, 1 for "
                             "magvit-shapes; 0 = the most likely token)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="token models (MAGVIT): nucleus sampling, drawing only from the most likely tokens "
                             "holding this much probability (default: the model's, 0.8 for magvit-shapes; 1 = off)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidgen.errors import VidgenError
    from vidgen.pipelines import load_pipeline

    outputs = check_outputs(args.output, args.fps)
    if args.class_label is not None:
        args.model = args.model or DEFAULT_CLASS_MODEL
        return _run_class(args, outputs)
    args.model = args.model or DEFAULT_MODEL
    if args.prompt is None:
        raise VidgenError("give a PROMPT (or --class NAME_OR_ID with a class-conditional model such as "
                          "magvit-shapes)")
    pipe = load_pipeline(args.model, device=args.device)
    settings = pipe.settings
    extra = {}
    if args.sampler is not None:
        require_diffusion_option(pipe, "sampler", "--sampler", args.model, "decodes tokens and has no sampler to choose")
        extra["sampler"] = args.sampler
    if args.autoguidance is not None:
        require_diffusion_option(pipe, "autoguidance_scale", "--autoguidance", args.model, "has no autoguidance")
        extra["autoguidance_scale"] = args.autoguidance
    for flag, name in (("--temperature", "temperature"), ("--top-p", "top_p")):
        if getattr(args, name) is not None:
            if name not in inspect.signature(pipe.__call__).parameters:
                raise VidgenError(f"{flag} applies to token models such as magvit-shapes; {args.model!r} "
                                  f"({type(pipe).__name__}) samples no tokens")
            extra[name] = getattr(args, name)
    video = pipe(args.prompt, seed=args.seed, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 negative_prompt=args.negative_prompt,
                 num_frames=args.frames if args.frames is not None else int(settings.get("num_frames", 17)),
                 height=args.height if args.height is not None else int(settings.get("height", 64)),
                 width=args.width if args.width is not None else int(settings.get("width", 64)),
                 progress=not args.no_progress, **extra)
    save_outputs(video, outputs, args.fps, f"seed {args.seed}, generated in {video.info['seconds']:.2f} s")
    return 0


def _run_class(args: argparse.Namespace, outputs: list[Path]) -> int:
    """`--class`: class-conditional generation (MAGVIT's CG)."""
    from vidgen.catalogue import describe_model
    from vidgen.errors import VidgenError
    from vidgen.pipelines import load_pipeline

    if args.prompt is not None:
        raise VidgenError("give a PROMPT or --class, not both (class-conditional generation takes no text)")
    ignored = [flag for flag, value in (("--negative-prompt", args.negative_prompt), ("--frames", args.frames),
                                        ("--height", args.height), ("--width", args.width),
                                        ("--sampler", args.sampler), ("--autoguidance", args.autoguidance))
               if value is not None]
    if ignored:
        raise VidgenError(f"{', '.join(ignored)} do not apply to --class (the model generates its own clip size)")
    entry = describe_model(args.model)  # pipeline.json only: a text-only model is refused before loading
    if "class-to-video" not in entry.tasks:
        raise VidgenError(f"--class needs a class-conditional model such as magvit-shapes; {args.model!r} "
                          f"({entry.pipeline_class or entry.system}) does {', '.join(entry.tasks) or 'no tasks'}")
    pipe = load_pipeline(args.model, device=args.device)
    if not callable(getattr(pipe, "generate_class", None)):
        raise VidgenError(f"--class needs a class-conditional model such as magvit-shapes; {args.model!r} "
                          f"({type(pipe).__name__}) has no class-conditional generation")
    video = pipe.generate_class(args.class_label, seed=args.seed, num_inference_steps=args.steps,
                                guidance_scale=args.guidance, temperature=args.temperature, top_p=args.top_p,
                                progress=not args.no_progress)
    save_outputs(video, outputs, args.fps, f"class {video.info.get('class_name', video.info.get('class_id'))!r}, "
                 f"seed {args.seed}, generated in {video.info['seconds']:.2f} s")
    return 0


def require_diffusion_option(pipe, parameter: str, flag: str, model: str, lacking: str) -> None:
    """A CLI flag that only diffusion pipelines take: VidgenError unless `pipe(...)` has `parameter`."""
    from vidgen.errors import VidgenError

    if parameter not in inspect.signature(pipe.__call__).parameters:
        raise VidgenError(f"{flag} applies to diffusion models; {model!r} ({type(pipe).__name__}) {lacking}")


def check_outputs(paths: list[str], fps: float | None) -> list[Path]:
    """The -o paths of a generating command, checked (format by extension, --fps range) before any model loads."""
    from vidgen.errors import VidgenError
    from vidgen.pipelines.output import SAVE_FORMATS

    outputs = [Path(path) for path in paths]
    for output in outputs:
        if output.suffix.lower() not in SAVE_FORMATS:
            raise VidgenError(f"output {output.name!r}: use one of {', '.join(SAVE_FORMATS)}")
    if fps is not None and not 0 < fps <= 120:
        raise VidgenError(f"--fps {fps} must be in (0, 120]")
    return outputs


def save_outputs(video, outputs: list[Path], fps: float | None, details: str) -> None:
    """Write one generated video to every output (with --fps if given) and say so: "wrote PATH (T frames,
    HxW, DETAILS)"."""
    if fps is not None:
        video.fps = fps
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)
        video.save(output)
        print(f"wrote {output} ({video.num_frames} frames, {video.tensor.shape[2]}x{video.tensor.shape[3]}, {details})")
