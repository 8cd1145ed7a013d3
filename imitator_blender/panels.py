"""The Imitator tab in the 3D View sidebar, in the order a user works: head, then bake."""

from __future__ import annotations

import bpy

from .bake import TAG


class _ImitatorPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Imitator"


class IMITATOR_PT_main(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Imitator"

    def draw(self, context):
        settings = context.scene.imitator
        obj = context.active_object
        col = self.layout.column()
        if obj is not None and obj.type == "MESH":
            col.label(text=f"{obj.name}: {len(obj.data.vertices)} vertices", icon="MESH_DATA")
        else:
            col.label(text="Select or add a head mesh", icon="INFO")
        if settings.last_report:
            col.label(text=settings.last_report)


class IMITATOR_PT_head(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Head"
    bl_parent_id = "IMITATOR_PT_main"

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("imitator.add_default_head", icon="USER")
        col.operator("imitator.add_flame_head", icon="IMPORT")


class IMITATOR_PT_bake(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Bake"
    bl_parent_id = "IMITATOR_PT_main"

    def draw(self, context):
        settings = context.scene.imitator
        obj = context.active_object
        col = self.layout.column()
        col.prop(settings, "start_frame")
        col.prop(settings, "animation_path")
        col.operator("imitator.bake_animation_file", icon="SHAPEKEY_DATA")
        col.operator("imitator.bake_test_motion", icon="PLAY")
        row = col.row()
        row.enabled = obj is not None and TAG in obj
        row.operator("imitator.clear_bake", icon="TRASH")


CLASSES = (IMITATOR_PT_main, IMITATOR_PT_head, IMITATOR_PT_bake)
