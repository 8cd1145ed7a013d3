"""An ARKit-rigged character named another way (a copy of the default head whose keys are renamed
snake_case / Character Creator style, a few removed) driven by name from the ARKit weights solved
on the model head; the mapping is matched, shown and edited; missing keys are listed, not fatal."""

import re

import bpy
import numpy as np
import pytest
from scene_setup import action_fcurves, generate_setup, sample_audio, snapshot


def rig_copy(obj, remove=("tongueOut", "cheekPuff", "noseSneerLeft")):
    """The default head with its ARKit keys renamed (jawOpen -> Jaw_Open, mouthSmileLeft -> mouth_smile_L ...)."""
    rig = obj.copy()
    rig.data = obj.data.copy()
    rig.name = "Rig"
    bpy.context.collection.objects.link(rig)
    blocks = rig.data.shape_keys.key_blocks
    for name in remove:
        rig.shape_key_remove(blocks[name])
    renamed = {}
    for i, kb in enumerate(list(blocks)[1:]):
        side = re.search(r"(Left|Right)$", kb.name)
        stem = kb.name[: side.start()] if side else kb.name
        words = re.sub(r"([A-Z])", r"_\1", stem).split("_")
        new = ("_".join(w.capitalize() for w in words) if i % 2 else "_".join(w.lower() for w in words))
        new += ("_L" if side.group(1) == "Left" else "_R") if side else ""
        renamed[kb.name] = new
        kb.name = new
    for o in bpy.context.view_layer.objects:
        o.select_set(o == rig)
    bpy.context.view_layer.objects.active = rig
    return rig, renamed


def test_arkit_named_rig_is_driven_by_name(ext, tmp_dir):
    s = generate_setup(ext, tmp_dir)
    scene = s.scene
    rig, renamed = rig_copy(s.obj)
    assert renamed["jawOpen"] in ("jaw_open", "Jaw_Open") and renamed["mouthSmileLeft"] in ("Mouth_Smile_L", "mouth_smile_L")
    jaw = renamed["jawOpen"]
    scene.imitator.bake_mode = "ARKIT"
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    action = rig.data.shape_keys.animation_data.action
    paths = sorted(fc.data_path for fc in action_fcurves(action))
    assert paths == sorted(f'key_blocks["{n}"].value' for n in renamed.values())  # 49 driven, none created
    assert not [k for k in rig.data.shape_keys.key_blocks if k.name.startswith("IM_")]
    # the keyed values are the ARKit weights solved on the model head
    anim = ext.mod("core.model.generate").generate_file(
        ext.mod("core.model.checkpoint").from_pretrained(s.folder), sample_audio(ext))
    weights, _ = ext.mod("core.arkit_fit").fit_arkit_weights(anim.vertices(slice(30, 31)), s.head)
    names = ext.mod("core.faces.default_head").ARKIT_SHAPE_NAMES
    fps = scene.render.fps / scene.render.fps_base
    scene.frame_set(int(round(scene.imitator.start_frame + 30 / anim.fps * fps)))
    t = (scene.frame_current - scene.imitator.start_frame) / fps * anim.fps
    assert abs(t - 30) < 1e-6
    got = np.array([rig.data.shape_keys.key_blocks[renamed[n]].value for n in names if n in renamed])
    want = np.array([weights[0, i] for i, n in enumerate(names) if n in renamed])
    assert np.abs(got - want).max() < 1e-3 and want.max() > 0.05
    # the mapping, matched and edited: the jaw key no longer driven
    assert bpy.ops.imitator.match_arkit_names() == {"FINISHED"}
    rows = {r.arkit: r for r in rig.imitator_arkit_map}
    assert len(rows) == 52 and rows["jawOpen"].key == jaw and rows["tongueOut"].key == ""
    rows["jawOpen"].key = ""
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    paths = {fc.data_path for fc in action_fcurves(rig.data.shape_keys.animation_data.action)}
    assert f'key_blocks["{jaw}"].value' not in paths and len(paths) == 48
    # a mesh with none of the names is refused and nothing changes
    rig.shape_key_clear()
    rig.imitator_arkit_map.clear()
    before = snapshot()
    with pytest.raises(RuntimeError, match="'Rig' has none of the 52 ARKit shape keys"):
        bpy.ops.imitator.generate()
    assert snapshot() == before

