"""Headless Blender (PyPI bpy) with the built extension installed, the way a user gets it.

Call ``isolate_home`` before the first ``import bpy``: Blender reads its config folder at import.
"""

from __future__ import annotations

import os
from pathlib import Path

EXTENSION_ID = "imitator"
REPO = "user_default"
MODULE = f"bl_ext.{REPO}.{EXTENSION_ID}"


def isolate_home(home: Path) -> None:
    """Point Blender's user config (and so the extension's user folder) at ``home``."""
    if "bpy" in __import__("sys").modules:
        raise RuntimeError("isolate_home must run before bpy is imported")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)


def install_extension(zip_path: Path) -> str:
    """Install and enable the built zip in the user repository; returns the add-on module name."""
    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo=REPO, enable_on_install=True)
    if result != {"FINISHED"} or MODULE not in bpy.context.preferences.addons:
        raise RuntimeError(f"installing {zip_path} failed: {result}")
    return MODULE


def uninstall_extension() -> None:
    import bpy

    repos = bpy.context.preferences.extensions.repos
    index = next(i for i, r in enumerate(repos) if r.module == REPO)
    result = bpy.ops.extensions.package_uninstall(repo_index=index, pkg_id=EXTENSION_ID)
    if result != {"FINISHED"}:
        raise RuntimeError(f"uninstalling {EXTENSION_ID} failed: {result}")
