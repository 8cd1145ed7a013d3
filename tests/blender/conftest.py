"""Inside one Blender case process: install the built extension zip, hand out its modules."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.blender_session import install_extension  # noqa: E402


@pytest.fixture(scope="session")
def ext() -> SimpleNamespace:
    """The installed add-on: its package name and its modules (core and imitator_blender)."""
    zip_path = Path(os.environ["IMITATOR_ZIP"])
    module = install_extension(zip_path)

    def mod(name: str):
        return importlib.import_module(f"{module}.{name}")

    return SimpleNamespace(module=module, mod=mod, zip=zip_path)


@pytest.fixture()
def tmp_dir() -> Path:
    return Path(os.environ["IMITATOR_TMP"])
