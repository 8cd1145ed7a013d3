"""Cancel safety: Generate and Adapt Style cancelled at 20 random points each, through the modal
operator's Esc, leave the scene, the style list and the extension's user folder exactly as before.

A point is either the k-th progress report of the worker (k drawn from the reports a full run
makes; the worker is held at that report while Esc is pressed, then lets go and meets the cancel at
its next report), the moment after the worker finished but before its result was applied, or a
random delay into the run. Seeded: the same points every run.
"""

import threading
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from bl_styles import Scene
from scene_setup import default_head, ensure_runtime_packages, sample_audio, snapshot, tiny_model, user_folder

ESC = SimpleNamespace(type="ESC", value="PRESS")
POINTS = 20


class Gate:
    """Wraps a worker function's ``report``: counts the reports and holds the worker at the k-th."""

    def __init__(self, module, name):
        self.module, self.name, self.real = module, name, getattr(module, name)
        self.k, self.count = None, 0
        self.reached, self.go = threading.Event(), threading.Event()
        setattr(module, name, self.worker)

    def worker(self, request, report):
        def counted(fraction, text):
            self.count += 1
            if self.count == self.k:
                self.reached.set()
                self.go.wait(60)
            report(fraction, text)
        return self.real(request, counted)

    def arm(self, k):
        self.k, self.count = k, 0
        self.reached.clear()
        self.go.clear()

    def restore(self):
        setattr(self.module, self.name, self.real)


def esc(operator_cls, run, context):
    """What Blender does when Esc reaches the running modal operator."""
    fake = SimpleNamespace(_run=run, _timer=None, report=lambda *a: None, _stop_timer=lambda c: None,
                           cancelled_text="cancelled", _cancel_requested=lambda c: False)
    assert operator_cls.modal(fake, context, ESC) == {"CANCELLED"}


def cancel_at_random_points(start, operator_cls, gate, state, rng):
    """Time one full run, then cancel ``POINTS`` runs at drawn points; each leaves ``state()`` as
    it was. Returns the points used."""
    ctx = bpy.context
    gate.arm(None)
    t0 = time.perf_counter()
    run = start(ctx)
    assert run.job.wait(120) and run.job.error is None, run.job.error
    duration, reports = time.perf_counter() - t0, gate.count
    run.cancel(ctx)  # the timing run is dropped like a cancelled one
    assert reports >= 3, reports
    points = [("report", int(k)) for k in rng.integers(1, reports + 1, POINTS // 2 - 2)]
    points += [("report", 1), ("finished", reports)]  # the very first report; after the worker ended
    points += [("delay", float(d)) for d in rng.uniform(0, duration, POINTS - len(points))]
    for kind, where in points:
        before = state()
        gate.arm(where if kind == "report" else None)
        run = start(ctx)
        t0 = time.monotonic()
        while not (gate.reached.is_set() if kind == "report" else
                   run.job.wait(0) if kind == "finished" else time.monotonic() - t0 >= where):
            run.update(ctx)  # what the modal timer does between events
            assert time.monotonic() - t0 < 120, (kind, where, run.job.error)
            time.sleep(0.01)
        esc(operator_cls, run, ctx)
        gate.go.set()
        assert run.job.wait(120), (kind, where)
        assert run.job.cancelled or kind in ("finished", "delay"), (kind, where, run.job.error)
        assert state() == before, (kind, where)
    return points


def test_generate_cancelled_at_20_random_points_changes_nothing(ext, tmp_dir):
    ensure_runtime_packages(ext)
    head, obj = default_head(ext)
    scene = bpy.context.scene
    scene.imitator.model_folder = str(tiny_model(ext, head, tmp_dir / "model"))
    scene.imitator.audio_path = sample_audio(ext)
    own = obj.shape_key_add(name="Smile", from_mix=False)  # the user's own key and keyframe
    own.keyframe_insert("value", frame=1)
    assert bpy.ops.imitator.generate() == {"FINISHED"}  # a previous bake a cancel must not touch
    ops = ext.mod("imitator_blender.generate_operators")
    job_module = ext.mod("imitator_blender.generate_job")
    gate = Gate(job_module, "run")
    wm = bpy.context.window_manager

    def state():
        assert not wm.imitator_jobs.generate_running
        return snapshot(), user_folder(ext)

    try:
        points = cancel_at_random_points(ops.GenerateRun.start, ops.IMITATOR_OT_generate, gate, state,
                                         np.random.default_rng(15))
    finally:
        gate.restore()
    assert len(points) == POINTS and {k for k, _ in points} == {"report", "finished", "delay"}
    assert "cancelled" in wm.imitator_jobs.generate_status
    assert bpy.ops.imitator.generate() == {"FINISHED"}  # and the next Generate runs normally


def test_adapt_style_cancelled_at_20_random_points_writes_nothing(ext, tmp_dir):
    s = Scene(ext, tmp_dir, seconds=2.0)
    settings = bpy.context.scene.imitator_adapt
    settings.lip_closures = False
    settings.steps1, settings.steps2 = 12, 6
    (s.styles / "Kept.imstyle").write_bytes(b"the user's earlier style")
    ext.mod("imitator_blender.style_ui").refresh_styles(bpy.context.window_manager)
    ops = ext.mod("imitator_blender.style_operators")
    gate = Gate(ops, "run_adaptation")
    wm = bpy.context.window_manager

    def state():
        assert not wm.imitator_style_busy
        return snapshot(), user_folder(ext), s.listed(), s.files()

    try:
        points = cancel_at_random_points(lambda ctx: ops.AdaptRun.start(ctx, str(s.model_dir)),
                                         ops.IMITATOR_OT_adapt_style, gate, state,
                                         np.random.default_rng(16))
    finally:
        gate.restore()
    assert len(points) == POINTS
    assert s.files() == ["Kept.imstyle"] and "cancelled" in wm.imitator_style_status
    assert bpy.context.scene.frame_current == 7
