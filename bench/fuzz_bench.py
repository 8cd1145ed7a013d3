"""Fuzzing bench: 10,000 generated inputs per restricted unpickler and file reader, memory capped.

    python -m bench fuzz            # or: python -m bench.fuzz_bench [--examples N] [--reader NAME]

Runs tests/fuzz_targets.py (hypothesis; mutations of valid files and inputs from each format's
grammar, memory bombs and code-running pickles among them) in a child process whose address space
is capped (3 GiB), one reader after another. A row per reader: inputs, how many loaded and how many
were refused with a one-line ImitatorError, seconds, the child's peak resident memory, and the
failure if anything else escaped, the cap was hit or the canary ran. Table on stdout, JSON in
bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import report

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=10_000, help="inputs per reader (default 10,000)")
    p.add_argument("--reader", action="append", help="only this reader (repeatable)")
    p.add_argument("--cap-mib", type=int, default=3072, help="address-space cap of the child (MiB)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(ROOT / "tests" / "fuzz_targets.py"), "--examples", str(args.examples),
               "--cap-mib", str(args.cap_mib), "--json", str(out)]
        for r in args.reader or []:
            cmd += ["--reader", r]
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                              stdout=subprocess.DEVNULL)
        rows = json.loads(out.read_text()) if out.exists() else []
    if not rows:
        print(f"fuzzer crashed (exit {proc.returncode}) before reporting", file=sys.stderr)
        return 1
    report("fuzz", rows, {"examples_per_reader": args.examples, "command": "python -m bench fuzz"})
    return 0 if proc.returncode == 0 and not any(r["failure"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
