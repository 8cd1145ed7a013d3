"""The Blender side of Imitator: everything here may import bpy; the model lives in ../core."""

from __future__ import annotations

import importlib
import importlib.util

import bpy
from bpy.app.handlers import persistent

from . import (bake_operators, dependencies, export_operators, generate_operators, head_operators, panels,
               preferences, properties)

# Modules of the style list (issue 6): registered when present. Each may define CLASSES and
# register_properties() / unregister_properties().
OPTIONAL_MODULES = ("style_operators", "style_ui")


def _optional_modules() -> list:
    return [importlib.import_module(f"{__package__}.{name}") for name in OPTIONAL_MODULES
            if importlib.util.find_spec(f"{__package__}.{name}") is not None]


def _classes() -> tuple:
    optional = tuple(c for m in _optional_modules() for c in getattr(m, "CLASSES", ()))
    return (
        *preferences.CLASSES,
        *properties.CLASSES,
        *head_operators.CLASSES,
        *generate_operators.CLASSES,
        *bake_operators.CLASSES,
        *export_operators.CLASSES,
        *panels.CLASSES,
        *optional,  # after the panels: a style sub-panel may name IMITATOR_PT_main as its parent
    )


CLASSES = _classes()


@persistent
def _reset_jobs(_scene=None, _depsgraph=None) -> None:
    """A loaded file starts with no job running (a job never survives its session)."""
    for wm in bpy.data.window_managers:
        properties.reset_job_state(wm)


def register() -> None:
    dependencies.activate(preferences.user_dir("deps"))  # installed packages onto sys.path
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()
    for module in _optional_modules():
        if hasattr(module, "register_properties"):
            module.register_properties()
    bpy.app.handlers.load_post.append(_reset_jobs)


def unregister() -> None:
    if _reset_jobs in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_reset_jobs)
    for module in reversed(_optional_modules()):
        if hasattr(module, "unregister_properties"):
            module.unregister_properties()
    properties.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
