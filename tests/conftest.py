"""Shared fixtures. Core tests import core directly; Blender tests run in fresh processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    """The extension built by build.py, once per test session."""
    sys.path.insert(0, str(ROOT))
    import build

    return build.build(tmp_path_factory.mktemp("dist"))
