"""Command line: python -m core <command> ... Each feature module adds its own subcommand.

Errors the user can act on (ImitatorError) print as one line without a traceback; --debug shows it.
Before any command runs, ``check_args`` validates the options every command shares (frame rates,
threads, finite numbers) and ``check_outputs`` every output the command declares with
``set_defaults(outputs=...)``, so a refusal comes before any work and before any file is written.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
from pathlib import Path

from .errors import ImitatorError

# Modules that define ``add_commands(subparsers)``; each subcommand sets ``func(args) -> int``.
COMMAND_MODULES: list[str] = [".data.commands", ".bilabial", ".train", ".evaluate.metrics", ".generate_cli", ".style.adapt",
                              ".model.convert",
                              ".train.closure_fit",
                              ".faces.fit_cli"]


FPS_RANGE = (1.0, 240.0)  # frame rates a command accepts (output or clip)
MAX_THREADS = 1024


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for shared options: ``--fps`` in FPS_RANGE, ``--threads`` >= 1, and no
    NaN or infinite number in any option."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ImitatorError(f"{_option(name)} {value}: give a finite number")
    fps = getattr(args, "fps", None)
    if fps is not None and not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise ImitatorError(f"{_option('fps')} {fps:g}: give a frame rate between "
                            f"{FPS_RANGE[0]:g} and {FPS_RANGE[1]:g} (e.g. 24, 25, 30 or 60)")
    threads = getattr(args, "threads", None)
    if threads is not None and not 1 <= threads <= MAX_THREADS:  # leave it out for torch's default
        raise ImitatorError(f"{_option('threads')} {threads}: give 1 or more threads, at most "
                            f"{MAX_THREADS} (this machine has {os.cpu_count()} cores)")


def check_output(path: Path, option: str, kind: str, overwrite: bool) -> None:
    """One output of a command, before any work: ``kind`` is "file", "file:.SUFFIX", "folder"
    (a folder the command fills) or "sequence" (an OBJ sequence folder, see ``save_obj_sequence``)."""
    kind, _, suffix = kind.partition(":")
    where = f"{option} {path}"
    if kind == "file":
        if suffix and path.suffix.lower() != suffix:
            raise ImitatorError(f"{where}: this file must end in {suffix}; e.g. "
                                f"{option} {path.with_suffix(suffix)}")
        if path.is_dir():
            raise ImitatorError(f"{where}: is a folder; give a file name, e.g. {option} "
                                f"{path / ('out' + (suffix or '.npz'))}")
        if path.exists() and not overwrite:
            raise ImitatorError(f"{where}: already exists; choose another name or pass --overwrite")
    elif path.exists() and not path.is_dir():
        raise ImitatorError(f"{where}: is a file, not a folder; give a new folder name")
    elif kind == "sequence":
        from .data.clips import check_sequence_folder

        check_sequence_folder(path, overwrite=overwrite, option=option)
    elif path.exists() and any(path.iterdir()) and not overwrite:
        raise ImitatorError(f"{where}: already exists and is not empty; choose a new folder or "
                            f"pass --overwrite")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ImitatorError(f"{where}: {parent} is a file, not a folder; choose another place")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImitatorError(f"{where}: {parent} is not writable; choose a folder you can write to")


def check_outputs(args: argparse.Namespace) -> None:
    """Every output the command declared (``outputs={"out": "file:.npz", ...}``): each checked
    by ``check_output``, none the same path as another output or as an input."""
    outputs = {name: kind for name, kind in (getattr(args, "outputs", None) or {}).items()
               if getattr(args, name, None) is not None}
    overwrite = bool(getattr(args, "overwrite", False))
    seen: dict[object, str] = {}
    for name, kind in outputs.items():
        path = Path(getattr(args, name))
        check_output(path, _option(name), kind, overwrite)
        if _identity(path) in seen:
            raise ImitatorError(f"{_option(name)} {path}: same path as {seen[_identity(path)]}; "
                                f"give each output its own name")
        seen[_identity(path)] = _option(name)
    for name, value in vars(args).items():
        if name not in outputs and isinstance(value, Path) and _identity(value) in seen:
            raise ImitatorError(f"{seen[_identity(value)]} {value}: is also the {_option(name)} "
                                f"input; write the output elsewhere")


def _identity(path: Path) -> object:
    """The file a path names: (device, inode) when it exists (links, other spellings), else the
    absolute path."""
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino)
    except OSError:
        return path.resolve()


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
        check_args(args)
        check_outputs(args)
        return int(args.func(args) or 0)
    except ImitatorError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
