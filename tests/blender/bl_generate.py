"""Generate end to end, headless, through the operator: default head + sample audio + a tiny model.

Checks the bake against the model's own output, the sound strip, the frame range, the lip gap,
save/reopen, re-Generate, the ARKit-key bake, cancel and the refusals of bad input.
"""

import json
import math
import time
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from scene_setup import (action_fcurves, all_strips, default_head, ensure_runtime_packages, evaluated,  # noqa: F401
                         expect_error, generate_setup, sample_audio, snapshot, tiny_model)

def to_blender(p):
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


@pytest.fixture()
def setup(ext, tmp_dir):
    return generate_setup(ext, tmp_dir)


def model_animation(ext, folder, audio):
    """The model's output computed here, independently of the add-on."""
    from_pretrained = ext.mod("core.model.checkpoint").from_pretrained
    generate_file = ext.mod("core.model.generate").generate_file
    return generate_file(from_pretrained(folder), audio)


def expected_at(anim, rest, seconds):
    """Blender-space vertices of ``anim`` (offsets on ``rest``) at ``seconds``, linearly interpolated."""
    s = np.clip(seconds * anim.fps, 0, anim.num_frames - 1)
    i0 = int(np.floor(s)); i1 = min(i0 + 1, anim.num_frames - 1); a = s - i0
    off = (1 - a) * anim.offsets(slice(i0, i0 + 1))[0] + a * anim.offsets(slice(i1, i1 + 1))[0]
    return rest + to_blender(off)


def lip_gaps(ext, head, obj, frames):
    centres = ext.mod("core.evaluate.metrics").FaceRegions.from_head(head).lip_centres
    gaps = []
    for f in frames:
        bpy.context.scene.frame_set(f)
        co = evaluated(obj)
        gaps.append(float(np.linalg.norm(co[centres[0]] - co[centres[1]])))
    return np.array(gaps)


def our_strips(scene):
    return [s for s in all_strips(scene) if "imitator_sound" in s]


def check_arkit_bake_then_exact(ext, setup, scene, obj):
    """ARKit keys: the head's own keys are driven; an exact re-Generate gives them back."""
    ARKIT = ext.mod("core.faces.default_head").ARKIT_SHAPE_NAMES
    scene.imitator.bake_mode = "ARKIT"
    names_before = list(obj.data.shape_keys.key_blocks.keys())
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    # The exact bake's keys are gone and no key was created.
    assert list(obj.data.shape_keys.key_blocks.keys()) == [n for n in names_before if not n.startswith("IM_")]
    paths = sorted(fc.data_path for fc in action_fcurves(obj.data.shape_keys.animation_data.action))
    assert paths == sorted([f'key_blocks["{n}"].value' for n in ARKIT] + ['key_blocks["Smile"].value'])
    # The keyed weights are the bounded fit of the model's output, within [0, 1], resampled to the
    # scene: frame 22 (start 10.5, 25 fps) shows model frame (22 - 10.5) * 30 / 25 = 13.8.
    anim = model_animation(ext, setup.folder, scene.imitator.audio_path)
    anim = ext.mod("core.animation").Animation(setup.head.vertices, anim.basis, anim.weights, anim.bias, anim.fps)
    weights, error = ext.mod("core.arkit_fit").fit_arkit_weights(anim.vertices(slice(13, 15)), setup.head)
    assert 0 <= error * 1000 <= scene.imitator.fit_error_mm + 1e-3
    scene.frame_set(22)
    keys = obj.data.shape_keys.key_blocks
    values = np.array([keys[n].value for n in ARKIT])
    assert values.min() >= 0 and values.max() <= 1 and values.max() > 0.01
    # (The 52 keys are nearly dependent: tiny input differences move single weights a little.)
    assert np.abs(values - (0.2 * weights[0] + 0.8 * weights[1])).max() < 0.02
    target = expected_at(anim, to_blender(setup.head.vertices), (22 - 10.5) / 25)
    assert np.abs(evaluated(obj) - target).max() <= scene.imitator.fit_error_mm / 1000 + 1e-5
    # An exact re-Generate removes the ARKit curves and puts the keys back at rest.
    scene.imitator.bake_mode = "EXACT"
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    paths = [fc.data_path for fc in action_fcurves(obj.data.shape_keys.animation_data.action)]
    assert not any(p.split('"')[1] in ARKIT for p in paths)
    assert all(obj.data.shape_keys.key_blocks[n].value == 0 for n in ARKIT)


def test_generate_bakes_model_output_with_sound_and_frame_range(ext, setup, tmp_dir):
    scene, obj, head = setup.scene, setup.obj, setup.head
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.imitator.start_frame = 1
    # The user's own key and keyframes must survive every Generate.
    own = obj.shape_key_add(name="Smile", from_mix=False)
    own.keyframe_insert("value", frame=1)
    assert bpy.ops.imitator.generate() == {"FINISHED"}

    keys = obj.data.shape_keys.key_blocks
    ours = [k.name for k in keys if k.name.startswith("IM_")]
    assert len(ours) == 16 + 1  # feature_dim basis keys + the bias key
    anim = model_animation(ext, setup.folder, scene.imitator.audio_path)
    seconds = ext.mod("core.audio").audio_info(scene.imitator.audio_path).duration
    assert anim.num_frames == math.floor(seconds * 30)
    # Frame f shows time (f - 1) / 30: the range ends on the last frame that starts inside the audio.
    assert scene.frame_start == 1 and scene.frame_end == math.ceil(seconds * 30)
    rest = to_blender(head.vertices)
    worst = 0.0
    for f in (1, 2, 40, 97, scene.frame_end):
        scene.frame_set(f)
        worst = max(worst, float(np.abs(evaluated(obj) - expected_at(anim, rest, (f - 1) / 30)).max()))
    assert worst < 2e-5, worst
    gaps = lip_gaps(ext, head, obj, range(1, scene.frame_end + 1, 3))
    assert gaps.max() - gaps.min() > 1e-3 and gaps.std() > 2e-4, (gaps.min(), gaps.max())

    record = json.loads(obj["imitator_generate"])
    strips = our_strips(scene)
    if bpy.app.build_options.audaspace:
        assert len(strips) == 1 and strips[0]["imitator_sound"] == record["sound_id"]
        assert strips[0].frame_start == 1 and strips[0].sound.filepath.endswith("sample.wav")
    else:  # the PyPI bpy 4.2 wheel is built without audio: the bake is there, no strip
        assert strips == [] and record["sound_id"] == ""

    # Save and reopen: the same animation and strip.
    path, name = str(tmp_dir / "generated.blend"), obj.name
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    scene, obj = bpy.context.scene, bpy.data.objects[name]
    bpy.context.view_layer.objects.active = obj
    assert np.allclose(lip_gaps(ext, head, obj, range(1, scene.frame_end + 1, 3)), gaps, atol=1e-7)
    assert len(our_strips(scene)) == len(strips)

    # Re-Generate at a fractional start frame and 25 fps: replaces its own bake and strip only.
    scene.imitator.start_frame = 10.5
    scene.imitator.fps_mode = "25"
    actions_before = len(bpy.data.actions)
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    keys = obj.data.shape_keys.key_blocks
    assert len([k for k in keys if k.name.startswith("IM_")]) == 17 and "Smile" in keys
    assert scene.render.fps == 25 and scene.frame_start == 10
    assert len(bpy.data.actions) == actions_before
    paths = [fc.data_path for fc in action_fcurves(obj.data.shape_keys.animation_data.action)]
    assert paths.count('key_blocks["Smile"].value') == 1 and len(paths) == 16 + 1
    scene.frame_set(30)
    assert np.abs(evaluated(obj) - expected_at(anim, rest, (30 - 10.5) / 25)).max() < 2e-5
    strips = our_strips(scene)
    if bpy.app.build_options.audaspace:
        assert len(strips) == 1 and strips[0].frame_start == 11
        assert strips[0].sound_offset == pytest.approx(0.5 / 25)

    check_arkit_bake_then_exact(ext, setup, scene, obj)


def check_cancel_and_second_generate(ext):
    """Esc, the Cancel button, and a Generate while one runs: the scene stays as it was."""
    ops = ext.mod("imitator_blender.generate_operators")
    ctx = bpy.context
    before = snapshot()
    run = ops.GenerateRun.start(ctx)  # what the button's modal operator starts
    assert ctx.window_manager.imitator_jobs.generate_running
    expect_error(bpy.ops.imitator.generate, "already running")
    assert snapshot() == before
    # Esc in the modal operator: cancelled, nothing applied, even once the worker has finished.
    fake = SimpleNamespace(_run=run, _timer=None, report=lambda *a: None, _stop_timer=lambda c: None,
                           cancelled_text="cancelled",
                           _cancel_requested=lambda c: c.window_manager.imitator_jobs.generate_cancel)
    result = ops.IMITATOR_OT_generate.modal(fake, ctx, SimpleNamespace(type="ESC", value="PRESS"))
    assert result == {"CANCELLED"}
    assert run.job.wait(30)
    assert run.job.cancelled or run.job.result is not None
    assert snapshot() == before and not ctx.window_manager.imitator_jobs.generate_running
    # The Cancel button's flag does the same; then a new Generate runs normally.
    run = ops.GenerateRun.start(ctx)
    ctx.window_manager.imitator_jobs.generate_cancel = True
    assert ops.IMITATOR_OT_generate.modal(fake, ctx, SimpleNamespace(type="TIMER", value="NOTHING")) == {"CANCELLED"}
    run.job.wait(30)
    assert snapshot() == before
    # A worker that is cancelled mid-run stops at its next progress report.
    slow = ops.BackgroundJob("slow", lambda report: [report(i / 100, "x") or time.sleep(0.01) for i in range(500)])
    slow.start()
    time.sleep(0.05)
    slow.cancel()
    assert slow.wait(5) and slow.cancelled and slow.result is None


def test_bad_input_cancel_and_busy_change_nothing(ext, setup, tmp_dir):
    scene, obj, head = setup.scene, setup.obj, setup.head
    deps = ext.mod("imitator_blender.dependencies")
    view = bpy.context.view_layer
    before = snapshot()

    def refused(*words):
        expect_error(bpy.ops.imitator.generate, *words)
        assert snapshot() == before

    # No head / not a mesh / wrong topology.
    view.objects.active = None
    refused("no object selected")
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.collection.objects.link(cam)
    before = snapshot()
    view.objects.active = cam
    refused("'Cam'", "not a mesh")
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    before = snapshot()
    refused(f"'{cube.name}'", "8 vertices", "a head to fit")  # any mesh is fitted, a cube is refused
    view.objects.active = obj

    # Audio: not chosen, missing, unreadable.
    scene.imitator.audio_path = ""
    refused("No audio file")
    scene.imitator.audio_path = str(tmp_dir / "nothing.wav")
    refused("nothing.wav", "not found")
    bad = tmp_dir / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk" * 10)
    scene.imitator.audio_path = str(bad)
    refused("bad.wav", "not a readable audio file")
    scene.imitator.audio_path = sample_audio(ext)

    # Model folder: missing, no config, corrupt weights, another topology.
    scene.imitator.model_folder = str(tmp_dir / "no-model")
    refused("no-model", "model folder not found")
    empty = tmp_dir / "empty-model"
    empty.mkdir()
    scene.imitator.model_folder = str(empty)
    refused("config.json", "missing")
    corrupt = tmp_dir / "corrupt-model"
    tiny_model(ext, head, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    scene.imitator.model_folder = str(corrupt)
    refused("model.safetensors", "corrupt")
    other = tiny_model(ext, head, tmp_dir / "other-model", num_vertices=5023)
    scene.imitator.model_folder = str(other)
    refused(f"'{obj.name}'", "5023 vertices", "does not match")
    scene.imitator.model_folder = str(setup.folder)

    # ARKit keys on a head that has none (same topology, keys removed).
    bare = obj.copy()
    bare.data = obj.data.copy()
    bare.name = "Bare"
    bpy.context.collection.objects.link(bare)
    view.objects.active = bare
    bare.shape_key_clear()
    before = snapshot()
    scene.imitator.bake_mode = "ARKIT"
    refused("'Bare'", "ARKit shape keys")
    scene.imitator.bake_mode = "EXACT"
    view.objects.active = obj

    # The packages are missing: the message points at the installer.
    real = deps.missing_modules
    deps.missing_modules = lambda modules=deps.GENERATE_MODULES: ["torch"]
    try:
        refused("Missing Python packages: torch", "Install Dependencies")
    finally:
        deps.missing_modules = real

    # A style profile adapted with another model (the style list's selection).
    profiles = ext.mod("core.style.profile")
    model = ext.mod("core.model.checkpoint").from_pretrained(setup.folder)
    style_ui = ext.mod("imitator_blender.style_ui")
    wm = bpy.context.window_manager
    vector = model.style_embedding.weight[:, 1].detach().numpy()  # the model's style "b"
    meta = {"name": "other", "topology": head.topology, "num_vertices": head.num_vertices,
            "base_model": "0" * 64}
    profiles.StyleProfile(vector, meta=meta).save(style_ui.styles_dir() / "other.imstyle")
    style_ui.refresh_styles(wm, select="other.imstyle")
    refused("other.imstyle", "not with this model")
    profiles.StyleProfile(vector, meta={**meta, "name": "mine", "base_model": profiles.model_hash(model)}).save(
        style_ui.styles_dir() / "mine.imstyle")
    style_ui.refresh_styles(wm, select="mine.imstyle")

    check_cancel_and_second_generate(ext)
    # The good input still works, with the chosen style: the model's style "b", not its default "a".
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    assert snapshot() != before
    generate_file = ext.mod("core.model.generate").generate_file
    styled = generate_file(model, scene.imitator.audio_path, style=1).vertices()
    plain = generate_file(model, scene.imitator.audio_path).vertices()
    scene.render.fps_base = 1.0
    scene.frame_set(scene.frame_start + scene.render.fps)  # 1 s in: model frame 30
    co = evaluated(obj)
    rest = to_blender(head.vertices)
    assert np.abs(co - (rest + to_blender(styled[30] - head.vertices))).max() < 2e-5
    assert np.abs(co - (rest + to_blender(plain[30] - head.vertices))).max() > 1e-4


class FakeLayout:
    """Stands in for bpy.types.UILayout (headless Blender cannot draw): records what a draw
    function asks for and checks properties, operators and icons exist, as Blender would."""

    ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):  # column, row, box, split, template_list, ... -> a child layout
        def child(*args, **kwargs):
            self._icon(kwargs)
            self.log.append((name, args, kwargs))
            return FakeLayout(self.log)
        return child

    def _icon(self, kwargs):
        assert kwargs.get("icon", "NONE") in self.ICONS, kwargs["icon"]

    def label(self, text="", icon="NONE", **kwargs):
        self._icon({"icon": icon})
        self.log.append(("label", text))

    def prop(self, data, name, **kwargs):
        self._icon(kwargs)
        assert name in data.bl_rna.properties, name
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        self._icon(kwargs)
        category, _, op = idname.partition(".")
        getattr(getattr(bpy.ops, category), op).get_rna_type()  # KeyError if not registered
        self.log.append(("operator", idname))
        return SimpleNamespace()  # operator properties are set on it

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0 <= factor <= 1
        self.log.append(("progress", text))


def draw(cls, context, target=None):
    """Run a panel's (or the preferences') draw with a fake layout; returns what it drew."""
    log = []

    class Proxy:
        layout = FakeLayout(log)

        def __getattr__(self, name):
            return getattr(target, name)

    cls.draw(Proxy(), context)
    return log


def test_sidebar_and_preferences_draw_in_every_state(ext, tmp_dir):
    panels = ext.mod("imitator_blender.panels")
    ops = ext.mod("imitator_blender.generate_operators")
    deps = ext.mod("imitator_blender.dependencies")
    ctx = bpy.context
    state = ctx.window_manager.imitator_jobs
    order = [c.bl_label for c in panels.CLASSES if issubclass(c, bpy.types.Panel) and getattr(c, "bl_parent_id", "")]
    assert order == ["Head", "Audio", "Style", "Generate", "Bake options", "Export"]

    def everything():
        drawn = []
        for cls in panels.CLASSES:
            if issubclass(cls, bpy.types.Panel):
                drawn += draw(cls, ctx)
        prefs = ctx.preferences.addons[ext.module].preferences
        drawn += draw(type(prefs), ctx, prefs)
        return drawn

    bpy.ops.object.select_all(action="DESELECT")
    ctx.view_layer.objects.active = None
    assert ("label", "Select or add a head mesh") in everything()
    cube = bpy.data.objects["Cube"]
    ctx.view_layer.objects.active = cube
    drawn = everything()
    # The shipped default model (models/default) is the model until another folder is chosen.
    assert any(d[0] == "label" and d[1].startswith("'Cube' does not fit the model (8 vs 5034")
               for d in drawn), drawn
    # The Head section says whether the selected mesh fits the model.
    head, obj = default_head(ext)
    (tmp_dir / "model").mkdir()  # the panel reads only config.json (no torch while drawing)
    (tmp_dir / "model" / "config.json").write_text(json.dumps(
        {"encoder": "logmel", "num_vertices": head.num_vertices, "topology": head.topology}))
    ctx.scene.imitator.model_folder = str(tmp_dir / "model")
    assert ("label", f"'{obj.name}' fits the model 'model'") in everything()
    ctx.view_layer.objects.active = cube
    drawn = everything()
    assert ("label", "'Cube' does not fit the model (8 vs 5034 vertices or other polygons)") in drawn
    ctx.scene.imitator.model_folder = str(tmp_dir / "missing")
    assert ("label", "Model: folder not found") in everything()
    assert ("operator", "imitator.generate") in drawn or any("Missing" in str(d) for d in drawn)
    # Packages missing: the Generate section offers the installer instead of the button.
    real = deps.missing_modules
    deps.missing_modules = lambda modules=deps.GENERATE_MODULES: ["torch"]
    try:
        drawn = draw(panels.IMITATOR_PT_generate, ctx)
    finally:
        deps.missing_modules = real
    assert ("operator", "imitator.install_dependencies") in drawn
    assert ("operator", "imitator.generate") not in drawn
    # While a Generate runs: its progress and a Cancel button; the status bar shows it too.
    state.generate_running, state.generate_progress, state.generate_status = True, 0.4, "running the model"
    state.generate_heartbeat = time.monotonic()
    deps.missing_modules = lambda modules=deps.GENERATE_MODULES: []
    try:
        drawn = draw(panels.IMITATOR_PT_generate, ctx)
    finally:
        deps.missing_modules = real
    assert ("progress", "running the model") in drawn and ("operator", "imitator.cancel_generate") in drawn
    log = []
    ops._draw_status_bar(SimpleNamespace(layout=FakeLayout(log)), ctx)
    assert ("progress", "Imitator: running the model") in log
    # An installer run with its log; the preferences list the pinned packages.
    state.install_running, state.install_progress, state.install_status = True, 0.5, "Collecting torch"
    state.install_log.add().text = "Collecting torch==2.13.0"
    drawn = everything()
    assert ("label", "Collecting torch==2.13.0") in drawn and ("progress", "Collecting torch") in drawn
    assert any(d[0] == "label" and d[1].startswith("torch") for d in drawn)


def test_one_undo_step_takes_the_whole_generate_back(ext, setup):
    """Undo needs a window; the PyPI bpy has one (no display), so undo runs headless through a
    context override, like Ctrl+Z after Generate. ``undo=True`` asks for the undo push Blender's
    UI does after an operator flagged UNDO."""
    name = setup.obj.name
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message="before Generate")
        before = snapshot()
        assert "UNDO" in bpy.types.IMITATOR_OT_generate.bl_options
        assert bpy.ops.imitator.generate("EXEC_DEFAULT", True) == {"FINISHED"}
        assert any(k.name.startswith("IM_") for k in bpy.data.objects[name].data.shape_keys.key_blocks)
        assert snapshot() != before
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert snapshot() == before  # keys, action, sound strip, frame range: all gone in one step
    with bpy.context.temp_override(window=window):
        assert bpy.ops.ed.redo() == {"FINISHED"}
    assert any(k.name.startswith("IM_") for k in bpy.data.objects[name].data.shape_keys.key_blocks)
