"""`vidgen generate PROMPT -o out.mp4`: text-to-video with a bundled or local pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = "cogvideox-shapes"

EXAMPLES = """examples:
  vidgen generate "a red circle moving left" -o out.mp4
  vidgen generate "a red circle moving left" -o out.mp4 -o out.gif      # both formats, one generation
  vidgen generate "a green triangle sliding up" -o out.gif --seed 3 --steps 40 --guidance 5
  vidgen generate "a blue square moving right" -o out.mp4 --negative-prompt "a red circle"
  vidgen generate "a yellow circle moving down" -o out.mp4 --model ./runs/my-pipeline
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate a video from a text prompt",
        description="Generate a video from a text prompt with a text-to-video pipeline "
        f"(default: the bundled {DEFAULT_MODEL}).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", help="what the video shows")
    parser.add_argument("-o", "--output", required=True, action="append",
                        help="output file: .mp4, .gif, .mkv or .png (contact sheet); repeat to write several")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name or local pipeline folder "
                        f"(default: {DEFAULT_MODEL}; see `vidgen models`)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed reproduces the video")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale "
                        "(default: the model's; 1 = no guidance)")
    parser.add_argument("--negative-prompt", default=None, help="what the video should not show")
    parser.add_argument("--frames", type=int, default=None, help="number of frames (4k+1; default: the model's)")
    parser.add_argument("--height", type=int, default=None, help="height in pixels (default: the model's)")
    parser.add_argument("--width", type=int, default=None, help="width in pixels (default: the model's)")
    parser.add_argument("--fps", type=float, default=None, help="frames per second of the written file")
    parser.add_argument("--sampler", choices=["dpm++", "ddim"], default=None, help="sampler (default: the model's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidgen.errors import VidgenError
    from vidgen.pipelines import load_pipeline
    from vidgen.pipelines.output import SAVE_FORMATS

    outputs = [Path(path) for path in args.output]
    for output in outputs:
        if output.suffix.lower() not in SAVE_FORMATS:
            raise VidgenError(f"output {output.name!r}: use one of {', '.join(SAVE_FORMATS)}")
    if args.fps is not None and not 0 < args.fps <= 120:
        raise VidgenError(f"--fps {args.fps} must be in (0, 120]")
    pipe = load_pipeline(args.model, device=args.device)
    settings = pipe.settings
    video = pipe(args.prompt, seed=args.seed, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 negative_prompt=args.negative_prompt,
                 num_frames=args.frames if args.frames is not None else int(settings.get("num_frames", 17)),
                 height=args.height if args.height is not None else int(settings.get("height", 64)),
                 width=args.width if args.width is not None else int(settings.get("width", 64)),
                 sampler=args.sampler, progress=not args.no_progress)
    if args.fps is not None:
        video.fps = args.fps
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)
        video.save(output)
        print(f"wrote {output} ({video.num_frames} frames, {video.tensor.shape[2]}x{video.tensor.shape[3]}, "
              f"seed {args.seed}, generated in {video.info['seconds']:.2f} s)")
    return 0
