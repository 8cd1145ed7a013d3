"""Operators that bake animations onto the active mesh, or remove a bake."""

from pathlib import Path

import bpy

from ..core.animation import Animation
from ..core.errors import ImitatorError
from .bake import bake_animation, remove_bake
from .mesh import blender_to_core, key_coords, require_mesh


class _BakeOperator:
    """Bakes what ``animation()`` returns onto the active mesh; errors leave the scene as it was."""

    bl_options = {"REGISTER", "UNDO"}

    def animation(self, context, obj: bpy.types.Object) -> Animation:
        raise NotImplementedError

    def execute(self, context):
        obj = context.active_object
        try:
            require_mesh(obj)
            result = bake_animation(obj, self.animation(context, obj), context.scene,
                                    context.scene.imitator.start_frame)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        text = (f"Baked {result.frames} frames on '{obj.name}' with {result.keys} shape keys "
                f"(frames {result.frame_start}-{result.frame_end})")
        context.scene.imitator.last_report = text
        self.report({"INFO"}, text)
        return {"FINISHED"}


class IMITATOR_OT_bake_animation_file(_BakeOperator, bpy.types.Operator):
    """Bake an animation .npz (vertices, or basis + weights) onto the active mesh as shape keys"""

    bl_idname = "imitator.bake_animation_file"
    bl_label = "Bake Animation File"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})

    def animation(self, context, obj):
        path = Path(bpy.path.abspath(self.filepath or context.scene.imitator.animation_path))
        if not path.is_file():
            raise ImitatorError(f"{path}: animation file not found; choose an .npz animation")
        return Animation.load(path)


class IMITATOR_OT_bake_test_motion(_BakeOperator, bpy.types.Operator):
    """Bake a procedural talking motion (jaw, lips, blinks) on a head with ARKit shape keys"""

    bl_idname = "imitator.bake_test_motion"
    bl_label = "Bake Test Motion"

    seconds: bpy.props.FloatProperty(name="Seconds", default=4.0, min=0.1, max=600.0)
    seed: bpy.props.IntProperty(name="Seed", default=0)

    def animation(self, context, obj):
        from ..core.procedural import SPEECH_KEYS, speech_like_animation

        key = obj.data.shape_keys
        if key is None:
            raise ImitatorError(f"'{obj.name}' has no shape keys; add the default head, which has "
                                "the ARKit keys this motion drives")
        rest = blender_to_core(key_coords(key.reference_key))
        offsets = {n: blender_to_core(key_coords(key.key_blocks[n])) - rest
                   for n in SPEECH_KEYS if n in key.key_blocks}
        return speech_like_animation(rest, offsets, self.seconds, 30.0, self.seed)


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
