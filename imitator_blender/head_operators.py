"""Operators that add heads: the built-in default head and a FLAME head from the user's file."""

from pathlib import Path

import bpy

from ..core.errors import ImitatorError
from .mesh import create_head_object
from .preferences import prefs, user_dir


class IMITATOR_OT_add_default_head(bpy.types.Operator):
    """Add the built-in head (CC0 MakeHuman mesh) with its 52 ARKit shape keys at the 3D cursor"""

    bl_idname = "imitator.add_default_head"
    bl_label = "Add Default Head"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from ..core.faces.default_head import load_default_head

        try:
            head = load_default_head(user_dir("cache"))
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        obj = create_head_object(head, context, name="Imitator Head")
        self.report({"INFO"}, f"Added '{obj.name}': {head.num_vertices} vertices, "
                              f"{len(head.shape_keys)} ARKit shape keys")
        return {"FINISHED"}


class IMITATOR_OT_add_flame_head(bpy.types.Operator):
    """Add a FLAME head (5023 vertices) built from the FLAME model file set in the preferences"""

    bl_idname = "imitator.add_flame_head"
    bl_label = "Add FLAME Head"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(
        name="FLAME file", subtype="FILE_PATH", options={"SKIP_SAVE"},
        description="Overrides the FLAME model file of the preferences",
    )

    def execute(self, context):
        from ..core.faces.flame import load_flame

        raw = self.filepath or prefs(context).flame_model_path
        if not raw:
            self.report({"ERROR"}, "No FLAME model file set; choose your generic_model.pkl in "
                                   "Preferences > Add-ons > Imitator")
            return {"CANCELLED"}
        path = Path(bpy.path.abspath(raw))
        try:
            head = load_flame(path).head(name="FLAME Head")
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        obj = create_head_object(head, context, name="FLAME Head")
        self.report({"INFO"}, f"Added '{obj.name}' from {path.name}: {head.num_vertices} vertices")
        return {"FINISHED"}


CLASSES = (IMITATOR_OT_add_default_head, IMITATOR_OT_add_flame_head)
