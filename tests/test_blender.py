"""Runs every Blender case (tests/blender/bl_*.py) in its own process: bpy keeps global state.

Each case gets a fresh HOME (so a fresh Blender config and extension user folder) and the built
extension zip through IMITATOR_ZIP; tests/blender/conftest.py installs it the way a user would.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES_DIR = Path(__file__).parent / "blender"
ROOT = CASES_DIR.parents[1]
# Each case runs on the main target (bpy 5.0, this interpreter) and on the 4.2 LTS (legacy actions).
BLENDERS = {"5.0": Path(sys.executable), "4.2": ROOT / ".venv-blender-lts" / "bin" / "python"}


def _cases() -> list[str]:
    found = []
    for path in sorted(CASES_DIR.glob("bl_*.py")):
        tree = ast.parse(path.read_text())
        found += [f"{path.name}::{node.name}" for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return found


@pytest.mark.parametrize("blender", list(BLENDERS))
@pytest.mark.parametrize("case", _cases())
def test_in_blender(case: str, blender: str, extension_zip: Path, tmp_path: Path) -> None:
    python = BLENDERS[blender]
    if not python.exists():
        pytest.fail(f"{python} is missing; run ./dev setup (it makes the Blender {blender} environment)")
    env = dict(os.environ, HOME=str(tmp_path / "home"), IMITATOR_ZIP=str(extension_zip),
               IMITATOR_TMP=str(tmp_path))
    (tmp_path / "home").mkdir()
    cmd = [str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "-o", "python_files=bl_*.py", "--rootdir", str(CASES_DIR), str(CASES_DIR / case)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"Blender {blender} case {case} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}",
                    pytrace=False)
