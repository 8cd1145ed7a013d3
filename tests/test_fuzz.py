"""Fuzzing of every restricted unpickler and file reader (see tests/fuzz_targets.py): only
ImitatorError may escape, a memory bomb fails the run (address space capped) and the canary global
is never called. The default run feeds each reader a few dozen generated inputs; the slow run
(``pytest -m slow tests/test_fuzz.py``) 10,000 per reader, as ``python -m bench fuzz`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
READERS = ("flame-pkl", "flame-masks-pkl", "flame-npz", "official-ckpt", "templates-pkl", "imstyle",
           "npz-clip", "obj", "ply", "livelink-csv", "wav")


def run_fuzzer(tmp_path: Path, examples: int, *readers: str) -> list[dict]:
    out = tmp_path / "fuzz.json"
    cmd = [sys.executable, str(HERE / "fuzz_targets.py"), "--examples", str(examples), "--json", str(out)]
    for r in readers:
        cmd += ["--reader", r]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    rows = json.loads(out.read_text()) if out.exists() else []
    failed = [r for r in rows if r["failure"]]
    assert proc.returncode == 0 and not failed, (failed, proc.stdout[-3000:], proc.stderr[-3000:])
    return rows


def test_every_reader_survives_generated_inputs(tmp_path):
    rows = run_fuzzer(tmp_path, 40)
    assert [r["reader"] for r in rows] == list(READERS)
    assert all(r["inputs"] == 40 for r in rows), rows
    # the generators reach both sides: inputs that load and inputs that are refused
    assert sum(r["loaded"] for r in rows) > 0 and all(r["refused"] > 0 for r in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS)
def test_ten_thousand_inputs_per_reader(tmp_path, reader):
    (row,) = run_fuzzer(tmp_path, 10_000, reader)
    assert row["inputs"] == 10_000, row
