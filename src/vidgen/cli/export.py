"""`vidgen export`: write a training run's checkpoint as a model or pipeline folder, without training."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  vidgen export runs/cogvideox-shapes-transformer-whiten                # the latest checkpoint
  vidgen export runs/cogvideox-shapes-transformer-whiten --step 6000    # -> runs/.../exports/step_00006000
  vidgen eval --model runs/cogvideox-shapes-transformer-whiten/exports/step_00006000/pipeline --sets heldout
  vidgen export runs/cogvideox-shapes-vae --raw --output /tmp/vae-raw   # raw weights instead of the EMA ones
  vidgen export runs/my-transformer --step 6000 --set autoguidance.transformer=runs/small/final \
      --set autoguidance.scale=2 --set sample.guidance=2                # export-time settings

The run folder is the --output of `vidgen train`; its recipe.json and caches are reused (nothing is
re-encoded), so this works while the run is still training. --set may change what a resumed run may
change and what does not touch the weights (e.g. [sample] defaults, [autoguidance], a decoder-only VAE)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a training checkpoint (e.g. step N of a running job) as a model folder",
        description="Write one checkpoint of a `vidgen train` run as that run's final export would "
                    "(model folder, and a pipeline folder for the kinds that make one), without training.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the run folder (the --output of vidgen train)")
    parser.add_argument("--step", type=int, help="the checkpoint's step (default: the latest)")
    parser.add_argument("--output", "-o", help="destination folder (default RUN/exports/step_NNNNNNNN)")
    parser.add_argument("--raw", action="store_true", help="the raw weights, not the EMA ones")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a recipe value for this export only (values a --resume may change)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidgen.training.recipes import export_checkpoint

    folder = export_checkpoint(args.run, step=args.step, output=args.output, raw=args.raw, device=args.device,
                               overrides=args.overrides)
    print(f"exported: {folder}")
    return 0
