"""Fit Head: the model's head registered onto the selected mesh as a background job, and the
fit's landmarks shown as empties the user can move before fitting again.

The fit is kept in the extension's user folder keyed by the mesh's topology; Generate uses it (and
makes it itself when there is none). Landmark empties are children of the head named
``IM landmark <name>``; where they exist, Fit Head and Generate's own fit use their positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..core.errors import ImitatorError
from .jobs import BackgroundJob, JobOperator
from .warmup import import_core
from .mesh import blender_to_core, core_to_blender, key_coords, mesh_topology, mesh_triangles, require_mesh

LANDMARK_PROP = "imitator_landmark"  # on an empty: the landmark name it stands for


@dataclass
class FitRequest:
    """A head read from the scene for fitting (plain data, core coordinates)."""

    object_name: str
    num_vertices: int
    topology: str
    rest: np.ndarray  # (V, 3) float32
    triangles: np.ndarray  # (F, 3)
    landmarks: dict[str, np.ndarray] | None
    cache_dir: Path
    fit_path: Path


def read_head(obj: bpy.types.Object) -> FitRequest:
    """Everything a fit of ``obj`` needs; a one-line error (scene unchanged) for meshes that
    cannot be a head."""
    from ..core.faces.head_fit import check_target_mesh, fit_path_for
    from .preferences import user_dir

    require_mesh(obj)
    key = obj.data.shape_keys
    if key is not None:
        rest = key_coords(key.reference_key)
    else:
        rest = np.empty(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", rest)
        rest = rest.reshape(-1, 3)
    rest = blender_to_core(rest).astype(np.float32)
    triangles = mesh_triangles(obj.data)
    check_target_mesh(obj.name, rest, triangles)
    topology = mesh_topology(obj.data)
    return FitRequest(obj.name, len(rest), topology, rest, triangles, landmark_positions(obj),
                      user_dir("cache"), fit_path_for(user_dir(), topology))


def landmark_positions(obj: bpy.types.Object) -> dict[str, np.ndarray] | None:
    """Landmarks the user placed (empties parented to the head), in core coordinates; None if none."""
    marks = {}
    inverse = obj.matrix_world.inverted()
    for child in obj.children:
        name = child.get(LANDMARK_PROP)
        if child.type == "EMPTY" and isinstance(name, str):
            local = inverse @ child.matrix_world.translation
            marks[name] = blender_to_core(np.array(local, np.float64))
    return marks or None


def run_fit(request: FitRequest, report):
    """Worker side (no bpy): the fit of the default head onto the requested mesh."""
    from ..core.faces.default_head import load_default_head
    from ..core.faces.head_fit import fit_head

    report(0.01, "loading the model head")
    source = load_default_head(request.cache_dir)
    return fit_head(source, request.rest, request.triangles, name=request.object_name,
                    target_topology=request.topology, landmarks=request.landmarks, progress=report)


class FitRun:
    """One Fit Head in progress (the JobOperator protocol: update, finish, cancel)."""

    def __init__(self, request: FitRequest, job: BackgroundJob):
        self.request, self.job = request, job

    def update(self, context) -> bool:
        done = self.job.poll()
        state = context.window_manager.imitator_jobs
        state.fit_progress, state.fit_status = self.job.progress.fraction, self.job.progress.text[:200]
        context.window_manager.progress_update(int(1000 * self.job.progress.fraction))
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        return done

    def finish(self, context):
        self._end(context)
        if self.job.cancelled:
            return {"CANCELLED"}, "Fit Head cancelled; nothing changed", []
        if self.job.error:
            return {"CANCELLED"}, self.job.error, []
        fit = self.job.result
        try:
            fit.save(self.request.fit_path)
        except ImitatorError as e:
            return {"CANCELLED"}, str(e), []
        text = fit_summary(fit)
        context.window_manager.imitator_jobs.fit_status = text
        return {"FINISHED"}, text, []

    def cancel(self, context) -> None:
        self.job.cancel()
        self._end(context)
        context.window_manager.imitator_jobs.fit_status = "Fit Head cancelled; nothing changed"

    def _end(self, context) -> None:
        context.window_manager.imitator_jobs.fit_running = False
        context.window_manager.progress_end()


def fit_summary(fit) -> str:
    scale = max(fit.scale, 1e-12)
    return (f"Fitted '{fit.target_name}' in {fit.seconds:.1f} s: distance to the model head "
            f"{fit.error_mean / scale * 1000:.2f} mm mean, {fit.error_max / scale * 1000:.1f} mm max")


class IMITATOR_OT_fit_head(JobOperator, bpy.types.Operator):
    """Fit the model's head onto the selected mesh (any topology), for Generate; Esc cancels"""

    bl_idname = "imitator.fit_head"
    bl_label = "Fit Head"
    bl_options = {"REGISTER"}
    cancelled_text = "Fit Head cancelled; nothing changed"

    def _start(self, context):
        state = context.window_manager.imitator_jobs
        if state.fit_running:
            self.report({"ERROR"}, "A Fit Head is already running; wait for it or press Esc")
            return None
        try:
            request = read_head(context.active_object)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return None
        job = BackgroundJob("fit-head", lambda report: run_fit(request, report)).start()
        state.fit_running, state.fit_progress, state.fit_status = True, 0.0, "starting"
        context.window_manager.progress_begin(0, 1000)
        return FitRun(request, job)

    def _end(self, context, outcome):
        result, text, _ = outcome
        level = "INFO" if result == {"FINISHED"} else ("WARNING" if self._run.job.cancelled else "ERROR")
        self.report({level}, text)
        return result


class IMITATOR_OT_show_landmarks(bpy.types.Operator):
    """Show the fit's landmarks on the head as empties; move them and run Fit Head again"""

    bl_idname = "imitator.show_landmarks"
    bl_label = "Show Landmarks"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        import_core()  # the warm-up may be importing scipy right now
        from ..core.faces.head_fit import HeadFit

        obj = context.active_object
        try:
            request = read_head(obj)
            fit = HeadFit.load(request.fit_path)
            fit.check_target(obj.name, request.num_vertices, request.topology)
        except ImitatorError as e:
            self.report({"ERROR"}, f"{e}" if "Fit Head" in str(e) else f"{e}; run Fit Head first")
            return {"CANCELLED"}
        have = {c.get(LANDMARK_PROP) for c in obj.children}
        size = 0.02 * fit.scale
        for name, point in fit.landmarks.items():
            if name in have:
                continue
            empty = bpy.data.objects.new(f"IM landmark {name}", None)
            empty.empty_display_type = "SPHERE"
            empty.empty_display_size = size
            empty[LANDMARK_PROP] = name
            context.collection.objects.link(empty)
            empty.parent = obj
            empty.location = core_to_blender(np.asarray(point, np.float64)).tolist()
        self.report({"INFO"}, f"{len(fit.landmarks)} landmarks on '{obj.name}'; move them, then Fit Head")
        return {"FINISHED"}


class IMITATOR_OT_clear_landmarks(bpy.types.Operator):
    """Remove the landmark empties of the selected head (the next fit finds them itself)"""

    bl_idname = "imitator.clear_landmarks"
    bl_label = "Clear Landmarks"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = context.active_object
        if obj is None:
            self.report({"ERROR"}, "no object selected; select the head")
            return {"CANCELLED"}
        gone = [c for c in obj.children if c.type == "EMPTY" and LANDMARK_PROP in c]
        for c in gone:
            bpy.data.objects.remove(c)
        self.report({"INFO"}, f"removed {len(gone)} landmarks from '{obj.name}'")
        return {"FINISHED"}


CLASSES = (IMITATOR_OT_fit_head, IMITATOR_OT_show_landmarks, IMITATOR_OT_clear_landmarks)
