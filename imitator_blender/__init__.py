"""The Blender side of Imitator: everything here may import bpy; the model lives in ../core."""

from __future__ import annotations

import bpy

from . import bake_operators, head_operators, panels, preferences, properties

CLASSES = (
    *preferences.CLASSES,
    *properties.CLASSES,
    *head_operators.CLASSES,
    *bake_operators.CLASSES,
    *panels.CLASSES,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()


def unregister() -> None:
    properties.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
