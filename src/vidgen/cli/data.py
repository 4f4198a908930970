"""`vidgen data`: list the datasets and preview their items as video files."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidgen.errors import VidgenError

EXAMPLES = """examples:
  vidgen data list
  vidgen data preview shapes -o shapes.gif
  vidgen data preview shapes -o clip.mp4 --index 7 --split heldout      # mp4 carries the colour tones
  vidgen data preview digits -o digits.png --num-frames 9 --size 48     # .png: a contact sheet
  vidgen data preview folder --root my_clips -o first.mp4
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list datasets and preview their items",
        description="Inspect the built-in datasets (shapes, digits) and your own folder datasets.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    lister = actions.add_parser("list", help="list the available datasets", description="List the datasets.")
    lister.set_defaults(func=_list)

    preview = actions.add_parser(
        "preview",
        help="write one item as .mp4, .gif, .mkv or a .png contact sheet",
        description="Write one dataset item to a file (format from the extension) and print its caption.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    preview.add_argument("name", help="dataset: shapes, digits or folder")
    preview.add_argument("-o", "--output", required=True, help="output file: .mp4, .gif, .mkv or .png")
    preview.add_argument("--index", type=int, default=0, help="item index (default 0)")
    preview.add_argument("--split", help="shapes: train/heldout/all; digits: train/test (default train)")
    preview.add_argument("--num-frames", type=int, default=17, help="frames per clip (default 17)")
    preview.add_argument("--size", type=int, default=64, help="frame size in pixels (default 64)")
    preview.add_argument("--fps", type=float, default=8, help="frames per second (default 8)")
    preview.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    preview.add_argument("--root", help="folder dataset: directory with metadata.jsonl or metadata.csv")
    preview.set_defaults(func=_preview)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _list(args: argparse.Namespace) -> int:
    from vidgen.data import DESCRIPTIONS

    for name, text in DESCRIPTIONS.items():
        print(f"{name:8s} {text}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from vidgen.data import DATASETS, get_dataset
    from vidgen.io import tensor_to_frames, write_video

    if args.name not in DATASETS:
        raise VidgenError(f"unknown dataset {args.name!r}; available: {', '.join(DATASETS)}")
    common = {"num_frames": args.num_frames, "size": args.size, "fps": args.fps}
    if args.name == "folder":
        if not args.root:
            raise VidgenError(
                "the folder dataset needs --root DIR (a directory with metadata.jsonl or metadata.csv)"
            )
        if args.split:
            raise VidgenError("the folder dataset has no splits; drop --split")
        dataset = get_dataset("folder", root=args.root, **common)
    else:
        if args.root:
            raise VidgenError(f"--root is only for the folder dataset, not {args.name!r}")
        options = {"seed": args.seed, "num_items": max(args.index + 1, 1), **common}
        if args.split:
            options["split"] = args.split
        dataset = get_dataset(args.name, **options)
    if not 0 <= args.index < len(dataset):
        raise VidgenError(f"--index must be in 0..{len(dataset) - 1}; got {args.index}")

    item = dataset[args.index]
    frames = tensor_to_frames(item["video"])
    output = Path(args.output)
    audio = item.get("audio") if output.suffix.lower() in (".mp4", ".mkv") else None
    write_video(output, frames, fps=args.fps, audio=audio, sample_rate=item.get("sample_rate"))
    print(f"caption: {item['caption']}")
    if "canonical_caption" in item and item["canonical_caption"] != item["caption"]:
        print(f"canonical: {item['canonical_caption']}")
    print(f"class_id: {item['class_id']}")
    print(f"wrote {output} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]})")
    return 0
