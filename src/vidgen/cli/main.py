"""Entry point of the `vidgen` console script.

Each sub-command lives in its own module under `vidgen.cli` and exposes `register(subparsers)`,
which adds an argparse sub-parser and sets `func` (a callable taking the parsed args and returning
an exit code). Adding a command means adding its module name to `COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vidgen import __version__
from vidgen.errors import VidgenError

# Order here is the order shown by `vidgen --help`.
COMMAND_MODULES = [
    "vidgen.cli.generate",
    "vidgen.cli.tasks",
    "vidgen.cli.evaluate",
    "vidgen.cli.data",
    "vidgen.cli.train",
    "vidgen.cli.export",
    "vidgen.cli.models",
    "vidgen.cli.serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidgen",
        description="vidgen: readable, trainable video generation (MAGVIT, VideoPoet, Make-A-Video, "
        "Video LDM, CogVideoX) on CPU or GPU.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `vidgen COMMAND --help` for the options and examples of each command.",
    )
    parser.add_argument("--version", action="version", version=f"vidgen {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (VidgenError, ValueError, FileNotFoundError, KeyError) as error:
        # Bad input from the user: one clear line naming the value, not a traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"vidgen {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
