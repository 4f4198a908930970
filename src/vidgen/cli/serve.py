"""`vidgen serve`: the web app (gradio) on http://127.0.0.1:7860."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  vidgen serve                                        # bundled models on http://127.0.0.1:7860
  vidgen serve --model ./runs/cogvideox-shapes/pipeline --port 8080
  vidgen serve --max-frames 17 --max-size 64 --max-steps 30   # a small public demo
  vidgen serve --host 0.0.0.0                         # reachable from other machines: mind the limits

Needs the web extra: pip install "vidgen[web]".
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="start the web app (text to video, video tasks) in the browser",
        description="Serve a web page to generate videos from text and run video tasks on uploads. "
        "Offers the bundled models plus the local folders given with --model; models load on first use. "
        "One job runs at a time; requests above the limits are refused with a message.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                        "only; 0.0.0.0 exposes the app to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME_OR_FOLDER",
                        help="a bundled model name or local pipeline folder to offer (repeatable; listed first)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--max-frames", type=int, default=49, help="most frames per video (default: 49)")
    parser.add_argument("--max-size", type=int, default=256, help="largest height/width in pixels (default: 256)")
    parser.add_argument("--max-steps", type=int, default=100, help="most denoising steps (default: 100)")
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload in MB (default: 50)")
    parser.add_argument("--max-upload-seconds", type=float, default=60.0,
                        help="longest uploaded video in seconds (default: 60)")
    parser.add_argument("--queue-size", type=int, default=16, help="requests that may wait (default: 16)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidgen.catalogue import list_models
    from vidgen.errors import VidgenError
    from vidgen.web.limits import Limits

    if not 0 < args.port < 65536:
        raise VidgenError(f"--port {args.port} must be in 1..65535")
    limits = Limits(max_frames=args.max_frames, max_size=args.max_size, max_steps=args.max_steps,
                    max_upload_mb=args.max_upload_mb, max_upload_seconds=args.max_upload_seconds,
                    queue_size=args.queue_size)
    # Folders given with --model must be valid (an error names the problem); a bundled model that cannot be
    # read (e.g. one being exported) is left out, as `vidgen models` does.
    models = list(dict.fromkeys([*args.model, *(entry.name for entry in list_models())]))
    if not models:
        raise VidgenError("no model to serve: no bundled model is installed; pass a pipeline folder with "
                          "--model (e.g. the `pipeline` folder a `vidgen train` run exports)")
    try:
        from vidgen.web.app import build_app, launch
    except ImportError as error:
        raise VidgenError(f"the web app needs gradio ({error}); install it with: pip install \"vidgen[web]\"") from None
    demo = build_app(models, limits, device=args.device)
    print(f"vidgen web app: http://{args.host}:{args.port}  (models: {', '.join(demo.vidgen.models)}; "
          "Ctrl+C stops it)", flush=True)
    launch(demo, host=args.host, port=args.port, limits=limits, quiet=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m vidgen.cli.serve ...`: the same command without the other sub-commands."""
    from vidgen.cli.main import main as vidgen_main

    return vidgen_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
