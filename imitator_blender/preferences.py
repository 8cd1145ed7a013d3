"""Add-on preferences and the extension's user folder (the only place it writes)."""

from pathlib import Path

import bpy

ADDON_ID = __package__.rpartition(".")[0]  # the extension package, e.g. bl_ext.user_default.imitator


def user_dir(*parts: str) -> Path:
    """A folder inside the extension's user folder, created on demand."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path="/".join(parts), create=True))


def prefs(context: bpy.types.Context) -> "ImitatorPreferences":
    return context.preferences.addons[ADDON_ID].preferences


class ImitatorPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    flame_model_path: bpy.props.StringProperty(
        name="FLAME model file",
        description="Your own FLAME model (generic_model.pkl of FLAME 2020, or a FLAME 2023 pkl/npz); "
                    "it is licensed per user and never shipped",
        subtype="FILE_PATH",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "flame_model_path")
        layout.label(text=f"User folder: {user_dir()}", icon="FILE_FOLDER")


CLASSES = (ImitatorPreferences,)
