"""`vidgen models` (the catalogue as a table) and `vidgen info NAME_OR_FOLDER` (config and recipe)."""

from __future__ import annotations

import argparse
import json

MODELS_EXAMPLES = """examples:
  vidgen models                          # bundled models
  vidgen models ./runs/my-run/pipeline   # bundled models plus local pipeline folders
  vidgen models --json
"""

INFO_EXAMPLES = """examples:
  vidgen info cogvideox-shapes
  vidgen info ./runs/cogvideox-shapes/pipeline
  vidgen info cogvideox-shapes --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models", help="list the bundled models (name, system, tasks, resolution, parameters, size)",
        description="List the models shipped with vidgen, and any local pipeline folders given, without "
        "loading them: system, tasks, default frames x height x width, parameter count (from the "
        "safetensors headers) and size on disk.",
        epilog=MODELS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    models.add_argument("folders", nargs="*", metavar="FOLDER", help="local pipeline folders to list as well")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=run_models)

    info = subparsers.add_parser(
        "info", help="show a model's configuration and training recipe",
        description="Show a bundled model's (or a local folder's) summary, its pipeline.json, the "
        "config.json of each component, and the training recipe it was made with (when shipped).",
        epilog=INFO_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("model", metavar="NAME_OR_FOLDER", help="a bundled model name (see `vidgen models`) "
                      "or a local pipeline / checkpoint folder")
    info.add_argument("--json", action="store_true", help="print everything as one JSON object")
    info.set_defaults(func=run_info)


def run_models(args: argparse.Namespace) -> int:
    from vidgen import modeling
    from vidgen.catalogue import describe_model, format_table, list_models

    entries = list_models() + [describe_model(folder) for folder in args.folders]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no bundled models found (in {modeling.BUNDLED_DIR}); train one with `vidgen train` and "
              "pass its pipeline folder to --model")
        return 0
    print(format_table(entries))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from vidgen.catalogue import describe_model, find_recipe, format_bytes, format_count, model_config

    entry = describe_model(args.model)
    config = model_config(args.model)
    recipe_path = find_recipe(entry.recipe)
    recipe_text = recipe_path.read_text(encoding="utf-8") if recipe_path else None
    if args.json:
        print(json.dumps({"model": entry.to_dict(), **config, "recipe_file": str(recipe_path) if recipe_path else None,
                          "recipe_text": recipe_text}, indent=2))
        return 0
    rows = [
        ("name", entry.name + (" (bundled)" if entry.bundled else "")),
        ("folder", entry.path),
        ("system", entry.system),
        ("tasks", ", ".join(entry.tasks) or "-"),
        ("default video", f"{entry.resolution} frames x height x width" + (f" at {entry.fps:g} fps" if entry.fps else "")),
    ]
    if entry.frame_step:
        allowed = (f"{entry.frame_step}k+1 frames up to {entry.max_frames}; height/width multiples "
                   f"of {entry.size_step} up to {entry.max_size}")
        rows.append(("allowed", allowed))
    elif entry.fixed_shape:
        allowed = (f"exactly {entry.resolution} frames x height x width (one learned position per token); task "
                   f"commands read that many frames from --start, outpaint/inpaint --pad a shorter clip")
        rows.append(("allowed", allowed))
    rows += [
        ("defaults", f"{entry.default_steps} steps, guidance {entry.default_guidance}"
         + (f" (tasks given a video: {entry.pixel_guidance})" if entry.pixel_guidance is not None else "")
         + (f", autoguidance {entry.default_autoguidance}" if entry.default_autoguidance else "")
         if entry.default_steps is not None else "-"),
    ]
    if entry.samples_tokens:
        sampling = (f"temperature {entry.temperature:g}, top-p {entry.top_p:g} (class- and text-conditioned "
                    f"tokens; --temperature / --top-p override)")
        rows.append(("sampling", sampling))
    rows += [
        ("parameters", f"{format_count(entry.parameters)} ({entry.parameters:,})"),
        ("size on disk", format_bytes(entry.disk_bytes)),
        ("components", ", ".join(entry.components) or "-"),
    ]
    if entry.class_names:
        trained = entry.trained_class_names
        rows.append(("classes", f"{len(trained)} trained: " + ", ".join(trained)))
        if len(trained) < len(entry.class_names):
            held_out = [entry.class_names[i] for i in entry.untrained_classes if i < len(entry.class_names)]
            rows.append(("not trained", f"{len(held_out)} (held out of the training data; use text-to-video "
                         "for these): " + ", ".join(held_out)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    if config["pipeline"] is not None:
        print("\npipeline.json:")
        print(_indent(json.dumps(config["pipeline"], indent=2)))
    for name, component in config["components"].items():
        print(f"\n{name}/config.json:")
        print(_indent(json.dumps(component, indent=2)))
    print()
    if recipe_text is not None:
        print(f"training recipe ({recipe_path}):")
        print(_indent(recipe_text.rstrip()))
    elif entry.recipe:
        print(f"training recipe: {entry.recipe} (not shipped with this vidgen)")
    else:
        print("training recipe: not recorded")
    return 0


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())
