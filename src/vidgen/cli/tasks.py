"""`vidgen predict | interpolate | outpaint | inpaint VIDEO -o out.mp4`: MAGVIT's video tasks.

Each command reads VIDEO (any file `vidgen.io.read_video` reads: mp4, webm, mkv, mov, avi, gif, an image,
or a folder of frames) at the model's fps, resized and center-cropped to its size, keeps the part of it
the task conditions on, and generates the rest with a MAGVIT pipeline (`vidgen.pipelines.magvit`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = "magvit-shapes"

COMMON_NOTES = """
The model takes one clip shape (magvit-shapes: 16 frames of 64x64 at 8 fps); the first 16 frames from
--start are used. Outputs: .mp4, .gif, .mkv or .png (contact sheet), repeat -o for several.
"""

COMMANDS = {
    "predict": {
        "help": "continue a video from its first frame (MAGVIT frame prediction)",
        "description": "Keep the first frame of VIDEO and generate the frames that follow (MAGVIT's frame "
                       "prediction, FP). With --class, the class-conditional variant (CFP). VIDEO may be a "
                       "single image.",
        "examples": """examples:
  vidgen predict clip.mp4 -o predicted.mp4
  vidgen predict first_frame.png -o predicted.gif --seed 3
  vidgen predict clip.mp4 -o out.mp4 -o out.gif --class "red circle moving right" --guidance 3
  vidgen predict clip.mp4 -o out.mp4 --steps 24 --model ./runs/magvit/pipeline
""",
    },
    "interpolate": {
        "help": "generate the frames between the first and last frame of a video",
        "description": "Keep the first and the last frame and generate the frames in between (MAGVIT's frame "
                       "interpolation, FI). A clip shorter than the model's has its first and last frames "
                       "placed at the two ends; a longer one is cut to the model's length first.",
        "examples": """examples:
  vidgen interpolate clip.mp4 -o between.mp4
  vidgen interpolate frames_folder/ -o between.gif --seed 2     # a folder holding a first and a last frame
""",
    },
    "outpaint": {
        "help": "keep a region of every frame and generate the rest",
        "description": "Keep a region of every frame and generate the rest (MAGVIT's outpainting): central "
                       "(the centre box is kept), vertical (a vertical central strip), horizontal (a "
                       "horizontal central strip) or dynamic (a half-frame strip moving across the clip; its "
                       "direction follows the seed).",
        "examples": """examples:
  vidgen outpaint clip.mp4 --mode central -o out.mp4
  vidgen outpaint clip.mp4 --mode dynamic -o out.gif --seed 4
  vidgen outpaint short.mp4 --mode vertical --pad -o out.mp4   # repeat the last frame of a short clip
""",
        "modes": ("central", "vertical", "horizontal", "dynamic"),
    },
    "inpaint": {
        "help": "regenerate a region inside every frame",
        "description": "Regenerate a region of every frame and keep the rest (MAGVIT's inpainting): central "
                       "(the centre box) or dynamic (a box moving across the clip; its direction follows the "
                       "seed).",
        "examples": """examples:
  vidgen inpaint clip.mp4 --mode central -o out.mp4
  vidgen inpaint clip.mp4 --mode dynamic -o out.mp4 -o out.gif --steps 16
""",
        "modes": ("central", "dynamic"),
    },
}


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, spec in COMMANDS.items():
        parser = subparsers.add_parser(
            name, help=spec["help"], description=spec["description"] + "\n" + COMMON_NOTES,
            epilog=spec["examples"], formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("video", metavar="VIDEO", help="input video file, image, or folder of frames")
        parser.add_argument("-o", "--output", required=True, action="append",
                            help="output file: .mp4, .gif, .mkv or .png (contact sheet); repeat to write several")
        if "modes" in spec:
            parser.add_argument("--mode", choices=spec["modes"], default=spec["modes"][0],
                                help=f"which region (default: {spec['modes'][0]})")
            parser.add_argument("--pad", action="store_true",
                                help="accept a clip shorter than the model's by repeating its last frame")
        if name == "predict":
            parser.add_argument("--class", dest="class_label", default=None, metavar="CLASS",
                                help="class-conditional prediction: a class name (e.g. \"red circle moving "
                                "left\") or class id; `vidgen info MODEL` lists the classes")
        parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name or local MAGVIT pipeline "
                            f"folder (default: {DEFAULT_MODEL}; see `vidgen models`)")
        parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed reproduces the video")
        parser.add_argument("--steps", type=int, default=None,
                            help="decoding steps (default: the model's, 12 for magvit-shapes)")
        parser.add_argument("--guidance", type=float, default=None,
                            help="classifier-free guidance scale (default: the model's; 1 = no guidance)")
        parser.add_argument("--temperature", type=float, default=None,
                            help="token sampling temperature (default: the model's, 0 for magvit-shapes: the most "
                            "likely token; 1 samples the model's distribution for more varied results)")
        parser.add_argument("--top-p", type=float, default=None,
                            help="nucleus sampling: draw only from the most likely tokens holding this much "
                            "probability (default: the model's; 1 = off; no effect at temperature 0)")
        parser.add_argument("--start", type=float, default=0.0, help="seconds of VIDEO to skip (default: 0)")
        parser.add_argument("--fps", type=float, default=None, help="frames per second of the written file "
                            "(default: the model's)")
        parser.add_argument("--no-keep-condition", action="store_true",
                            help="show the model's own reconstruction of the kept region instead of pasting "
                            "the input's pixels back")
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        parser.set_defaults(func=run, task=name)


def run(args: argparse.Namespace) -> int:
    from vidgen.catalogue import describe_model
    from vidgen.cli.generate import check_outputs, save_outputs
    from vidgen.errors import VideoReadError, VidgenError
    from vidgen.pipelines import load_pipeline

    # Everything cheap is checked before the model loads.
    outputs = check_outputs(args.output, args.fps)
    if args.start < 0:
        raise VidgenError(f"--start {args.start} must be >= 0 seconds")
    if not Path(args.video).exists():
        raise VideoReadError(f"{args.video}: no such file or folder")
    entry = describe_model(args.model)  # reads pipeline.json only: a wrong model is refused before loading
    if args.task not in entry.tasks:
        raise VidgenError(f"model {args.model!r} ({entry.system}) does not {args.task}; its tasks: "
                          f"{', '.join(entry.tasks) or 'none'}. Use a MAGVIT model such as {DEFAULT_MODEL} "
                          "(`vidgen models` lists each model's tasks)")
    pipe = load_pipeline(args.model, device=args.device)
    method = getattr(pipe, args.task, None)
    if not callable(method):
        raise VidgenError(f"model {args.model!r} ({type(pipe).__name__}) cannot {args.task}: use a MAGVIT model "
                          f"such as {DEFAULT_MODEL} (`vidgen models` lists each model's tasks)")
    options = {"seed": args.seed, "num_inference_steps": args.steps, "guidance_scale": args.guidance,
               "temperature": args.temperature, "top_p": args.top_p, "start": args.start,
               "keep_condition": not args.no_keep_condition, "progress": not args.no_progress}
    if args.task in ("outpaint", "inpaint"):
        options.update(mode=args.mode, pad=args.pad)
    if args.task == "predict":
        options["class_label"] = args.class_label
    video = method(args.video, **options)
    info = video.info
    what = f"{info['task']} ({info['mode']}" + (f", class {info['class_name']!r}" if "class_name" in info else "") + ")"
    save_outputs(video, outputs, args.fps, f"{what}, seed {info['seed']}, {info['steps']} steps, "
                 f"guidance {info['guidance_scale']:g}, temperature {info['temperature']:g}, "
                 f"top-p {info['top_p']:g}, {info['seconds']:.2f} s")
    if info.get("frames_note"):
        print(f"note: {info['frames_note']}")
    return 0
