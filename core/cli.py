"""Command line: python -m core <command> ... Each feature module adds its own subcommand.

Errors the user can act on (ImitatorError) print as one line without a traceback; --debug shows it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import ImitatorError

# Modules that define ``add_commands(subparsers)``; each subcommand sets ``func(args) -> int``.
COMMAND_MODULES: list[str] = [".data.commands", ".bilabial", ".train", ".metrics", ".generate_cli", ".adapt",
                              ".model.convert",
                              ".model.closure",
                              ".faces.fit_cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name, __package__).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except ImitatorError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
