"""`vidgen train`: run a training recipe (a TOML file or the name of a shipped recipe)."""

from __future__ import annotations

import argparse
import sys
import tomllib

EXAMPLES = """\
examples:
  vidgen train --list                                       # shipped recipes
  vidgen train cogvideox-shapes-vae                         # train the Shapes VAE (runs/cogvideox-shapes-vae)
  vidgen train cogvideox-shapes-transformer                 # then the transformer on its latents
  vidgen train cogvideox-shapes-vae --resume                # continue from the latest checkpoint
  vidgen train cogvideox-shapes-vae --resume --steps 4000   # ... and train longer
  vidgen train my_recipe.toml --output runs/try2 --set train.lr=1e-4 --set train.bf16=true
  vidgen train cogvideox-shapes-vae-smoke --output /tmp/smoke --device cpu

Ctrl-C finishes the current step, writes a checkpoint and exits; --resume continues exactly.
--stop-at STEP does the same at a chosen step (train a long run in pieces).
`vidgen export RUN --step N` writes a kept checkpoint as a model (or pipeline) folder, also while the
run trains. See docs/training.md for the recipe format."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a recipe (TOML)",
        description="Train a model as a recipe describes: model size, data, optimiser, EMA, logging, "
                    "samples, checkpoints and the final export all come from one TOML file.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", help="a recipe .toml file or the name of a shipped recipe")
    parser.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    parser.add_argument("--steps", type=int, help="total optimiser steps (overrides train.steps)")
    parser.add_argument("--output", "-o", help="run folder (overrides output.dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in the run folder")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides train.device)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any recipe value, e.g. --set train.lr=1e-4 (repeatable; values are "
                             "read as TOML, e.g. true, 3, [\"a\", \"b\"])")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="pause after this step (checkpoint, no export); --resume continues exactly, with "
                             "the learning-rate schedule of the whole run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.set_defaults(func=run)


def list_recipes() -> int:
    from vidgen.training.recipes import shipped_recipes

    recipes = shipped_recipes()
    if not recipes:
        print("no shipped recipes")
        return 0
    width = max(len(p.stem) for p in recipes)
    for path in recipes:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            table = {}
        kind = table.get("kind", "?")
        description = table.get("description", "")
        print(f"{path.stem:<{width}}  [{kind}]  {description}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return list_recipes()
    if not args.recipe:
        print("vidgen train: error: give a recipe (a .toml file or a shipped name; see --list)", file=sys.stderr)
        return 2
    from vidgen.training.recipes import load_recipe, run_recipe

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.output is not None:
        overrides.append(f"output.dir={_toml_string(args.output)}")
    if args.device is not None:
        overrides.append(f"train.device={_toml_string(args.device)}")
    recipe = load_recipe(args.recipe, overrides)
    print(f"recipe {recipe.name} [{recipe.kind}] -> {recipe.run_dir}"
          + (" (resuming)" if args.resume else ""))
    result = run_recipe(recipe, resume=args.resume, progress=not args.no_progress, stop_at=args.stop_at)
    if result.interrupted and args.stop_at is not None and result.step == args.stop_at:
        print(f"paused at step {result.step} (--stop-at); checkpoint: {result.checkpoint}\n"
              f"continue with: vidgen train {args.recipe} --output {recipe.run_dir} --resume")
        return 0
    if result.interrupted:
        print(f"interrupted at step {result.step}; checkpoint: {result.checkpoint}\n"
              f"continue with: vidgen train {args.recipe} --output {recipe.run_dir} --resume")
        return 130
    print(f"done: {result.step} steps; final model: {result.export_dir}")
    return 0


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
