"""Styles in Blender: Adapt Style from an animated object, the style list (rename, delete, import,
export), cancel, bad input. A tiny random model on a small grid head; the "actor" is the model
with another style vector, baked onto the head as shape-key animation. Two cases only: each case
is a fresh process, and torch's first optimizer step costs seconds in every one.

Headless Blender has no event loop, so the modal path is driven through the same ``AdaptRun`` the
modal operator uses (start, update from a loop, cancel); ``bpy.ops.imitator.adapt_style()`` runs
the same job and waits for it.
"""

import time
from pathlib import Path

import bpy
import numpy as np
import pytest
from scene_setup import ensure_runtime_packages, expect_error

SR = 16000


def grid_head(ext, nx=8, ny=6):
    Head = ext.mod("core.faces").Head
    x, y = np.meshgrid(np.linspace(-0.08, 0.08, nx), np.linspace(0, 0.15, ny))
    verts = np.stack([x.ravel(), y.ravel() + 1.5, 0.02 * np.cos(9 * x.ravel())], 1).astype(np.float32)
    idx = np.arange(nx * ny).reshape(ny, nx)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1)
    return Head("Grid", verts, np.full(len(quads) // 4, 4, np.int32), quads.astype(np.int32))


def speech_like(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)) * rng.normal(size=t.size)).astype(np.float32)


class Scene:
    """A tiny model saved to disk, its head as an object animated in the actor's style, the speech."""

    def __init__(self, ext, tmp_dir, seconds=3.0, seed=0):
        ensure_runtime_packages(ext)  # the 4.2 LTS venv has no torch: the main venv's, as installed deps
        import torch

        self.ext = ext
        core = lambda name: ext.mod(f"core.{name}")  # noqa: E731
        self.head = grid_head(ext)
        torch.manual_seed(seed)
        config = core("model").ImitatorConfig(
            encoder="logmel", encoder_options={"dim": 16, "n_mels": 20}, feature_dim=16, ff_dim=32,
            num_vertices=self.head.num_vertices, styles=["ann", "bob", "cat"], window=200, overlap=20,
            topology=self.head.topology)
        model = core("model").Imitator(config).eval()
        with torch.no_grad():
            torch.nn.init.normal_(model.motion_decoder.final.weight, std=0.002)
            model.template.copy_(torch.from_numpy(self.head.vertices))
        self.model_dir = Path(tmp_dir) / "model"
        model.save_pretrained(self.model_dir)
        self.model = model
        table = model.style_embedding.weight.detach().t()
        g = torch.Generator().manual_seed(5)
        self.style = table[0] + 0.8 * table.std() * torch.randn(table.shape[1], generator=g)

        self.generate = core("model.generate").generate
        self.audio = speech_like(seconds, 1)
        anim = self.generate(model, self.audio, SR, self.style)
        self.wav = Path(tmp_dir) / "speech.wav"
        core("audio").save_wav(self.wav, self.audio, SR)

        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = 30, 1.0
        scene.imitator.model_folder = str(self.model_dir)  # the Generate section's model: Adapt's too
        self.obj = ext.mod("imitator_blender.mesh").create_head_object(self.head, bpy.context, name="Actor")
        ext.mod("imitator_blender.bake").bake_animation(self.obj, anim, scene, 1.0)
        scene.frame_start, scene.frame_end = 1, anim.num_frames
        scene.frame_set(7)
        settings = scene.imitator_adapt
        settings.source, settings.style_name = "OBJECT", "Actor Style"
        settings.steps1, settings.steps2 = 150, 60
        settings.transcript = "mama made a map"
        if bpy.app.build_options.audaspace:  # the speech as a sound strip, as a user has it
            editor = scene.sequence_editor_create()
            strips = editor.strips if hasattr(editor, "strips") else editor.sequences
            strips.new_sound("speech", str(self.wav), 2, 1)
        else:  # the PyPI 4.2 wheel has no audio: the file instead
            settings.audio_path = str(self.wav)

    @property
    def styles(self):
        return self.ext.mod("imitator_blender.style_ui").styles_dir()

    def files(self):
        return sorted(p.name for p in self.styles.iterdir())

    def listed(self):
        wm = bpy.context.window_manager
        return [(item.name, item.filename) for item in wm.imitator_styles], wm.imitator_style_index

    def obj_frames(self):
        ops = self.ext.mod("imitator_blender.style_operators")
        scene = bpy.context.scene
        return ops.read_object_frames(bpy.context, self.obj, scene.frame_start, scene.frame_end)


class FakeLayout:
    """Records a panel draw and checks what it names: properties, operators, list types, icons
    (a headless Blender cannot draw; a typo there would only show in the UI)."""

    ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, calls):
        self.calls, self.enabled = calls, True

    def column(self, **_):
        return self

    row = box = column

    def separator(self, **_):
        pass

    def _icon(self, icon):
        assert icon in self.ICONS, icon

    def label(self, text="", icon="NONE"):
        self._icon(icon)
        self.calls.append(("label", text))

    def prop(self, data, name, icon="NONE", **_):
        self._icon(icon)
        assert name in data.bl_rna.properties, name
        self.calls.append(("prop", name))

    def operator(self, idname, icon="NONE", **_):
        self._icon(icon)
        module, name = idname.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # KeyError if not registered
        self.calls.append(("operator", idname))

    def template_list(self, listtype, list_id, data, prop, active_data, active_prop, **_):
        assert hasattr(bpy.types, listtype) and prop in data.bl_rna.properties
        assert active_prop in active_data.bl_rna.properties
        self.calls.append(("list", prop))


def evaluated_core(obj):
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    return np.stack([co[:, 0], co[:, 2], -co[:, 1]], 1)  # Blender -> core axes


def rms_to_actor(scene, style, seed=7):
    audio = speech_like(2.0, seed)
    gt = scene.generate(scene.model, audio, SR, scene.style).vertices()
    pred = scene.generate(scene.model, audio, SR, style).vertices()
    return float(np.sqrt(((pred - gt) ** 2).sum(-1).mean()))


def test_adapt_from_an_animated_object_generate_with_it_and_manage_the_list(ext, tmp_dir):
    s = Scene(ext, tmp_dir)
    frames = s.obj_frames()
    assert np.abs(frames[0] - frames[len(frames) // 2]).max() > 1e-4  # the actor does move
    keys_before = [kb.name for kb in s.obj.data.shape_keys.key_blocks]

    assert bpy.ops.imitator.adapt_style() == {"FINISHED"}
    assert s.files() == ["Actor Style.imstyle"]
    assert s.listed() == ([("Actor Style", "Actor Style.imstyle")], 0)
    wm = bpy.context.window_manager
    assert "Actor Style" in wm.imitator_style_status and not wm.imitator_style_busy
    assert bpy.context.scene.frame_current == 7  # the scene is as it was
    assert [kb.name for kb in s.obj.data.shape_keys.key_blocks] == keys_before
    ui = ext.mod("imitator_blender.style_ui")
    path = ui.selected_style_path(bpy.context)
    assert path == s.styles / "Actor Style.imstyle"

    profile = ext.mod("core.style.profile").load_style_profile(path, s.model)
    meta = profile.meta
    assert meta["topology"] == s.head.topology and meta["stages"] == 2 and meta["base_model_name"] == "model"
    assert meta["clip"] == "object 'Actor'" and meta["clip_seconds"] == pytest.approx(3.0, abs=0.05)
    assert meta["closures"]["source"] in ("aligned", "recognized")
    assert meta["losses"]["stage2"]["held_out"]["total"] < 0.2 * meta["losses"]["initial"]["held_out"]["total"]
    generic = s.model.style_embedding.weight.detach().t().mean(0)
    assert rms_to_actor(s, profile) < 0.5 * rms_to_actor(s, generic)

    # Generate (the operator) uses the new style, selected in the list, on other speech
    other = Path(tmp_dir) / "other.wav"
    ext.mod("core.audio").save_wav(other, speech_like(2.0, 11), SR)
    scene = bpy.context.scene
    scene.imitator.audio_path = str(other)
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    generate_file = ext.mod("core.model.generate").generate_file
    styled = generate_file(s.model, other, style=profile).vertices()
    plain = generate_file(s.model, other).vertices()
    scene.frame_set(scene.frame_start + 30)  # 1 s in: model frame 30
    co = evaluated_core(s.obj)
    assert np.abs(co - styled[30]).max() < 2e-5
    assert np.abs(co - plain[30]).max() > 1e-4
    scene.frame_set(7)

    # the panel section and the list rows name only what exists
    calls = []
    ui.draw_style_section(FakeLayout(calls), bpy.context)
    for source in ("FILE", "OBJECT"):
        bpy.context.scene.imitator_adapt.source = source
        ui.draw_style_section(FakeLayout(calls), bpy.context)
    assert ("operator", "imitator.adapt_style") in calls and ("prop", "clip_path") in calls
    item = wm.imitator_styles[0]
    ui.IMITATOR_UL_styles.draw_item(None, bpy.context, FakeLayout(calls), wm, item, 0, wm,
                                    "imitator_style_index")

    # the list survives a restart: it is rebuilt from the folder
    wm.imitator_styles.clear()
    ui._refresh_after_load()
    assert s.listed() == ([("Actor Style", "Actor Style.imstyle")], 0)

    # export, import (twice: a free name), rename (operator and typed into the list), delete
    out = Path(tmp_dir) / "exported" / "copy.imstyle"
    out.parent.mkdir()
    assert bpy.ops.imitator.style_export(filepath=str(out)) == {"FINISHED"}
    assert out.read_bytes() == path.read_bytes()
    assert bpy.ops.imitator.style_import(filepath=str(out)) == {"FINISHED"}
    assert bpy.ops.imitator.style_import(filepath=str(out)) == {"FINISHED"}
    assert s.files() == ["Actor Style.imstyle", "copy.001.imstyle", "copy.imstyle"]
    assert s.listed() == ([("Actor Style", "Actor Style.imstyle"), ("copy", "copy.imstyle"),
                           ("copy.001", "copy.001.imstyle")], 2)
    assert bpy.ops.imitator.style_rename(new_name="Second") == {"FINISHED"}
    assert s.files() == ["Actor Style.imstyle", "Second.imstyle", "copy.imstyle"]
    assert [i.name for i in wm.imitator_styles] == ["Actor Style", "copy", "Second"]  # by name, any case
    assert wm.imitator_style_index == 2  # the renamed style stays selected
    wm.imitator_styles[1].name = "First"  # typed into the list: the file follows on the next refresh
    assert ui._is_stale(wm)  # a draw now schedules that refresh (the timer runs ui._refresh_timer)
    ui._refresh_timer()
    assert s.files() == ["Actor Style.imstyle", "First.imstyle", "Second.imstyle"]
    assert "Renamed style 'copy' to 'First'" in wm.imitator_style_status
    wm.imitator_styles[0].name = "Second"  # taken: refused, the old name comes back
    ui._refresh_timer()
    assert wm.imitator_styles[0].name == "Actor Style" and "exists already" in wm.imitator_style_status
    wm.imitator_styles[0].name = "a/b"
    ui._refresh_timer()
    assert wm.imitator_styles[0].name == "Actor Style" and "cannot hold" in wm.imitator_style_status
    expect_error(bpy.ops.imitator.style_rename, "cannot hold", new_name="x:y")
    assert s.files() == ["Actor Style.imstyle", "First.imstyle", "Second.imstyle"]

    wm.imitator_style_index = [i.name for i in wm.imitator_styles].index("First")
    assert bpy.ops.imitator.style_delete() == {"FINISHED"}
    assert s.files() == ["Actor Style.imstyle", "Second.imstyle"]
    assert [i.name for i in wm.imitator_styles] == ["Actor Style", "Second"]

    bad = Path(tmp_dir) / "bad.imstyle"
    bad.write_bytes(path.read_bytes()[:-10])
    expect_error(bpy.ops.imitator.style_import, "bad.imstyle", "truncated", filepath=str(bad))
    expect_error(bpy.ops.imitator.style_import, "not a style profile", filepath=str(s.wav))
    assert s.files() == ["Actor Style.imstyle", "Second.imstyle"]

    (s.styles / "Dropped In.imstyle").write_bytes(path.read_bytes())  # copied in by hand
    wm.imitator_style_index = 1
    assert bpy.ops.imitator.style_refresh() == {"FINISHED"}
    assert [i.name for i in wm.imitator_styles] == ["Actor Style", "Dropped In", "Second"]
    assert wm.imitator_style_index == 2  # "Second" stays selected


def test_cancel_and_bad_input_leave_the_folder_list_and_scene_as_they_were(ext, tmp_dir):
    s = Scene(ext, tmp_dir, seconds=2.0)
    model = str(s.model_dir)
    settings = bpy.context.scene.imitator_adapt
    settings.lip_closures = False
    (s.styles / "Kept.imstyle").write_bytes(b"not checked here")  # something to keep
    ext.mod("imitator_blender.style_ui").refresh_styles(bpy.context.window_manager)
    before = (s.files(), s.listed())

    # Esc during stage 1: what invoke() and modal() do, driven from a loop
    settings.steps1 = settings.steps2 = 5000
    ops = ext.mod("imitator_blender.style_operators")
    run = ops.AdaptRun.start(bpy.context, model)
    wm = bpy.context.window_manager
    assert wm.imitator_style_busy
    deadline = time.monotonic() + 60
    while "Stage 1" not in run.job.progress.text:
        assert not run.update(bpy.context) and time.monotonic() < deadline, run.job.error
        time.sleep(0.02)
    run.cancel(bpy.context)
    assert run.job.wait(30) and run.job.cancelled
    assert run.finish(bpy.context)[0] == {"CANCELLED"}
    assert (s.files(), s.listed()) == before
    assert not wm.imitator_style_busy and "cancelled" in wm.imitator_style_status
    assert bpy.context.scene.frame_current == 7

    # bad input: one line naming the object or the file, nothing written
    settings.steps1, settings.steps2 = 20, 0
    adapt = bpy.ops.imitator.adapt_style
    clips = ext.mod("core.data.clips")
    frames = s.obj_frames()
    still = ext.mod("imitator_blender.mesh").create_head_object(s.head, bpy.context, name="Still")
    expect_error(adapt, "'Still'", "no animation", model_dir=model)

    nan = frames.copy()
    nan[5, 3] = np.nan
    clips.save_clip_npz(Path(tmp_dir) / "nan.npz", clips.Clip(nan, 30.0, s.audio, SR))
    clips.save_clip_npz(Path(tmp_dir) / "short.npz", clips.Clip(frames[:20], 30.0, s.audio[:SR * 2 // 3], SR))
    clips.save_clip_npz(Path(tmp_dir) / "static.npz", clips.Clip(np.repeat(frames[:1], 60, 0), 30.0, s.audio, SR))
    clips.save_clip_npz(Path(tmp_dir) / "mute.npz", clips.Clip(frames, 30.0))
    settings.source, settings.audio_path = "FILE", ""
    for name, words in (("nan.npz", ("NaN", "frame 5")), ("short.npz", ("0.67 s",)), ("static.npz", ("static",)),
                        ("mute.npz", ("no audio",)), ("missing.npz", ("not found",))):
        settings.clip_path = str(Path(tmp_dir) / name)
        expect_error(adapt, name, *words, model_dir=model)
    expect_error(adapt, "no model there", model_dir=str(tmp_dir))
    settings.style_name = "a/b"
    expect_error(adapt, "cannot hold", model_dir=model)

    other = grid_head(ext, nx=6, ny=8)  # as many vertices, other faces: another topology
    obj = ext.mod("imitator_blender.mesh").create_head_object(other, bpy.context, name="Other")
    ext.mod("imitator_blender.bake").bake_animation(obj, s.generate(s.model, s.audio, SR, s.style),
                                                    bpy.context.scene, 1.0)
    settings.source, settings.style_name, settings.audio_path = "OBJECT", "ok", str(s.wav)
    expect_error(adapt, "'Other'", "topology", model_dir=model)

    assert (s.files(), s.listed()) == before and not wm.imitator_style_busy
    assert still.name in bpy.data.objects
