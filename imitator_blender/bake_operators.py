"""Operators that bake animations onto the active mesh, or remove a bake."""

from pathlib import Path

import bpy

from ..core.animation import Animation
from ..core.errors import ImitatorError
from .bake import bake_animation, remove_bake
from .mesh import blender_to_core, key_coords, require_mesh


def _report_bake(op: bpy.types.Operator, context, obj, result) -> None:
    text = (f"Baked {result.frames} frames on '{obj.name}' with {result.keys} shape keys "
            f"(frames {result.frame_start}-{result.frame_end})")
    context.scene.imitator.last_report = text
    op.report({"INFO"}, text)


class IMITATOR_OT_bake_animation_file(bpy.types.Operator):
    """Bake an animation .npz (vertices, or basis + weights) onto the active mesh as shape keys"""

    bl_idname = "imitator.bake_animation_file"
    bl_label = "Bake Animation File"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})

    def execute(self, context):
        settings = context.scene.imitator
        obj = context.active_object
        path = Path(bpy.path.abspath(self.filepath or settings.animation_path))
        try:
            if not path.is_file():
                raise ImitatorError(f"{path}: animation file not found; choose an .npz animation")
            anim = Animation.load(path)
            result = bake_animation(obj, anim, context.scene, settings.start_frame)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        _report_bake(self, context, obj, result)
        return {"FINISHED"}


class IMITATOR_OT_bake_test_motion(bpy.types.Operator):
    """Bake a procedural talking motion (jaw, lips, blinks) on a head with ARKit shape keys"""

    bl_idname = "imitator.bake_test_motion"
    bl_label = "Bake Test Motion"
    bl_options = {"REGISTER", "UNDO"}

    seconds: bpy.props.FloatProperty(name="Seconds", default=4.0, min=0.1, max=600.0)
    seed: bpy.props.IntProperty(name="Seed", default=0)

    def execute(self, context):
        from ..core.procedural import SPEECH_KEYS, speech_like_animation

        obj = context.active_object
        try:
            require_mesh(obj)
            key = obj.data.shape_keys
            blocks = key.key_blocks if key else {}
            rest = blender_to_core(key_coords(key.reference_key)) if key else None
            offsets = {n: blender_to_core(key_coords(blocks[n])) - rest for n in SPEECH_KEYS if n in blocks}
            if rest is None:
                raise ImitatorError(f"'{obj.name}' has no shape keys; add the default head, which has "
                                    "the ARKit keys this motion drives")
            anim = speech_like_animation(rest, offsets, self.seconds, 30.0, self.seed)
            result = bake_animation(obj, anim, context.scene, context.scene.imitator.start_frame)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        _report_bake(self, context, obj, result)
        return {"FINISHED"}


class IMITATOR_OT_clear_bake(bpy.types.Operator):
    """Remove the shape keys and keyframes of the last Imitator bake from the active mesh"""

    bl_idname = "imitator.clear_bake"
    bl_label = "Clear Bake"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = context.active_object
        if obj is None or not remove_bake(obj):
            self.report({"WARNING"}, "Nothing to clear: the active object has no Imitator bake")
            return {"CANCELLED"}
        context.scene.imitator.last_report = f"Cleared the bake on '{obj.name}'"
        return {"FINISHED"}


CLASSES = (IMITATOR_OT_bake_animation_file, IMITATOR_OT_bake_test_motion, IMITATOR_OT_clear_bake)
