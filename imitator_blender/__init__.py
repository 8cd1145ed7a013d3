"""The Blender side of Imitator: everything here may import bpy; the model lives in ../core."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import (arkit_bake, bake_operators, dependencies, export_operators, fit_operators, generate_operators, head_operators,
               panels, preferences, properties, style_operators, style_ui)

CLASSES = (
    *preferences.CLASSES,
    *properties.CLASSES,
    *head_operators.CLASSES,
    *fit_operators.CLASSES,
    *arkit_bake.CLASSES,
    *generate_operators.CLASSES,
    *bake_operators.CLASSES,
    *export_operators.CLASSES,
    *panels.CLASSES,
    *style_operators.CLASSES,
    *style_ui.CLASSES,  # after the panels: a style sub-panel may name IMITATOR_PT_main as its parent
)


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
    style_ui.register_properties()
    bpy.app.handlers.load_post.append(_reset_jobs)


def unregister() -> None:
    if _reset_jobs in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_reset_jobs)
    from .warmup import MODELS

    MODELS.clear()
    style_ui.unregister_properties()
    properties.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
