"""The Imitator tab in the 3D View sidebar, in the order a user works:
Head, Audio, Style, Generate, Bake options, Export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import bpy

from ..core.errors import ImitatorError
from . import dependencies
from .bake import TAG
from .generate_job import read_model_config
from .mesh import mesh_topology
from .generate_operators import generate_busy
from .preferences import DEFAULT_MODEL, SAMPLE_AUDIO, model_info


class _ImitatorPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Imitator"


class IMITATOR_PT_main(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Imitator"

    def draw(self, context):
        from .warmup import warm_up_once

        warm_up_once(context)  # the first click then costs what the second does
        settings = context.scene.imitator
        obj = context.active_object
        col = self.layout.column()
        if obj is not None and obj.type == "MESH":
            col.label(text=f"{obj.name}: {len(obj.data.vertices)} vertices", icon="MESH_DATA")
        elif obj is not None:
            col.label(text=f"'{obj.name}' is not a mesh; select a head", icon="ERROR")
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
        obj = context.active_object
        if obj is not None and obj.type == "MESH":
            text, icon = head_model_match(context, obj)
            self.layout.label(text=text, icon=icon)
            state = context.window_manager.imitator_jobs
            col = self.layout.column(align=True)
            if state.fit_running:
                col.progress(factor=state.fit_progress, type="BAR", text=state.fit_status[:60] or "fitting")
                col.label(text="Esc cancels")
            else:
                col.operator("imitator.fit_head", icon="MOD_SHRINKWRAP")
                row = col.row(align=True)
                row.operator("imitator.show_landmarks", icon="EMPTY_AXIS")
                row.operator("imitator.clear_landmarks", icon="X", text="")
                if state.fit_status:
                    col.label(text=state.fit_status[:80])


class IMITATOR_PT_audio(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Audio"
    bl_parent_id = "IMITATOR_PT_main"

    def draw(self, context):
        settings = context.scene.imitator
        col = self.layout.column()
        col.prop(settings, "audio_path")
        col.prop(settings, "dialog_text")
        if SAMPLE_AUDIO.is_file():
            col.operator("imitator.use_sample_audio", icon="SPEAKER")
        col.prop(settings, "start_frame")
        col.prop(settings, "fps_mode")


class IMITATOR_PT_style(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Style"
    bl_parent_id = "IMITATOR_PT_main"

    def draw(self, context):
        if importlib.util.find_spec(f"{__package__}.style_ui") is None:
            self.layout.label(text="The model's mean style", icon="INFO")
            return
        from .style_ui import draw_style_section

        draw_style_section(self.layout, context)


class IMITATOR_PT_generate(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Generate"
    bl_parent_id = "IMITATOR_PT_main"

    def draw(self, context):
        settings = context.scene.imitator
        state = context.window_manager.imitator_jobs
        layout = self.layout
        row = layout.row(align=True)
        row.prop(settings, "model_folder")
        row.operator("imitator.use_model_folder", text="", icon="LOOP_BACK").index = -1
        missing = dependencies.missing_modules()
        if missing:
            box = layout.box()
            box.label(text=f"Missing: {', '.join(missing)}", icon="ERROR")
            box.operator("imitator.install_dependencies", icon="IMPORT")
            if state.install_running:
                box.progress(factor=state.install_progress, type="BAR", text=state.install_status[:60])
            return
        if generate_busy(context):
            layout.progress(factor=state.generate_progress, type="BAR", text=state.generate_status[:60])
            layout.operator("imitator.cancel_generate", icon="CANCEL")
            return
        layout.scale_y = 1.4
        layout.operator("imitator.generate", icon="PLAY")
        layout.scale_y = 1.0
        if state.generate_status:
            layout.label(text=state.generate_status)


class IMITATOR_PT_bake_options(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Bake options"
    bl_parent_id = "IMITATOR_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        from .warmup import warm_up_once

        warm_up_once(context)  # the first click then costs what the second does
        settings = context.scene.imitator
        obj = context.active_object
        col = self.layout.column()
        col.prop(settings, "bake_mode", expand=True)
        col.prop(settings, "lip_closure")
        if settings.bake_mode == "ARKIT" and settings.fit_error_mm >= 0:
            col.label(text=f"Last ARKit fit error: {settings.fit_error_mm:.2f} mm (largest vertex)")
        if settings.bake_mode == "ARKIT" and obj is not None and obj.type == "MESH":
            _draw_arkit_mapping(col.box(), context, obj)
        col.separator()
        col.prop(settings, "animation_path")
        col.operator("imitator.bake_animation_file", icon="SHAPEKEY_DATA")
        col.operator("imitator.bake_test_motion", icon="PLAY")
        row = col.row()
        row.enabled = obj is not None and TAG in obj
        row.operator("imitator.clear_bake", icon="TRASH")


class IMITATOR_PT_export(_ImitatorPanel, bpy.types.Panel):
    bl_label = "Export"
    bl_parent_id = "IMITATOR_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        obj = context.active_object
        col = self.layout.column(align=True)
        col.enabled = obj is not None and TAG in obj
        col.operator("imitator.export_npz", icon="EXPORT")
        col.operator("imitator.export_obj_sequence", icon="EXPORT")
        col.operator("imitator.export_arkit_csv", icon="EXPORT")


class IMITATOR_OT_use_sample_audio(bpy.types.Operator):
    """Use the short speech sample shipped with the extension"""

    bl_idname = "imitator.use_sample_audio"
    bl_label = "Use Sample Audio"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.imitator.audio_path = str(SAMPLE_AUDIO)
        return {"FINISHED"}


def _draw_arkit_mapping(box, context, obj) -> None:
    """The rig's ARKit mapping: preset, matched count, the rows (editable), keys not driven."""
    from .arkit_bake import arkit_mapping

    box.prop(context.scene.imitator, "arkit_preset")
    found, missing = arkit_mapping(obj, context.scene.imitator.arkit_preset)
    box.label(text=f"{len(found)} of 52 ARKit shapes drive keys of '{obj.name}'",
              icon="CHECKMARK" if found else "ERROR")
    if missing:
        box.label(text=f"Not driven: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    box.operator("imitator.match_arkit_names", icon="SORTALPHA")
    key = obj.data.shape_keys
    if key is not None and len(obj.imitator_arkit_map):
        col = box.column(align=True)
        for row in obj.imitator_arkit_map:
            col.prop_search(row, "key", key, "key_blocks", text=row.arkit)


def head_model_match(context, obj) -> tuple[str, str]:
    """Whether the selected mesh has the model's topology (vertex count and polygons)."""
    folder = _model_folder(context)
    try:
        config = read_model_config(folder, shipped=not context.scene.imitator.model_folder.strip())
    except ImitatorError:
        if not context.scene.imitator.model_folder.strip():
            return "No shipped model in this build: choose a model folder (Generate)", "ERROR"
        return f"Model: {model_info(folder)}", "ERROR"
    V, model_V = len(obj.data.vertices), config.get("num_vertices", "?")
    topology = config.get("topology") or ""
    mine = mesh_topology(obj.data)
    if V != model_V or (topology and topology != mine):
        from ..core.faces.default_head import EXPECTED_TOPOLOGY
        from ..core.faces.head import fit_path_for
        from .preferences import user_dir

        if topology != EXPECTED_TOPOLOGY or V < 100:
            return f"'{obj.name}' does not fit the model ({V} vs {model_V} vertices or other polygons)", "ERROR"
        if fit_path_for(user_dir(), mine).is_file():
            return f"'{obj.name}' has a head fit: Generate transfers the motion onto it", "CHECKMARK"
        return f"'{obj.name}' is another head: Generate fits it first (or press Fit Head)", "INFO"
    return f"'{obj.name}' fits the model '{folder.name}'", "CHECKMARK"


def _model_folder(context) -> Path:
    raw = context.scene.imitator.model_folder
    return Path(bpy.path.abspath(raw)) if raw.strip() else DEFAULT_MODEL


CLASSES = (IMITATOR_OT_use_sample_audio, IMITATOR_PT_main, IMITATOR_PT_head, IMITATOR_PT_audio,
           IMITATOR_PT_style, IMITATOR_PT_generate, IMITATOR_PT_bake_options, IMITATOR_PT_export)
