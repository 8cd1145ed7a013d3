"""Export the active head's bake: npz (exact animation), OBJ sequence (+ audio), ARKit CSV.

All three read the bake back from the scene (``readback``), so they export what Blender plays,
also after the file was saved and reopened. Files are in core coordinates (metres, +Y up), the same
as the command line writes; every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
from bpy_extras.io_utils import ExportHelper

from ..core.errors import ImitatorError
from .generate_job import GENERATE_TAG
from .readback import animation_from_bake, arkit_weights_from_bake, head_from_object


class _ExportOperator:
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return context.active_object is not None

    def export(self, context, obj, path: Path) -> str:
        raise NotImplementedError

    def execute(self, context):
        obj = context.active_object
        path = Path(bpy.path.abspath(self.filepath))
        try:
            text = self.export(context, obj, path)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        except OSError as e:
            self.report({"ERROR"}, f"{path}: cannot write ({e.strerror or e}); choose another place")
            return {"CANCELLED"}
        context.scene.imitator.last_report = text
        self.report({"INFO"}, text)
        return {"FINISHED"}


class IMITATOR_OT_export_npz(_ExportOperator, ExportHelper, bpy.types.Operator):
    """Export the bake as an animation .npz (basis + weights, exact; reads back with Bake Animation File)"""

    bl_idname = "imitator.export_npz"
    bl_label = "Export Animation (.npz)"
    filename_ext = ".npz"
    filter_glob: bpy.props.StringProperty(default="*.npz", options={"HIDDEN"})

    def export(self, context, obj, path):
        anim, _, _ = animation_from_bake(obj, context.scene)
        anim.save(path)
        return f"Exported {anim.num_frames} frames at {anim.fps:g} fps to {path}"


class IMITATOR_OT_export_obj_sequence(_ExportOperator, ExportHelper, bpy.types.Operator):
    """Export the bake as one OBJ per frame, with the audio and a clip.json (fps) beside them"""

    bl_idname = "imitator.export_obj_sequence"
    bl_label = "Export OBJ Sequence"
    filename_ext = ""
    use_filter_folder = True
    overwrite: bpy.props.BoolProperty(
        name="Replace", default=False,
        description="Replace the folder if it holds an earlier OBJ sequence (and nothing else)")

    def export(self, context, obj, path):
        from ..core.audio import load_audio
        from ..core.data.clips import Clip, save_obj_sequence

        anim, first, _ = animation_from_bake(obj, context.scene)
        audio = sr = None
        record = json.loads(obj.get(GENERATE_TAG, "{}"))
        if record.get("audio") and Path(record["audio"]).is_file():
            sr = 16000
            samples = load_audio(Path(record["audio"]), sr, allow_silent=True)
            skip = int(round((first - record.get("start_frame", first)) / anim.fps * sr))
            audio = samples[max(0, skip):]
        clip = Clip(anim.vertices().astype(np.float32), anim.fps, audio, sr)
        folder = save_obj_sequence(path, clip, head_from_object(obj), overwrite=self.overwrite)
        return f"Exported {anim.num_frames} OBJ frames at {anim.fps:g} fps to {folder}"


class IMITATOR_OT_export_arkit_csv(_ExportOperator, ExportHelper, bpy.types.Operator):
    """Export ARKit weights as a Live Link Face CSV (exact bakes are fitted onto the ARKit keys)"""

    bl_idname = "imitator.export_arkit_csv"
    bl_label = "Export ARKit CSV"
    filename_ext = ".csv"
    filter_glob: bpy.props.StringProperty(default="*.csv", options={"HIDDEN"})

    def export(self, context, obj, path):
        from ..core.data.clips import save_arkit_csv

        weights, fps, error = arkit_weights_from_bake(obj, context.scene)
        save_arkit_csv(path, weights, fps)
        fit = f", fit error {error * 1000:.2f} mm" if error else ""
        return f"Exported {len(weights)} frames of ARKit weights at {fps:g} fps to {path}{fit}"


CLASSES = (IMITATOR_OT_export_npz, IMITATOR_OT_export_obj_sequence, IMITATOR_OT_export_arkit_csv)
