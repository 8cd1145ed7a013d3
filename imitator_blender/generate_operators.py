"""Generate as a background job: the model runs in a worker thread, the main thread bakes.

Interactive (``INVOKE_DEFAULT``, the button): a modal operator polls the job from a timer, shows
progress in the panel, the status bar and the cursor, and keeps Blender responsive; Esc (or the
Cancel button) cancels and leaves the scene as it was. Scripts and headless runs (``execute``) use
the very same job and wait for it. Only one Generate runs at a time.
"""

from __future__ import annotations

import time

import bpy

from ..core.errors import ImitatorError
from . import generate_job
from .jobs import BackgroundJob, JobOperator

HEARTBEAT_S = 5.0  # a "running" flag older than this belongs to a Generate that died with its window


def generate_busy(context: bpy.types.Context) -> bool:
    state = context.window_manager.imitator_jobs
    return state.generate_running and time.monotonic() - state.generate_heartbeat < HEARTBEAT_S


class GenerateRun:
    """One Generate in progress: the request, its worker job, and the UI state it keeps current."""

    def __init__(self, request: generate_job.GenerateRequest, job: BackgroundJob):
        self.request = request
        self.job = job

    @classmethod
    def start(cls, context: bpy.types.Context) -> "GenerateRun":
        """Check everything and start the worker; raises ImitatorError (scene unchanged) if refused."""
        state = context.window_manager.imitator_jobs
        if generate_busy(context):
            raise ImitatorError(f"A Generate is already running ({state.generate_progress:.0%}); wait "
                                f"for it, or press Esc to cancel it")
        request = generate_job.prepare(context)
        job = BackgroundJob("generate", lambda report: generate_job.run(request, report)).start()
        state.generate_running, state.generate_cancel = True, False
        state.generate_progress, state.generate_status = 0.0, "starting"
        state.generate_heartbeat = time.monotonic()
        return cls(request, job)

    def update(self, context: bpy.types.Context) -> bool:
        """Refresh the progress shown; True once the worker has ended."""
        done = self.job.poll()
        state = context.window_manager.imitator_jobs
        state.generate_progress = self.job.progress.fraction
        state.generate_status = self.job.progress.text[:200]
        state.generate_heartbeat = time.monotonic()
        context.window_manager.progress_update(int(1000 * self.job.progress.fraction))
        _redraw(context)
        return done

    def finish(self, context: bpy.types.Context) -> tuple[set[str], str, list[str]]:
        """Apply the result (main thread). Returns (operator result, message, warnings)."""
        self._end(context)
        if self.job.cancelled:
            return {"CANCELLED"}, "Generate cancelled; the scene is unchanged", []
        if self.job.error:
            return {"CANCELLED"}, self.job.error, []
        try:
            text, warnings = generate_job.apply(context, self.request, self.job.result)
        except ImitatorError as e:
            return {"CANCELLED"}, str(e), []
        context.window_manager.imitator_jobs.generate_status = text
        return {"FINISHED"}, text, warnings

    def cancel(self, context: bpy.types.Context) -> None:
        """Stop waiting: the worker stops at its next progress report; nothing is applied."""
        self.job.cancel()
        self._end(context)
        context.window_manager.imitator_jobs.generate_status = "Generate cancelled; the scene is unchanged"

    def _end(self, context: bpy.types.Context) -> None:
        state = context.window_manager.imitator_jobs
        state.generate_running = state.generate_cancel = False
        context.window_manager.progress_end()
        _redraw(context)


class IMITATOR_OT_generate(JobOperator, bpy.types.Operator):
    """Animate the selected head from the audio file with the model (Esc cancels)"""

    bl_idname = "imitator.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}
    cancelled_text = "Generate cancelled; the scene is unchanged"

    def _start(self, context) -> GenerateRun | None:
        try:
            run = GenerateRun.start(context)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return None
        context.window_manager.progress_begin(0, 1000)
        return run

    def _cancel_requested(self, context) -> bool:
        return context.window_manager.imitator_jobs.generate_cancel  # the panel's Cancel button

    def _end(self, context, outcome: tuple[set[str], str, list[str]]) -> set[str]:
        result, text, warnings = outcome
        if result == {"FINISHED"}:
            self.report({"INFO"}, text)
            for w in warnings:
                self.report({"WARNING"}, w)
        elif self._run.job.cancelled:
            self.report({"WARNING"}, text)
        else:
            self.report({"ERROR"}, text)
        return result


class IMITATOR_OT_cancel_generate(bpy.types.Operator):
    """Cancel the running Generate; the scene stays as it was"""

    bl_idname = "imitator.cancel_generate"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    def execute(self, context):
        state = context.window_manager.imitator_jobs
        if not state.generate_running:
            return {"CANCELLED"}
        state.generate_cancel = True
        return {"FINISHED"}


def _draw_status_bar(header, context) -> None:
    """Status bar while a Generate runs: a progress bar and how to cancel."""
    state = context.window_manager.imitator_jobs
    header.layout.progress(factor=state.generate_progress, type="BAR",
                           text=f"Imitator: {state.generate_status[:60]}")
    header.layout.label(text="Esc cancels")


def _redraw(context: bpy.types.Context) -> None:
    """Redraw the sidebars and the status bar (the status bar shows our bar while running)."""
    for window in context.window_manager.windows:
        if window.screen is not None:
            for area in window.screen.areas:
                if area.type in {"VIEW_3D", "PREFERENCES"}:
                    area.tag_redraw()
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        running = context.window_manager.imitator_jobs.generate_running
        workspace.status_text_set(_draw_status_bar if running else None)


CLASSES = (IMITATOR_OT_generate, IMITATOR_OT_cancel_generate)
