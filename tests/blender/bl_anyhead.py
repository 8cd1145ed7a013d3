"""Heads of other topologies: a decimated, scaled copy of the default head (a foreign mesh) and a
FLAME head from a fake FLAME file whose template is a realistic (remeshed) head. The fit is made by
the first Generate (or Fit Head), kept in the user folder and reused; the keys' lip gap follows the
model's; Adapt Style takes such heads and FLAME clips; cancel, undo and the warm-up."""

import numpy as np
import bpy
import pytest
from scene_setup import evaluated, generate_setup, sample_audio, snapshot


@pytest.fixture()
def setup(ext, tmp_dir):
    s = generate_setup(ext, tmp_dir)
    return s.head, s.obj, s.folder, s.scene


def foreign_copy(obj, name="Foreign", ratio=0.6, scale=1.15):
    """The default head decimated in Blender (a new topology), scaled and moved."""
    from mathutils import Matrix

    new = obj.copy()
    new.data = obj.data.copy()
    new.name = name
    bpy.context.collection.objects.link(new)
    new.shape_key_clear()
    mod = new.modifiers.new("dec", "DECIMATE")
    mod.ratio = ratio
    bpy.context.view_layer.objects.active = new
    bpy.ops.object.modifier_apply(modifier=mod.name)
    new.data.transform(Matrix.Translation((0.05, 0.02, -0.1)) @ Matrix.Scale(scale, 4))
    for o in bpy.context.view_layer.objects:
        o.select_set(o == new)
    return new


def model_gap(ext, folder, head):
    """The model's lip gap per model frame on the default head, computed without the add-on."""
    anim = ext.mod("core.model.generate").generate_file(
        ext.mod("core.model.checkpoint").from_pretrained(folder), sample_audio(ext))
    v = anim.vertices()
    u, l = int(head.regions["upper_lip_centre"][0]), int(head.regions["lower_lip_centre"][0])
    return np.linalg.norm(v[:, u] - v[:, l], axis=1), anim.fps, (u, l)


def baked_gap(ext, obj, frames, centres):
    fit_path = ext.mod("core.faces.head_fit").fit_path_for(
        ext.mod("imitator_blender.preferences").user_dir(), ext.mod("imitator_blender.mesh").mesh_topology(obj.data))
    assert fit_path.is_file()
    fit = ext.mod("core.faces.head_fit").HeadFit.load(fit_path)
    # the head's own lip centres: the points of its surface the model's lip centres lie on
    (cu, bu), (cl, bl) = ext.mod("core.faces.transfer").target_lip_points(fit, centres)
    gaps = []
    for f in frames:
        bpy.context.scene.frame_set(int(f))
        co = evaluated(obj)
        gaps.append(float(np.linalg.norm(bu @ co[cu] - bl @ co[cl])))
    return np.array(gaps), fit


def check_generate(ext, setup, obj):
    head, _, folder, scene = setup
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    keys = [k.name for k in obj.data.shape_keys.key_blocks if k.name.startswith("IM_")]
    assert 1 < len(keys) <= 65
    src, fps, centres = model_gap(ext, folder, head)
    scene_fps = scene.render.fps / scene.render.fps_base
    frames = scene.frame_start + np.arange(0, int(len(src) / fps * scene_fps) - 1, 2)
    gap, fit = baked_gap(ext, obj, frames, centres)
    want = np.interp((frames - scene.imitator.start_frame) / scene_fps, np.arange(len(src)) / fps, src)
    assert np.ptp(gap) > 1e-3 and np.corrcoef(gap, want)[0, 1] > 0.9, (np.round(gap * 1000, 1), np.round(want * 1000, 1), scene_fps, fps)
    return keys, fit


def test_foreign_mesh_is_fitted_once_animated_and_adapts(ext, setup):
    head, obj, folder, scene = setup
    foreign = foreign_copy(obj)
    assert len(foreign.data.vertices) < 0.8 * head.num_vertices
    match = ext.mod("imitator_blender.panels").head_model_match
    assert match(bpy.context, foreign) == ("'Foreign' is another head: Generate fits it first (or press Fit Head)", "INFO")
    keys, fit = check_generate(ext, setup, foreign)
    assert match(bpy.context, foreign)[0] == "'Foreign' has a head fit: Generate transfers the motion onto it"
    assert fit.scale == pytest.approx(1.15, rel=0.01)
    # re-Generate: the kept fit is used, and the bake replaces its own keys
    fits = sorted(ext.mod("imitator_blender.preferences").user_dir("fits").iterdir())
    stamp = fits[0].stat().st_mtime_ns
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    assert [k.name for k in foreign.data.shape_keys.key_blocks if k.name.startswith("IM_")] == keys
    assert sorted(ext.mod("imitator_blender.preferences").user_dir("fits").iterdir()) == fits
    assert fits[0].stat().st_mtime_ns == stamp
    # the foreign head now speaks: Adapt Style from it (through its fit onto the model head)
    settings = scene.imitator_adapt
    settings.source, settings.style_name, settings.steps1, settings.steps2 = "OBJECT", "Foreign Style", 5, 0
    settings.audio_path = sample_audio(ext)
    assert bpy.ops.imitator.adapt_style() == {"FINISHED"}
    path = ext.mod("imitator_blender.style_ui").styles_dir() / "Foreign Style.imstyle"
    meta = ext.mod("core.style.profile").read_profile_info(path)
    assert meta["topology"] == head.topology and meta["clip"] == "object 'Foreign'"
    # a plane is refused before anything runs, and nothing changes
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=20, y_subdivisions=20)
    before = snapshot()
    with pytest.raises(RuntimeError, match="is flat"):
        bpy.ops.imitator.generate()
    assert snapshot() == before


def test_flame_head_and_flame_clip_from_a_fake_flame_file(ext, setup, tmp_dir):
    """Add FLAME Head from a FLAME file whose template is a remeshed head: Generate animates it; a
    clip of FLAME parameters adapts a style through the preferences' FLAME model."""
    from tests.head_samples import fake_flame_with_jaw, jaw_clip

    head, obj, folder, scene = setup
    template = foreign_copy(obj, name="Template", ratio=0.7, scale=1.0)
    co = np.empty(len(template.data.vertices) * 3, np.float32)
    template.data.vertices.foreach_get("co", co)
    mesh = ext.mod("imitator_blender.mesh")
    core_v = mesh.blender_to_core(co.reshape(-1, 3)).astype(np.float64)
    mouth_y = float(head.vertices[int(head.regions["upper_lip_centre"][0]), 1])
    path = tmp_dir / "flame.npz"
    fake_flame_with_jaw(core_v, mesh.mesh_triangles(template.data), mouth_y, path)
    bpy.data.objects.remove(template)
    assert bpy.ops.imitator.add_flame_head(filepath=str(path)) == {"FINISHED"}
    flame = bpy.context.active_object
    assert len(flame.data.vertices) == len(core_v)
    check_generate(ext, setup, flame)

    jaw_clip(tmp_dir / "take.npz", sample_audio(ext))
    bpy.context.preferences.addons[ext.module].preferences.flame_model_path = str(path)
    settings = scene.imitator_adapt
    settings.source, settings.clip_path, settings.style_name = "FILE", str(tmp_dir / "take.npz"), "Tracked"
    settings.steps1, settings.steps2 = 5, 0
    before = snapshot()
    assert bpy.ops.imitator.adapt_style() == {"FINISHED"}
    profile = ext.mod("imitator_blender.style_ui").styles_dir() / "Tracked.imstyle"
    assert ext.mod("core.style.profile").read_profile_info(profile)["topology"] == head.topology
    assert snapshot() == before  # a profile file, nothing in the scene


def test_fit_head_button_landmarks_and_cancel(ext, setup):
    from types import SimpleNamespace

    head, obj, folder, scene = setup
    fops = ext.mod("imitator_blender.fit_operators")
    foreign = foreign_copy(obj)
    ctx = bpy.context
    fits = ext.mod("imitator_blender.preferences").user_dir("fits")
    before = snapshot()
    # Esc while it runs: nothing written, nothing changed
    fake = SimpleNamespace(report=lambda *a: None, _timer=None, _stop_timer=lambda c: None,
                           cancelled_text="cancelled", _cancel_requested=lambda c: False)
    fake._run = fops.IMITATOR_OT_fit_head._start(fake, ctx)
    assert ctx.window_manager.imitator_jobs.fit_running
    assert fops.IMITATOR_OT_fit_head.modal(fake, ctx, SimpleNamespace(type="ESC", value="PRESS")) == {"CANCELLED"}
    assert fake._run.job.wait(60) and fake._run.job.cancelled
    assert not list(fits.iterdir()) and snapshot() == before and not ctx.window_manager.imitator_jobs.fit_running
    # the button, run to the end
    assert bpy.ops.imitator.fit_head() == {"FINISHED"}
    (path,) = list(fits.iterdir())
    fit = ext.mod("core.faces.head_fit").HeadFit.load(path)
    assert fit.target_name == "Foreign" and "Fitted 'Foreign'" in ctx.window_manager.imitator_jobs.fit_status
    # landmarks as empties; one moved; the next fit uses it
    assert bpy.ops.imitator.show_landmarks() == {"FINISHED"}
    marks = {c[fops.LANDMARK_PROP]: c for c in foreign.children}
    assert set(marks) == set(fit.landmarks) and "nose_tip" in marks
    marks["nose_tip"].location.z += 0.003
    want = ext.mod("imitator_blender.mesh").blender_to_core(np.array(marks["nose_tip"].location))
    bpy.context.view_layer.update()
    bpy.context.view_layer.objects.active = foreign
    assert bpy.ops.imitator.fit_head() == {"FINISHED"}
    again = ext.mod("core.faces.head_fit").HeadFit.load(path)
    assert np.allclose(again.landmarks["nose_tip"], want, atol=1e-5)
    assert not np.allclose(again.landmarks["nose_tip"], fit.landmarks["nose_tip"], atol=1e-3)
    assert bpy.ops.imitator.clear_landmarks() == {"FINISHED"}
    assert not list(foreign.children)
    # Generate uses the fit that is there
    stamp = path.stat().st_mtime_ns
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    assert path.stat().st_mtime_ns == stamp
    # a fit of nothing fitting: refused at once
    bpy.ops.mesh.primitive_cube_add()
    with pytest.raises(RuntimeError, match="8 vertices"):
        bpy.ops.imitator.fit_head()


def test_warm_up_loads_the_model_once_for_the_first_click(ext, setup):
    head, obj, folder, scene = setup
    warm = ext.mod("imitator_blender.warmup")
    panels = ext.mod("imitator_blender.panels")

    class Layout:  # the main panel's draw starts the warm-up; its layout calls are not looked at
        def __getattr__(self, name):
            return lambda *a, **k: self

    panels.IMITATOR_PT_main.draw(type("P", (), {"layout": Layout()})(), bpy.context)
    thread = warm.MODELS._thread
    assert thread is not None and thread.name == "imitator-warmup"
    thread.join(120)
    assert warm.MODELS.warm_seconds is not None
    model = warm.MODELS._entry[1]
    warm.warm_up_once(bpy.context)
    assert warm.MODELS._thread is thread  # once per session
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    assert warm.MODELS._entry[1] is model  # the click used the warm model
    # new weights in the folder: the next Generate loads them
    tiny_model = __import__("scene_setup").tiny_model
    tiny_model(ext, head, folder, seed=3)
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    assert warm.MODELS._entry[1] is not model


def test_cancel_and_undo_on_a_foreign_head(ext, setup):
    head, obj, folder, scene = setup
    foreign = foreign_copy(obj)
    name = foreign.name
    ops = ext.mod("imitator_blender.generate_operators")
    fits = ext.mod("imitator_blender.preferences").user_dir("fits")
    before = snapshot()
    # cancelled (Esc) while the model or the fit runs: nothing baked, no fit written
    run = ops.GenerateRun.start(bpy.context)
    run.cancel(bpy.context)
    assert run.job.wait(120)
    assert snapshot() == before and not list(fits.iterdir())
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message="before Generate")
        before = snapshot()
        assert bpy.ops.imitator.generate("EXEC_DEFAULT", True) == {"FINISHED"}
        assert any(k.name.startswith("IM_") for k in bpy.data.objects[name].data.shape_keys.key_blocks)
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert snapshot() == before  # the bake on the foreign head is gone in one step

