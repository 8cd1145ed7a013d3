"""Bake correctness: evaluated vertices equal the animation at the scene's frames, any fps."""

import json

import bpy
import numpy as np
import pytest
from scene_setup import action_fcurves, evaluated


def to_blender(p):
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def make_head(ext, nx=12, ny=10):
    """A small wavy grid head (quads) in core coordinates."""
    Head = ext.mod("core.faces").Head
    x, y = np.meshgrid(np.linspace(-0.1, 0.1, nx), np.linspace(0, 0.2, ny))
    verts = np.stack([x.ravel(), y.ravel() + 1.5, 0.02 * np.sin(8 * x.ravel())], 1).astype(np.float32)
    idx = np.arange(nx * ny).reshape(ny, nx)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1)
    return Head("Grid", verts, np.full(len(quads) // 4, 4, np.int32), quads.astype(np.int32))


def make_object(ext, head):
    return ext.mod("imitator_blender.mesh").create_head_object(head, bpy.context, name="Grid")


def random_animation(ext, head, frames=45, keys=6, fps=30.0, seed=0):
    Animation = ext.mod("core.animation").Animation
    rng = np.random.default_rng(seed)
    basis = rng.normal(0, 0.004, (keys, head.num_vertices, 3)).astype(np.float32)
    weights = np.cumsum(rng.normal(0, 0.4, (frames, keys)), axis=0).astype(np.float32)
    bias = rng.normal(0, 0.001, (head.num_vertices, 3)).astype(np.float32)
    return Animation(head.vertices, basis, weights, bias, fps)


def expected_at(anim, seconds):
    """Independent reference: linear interpolation of the source vertices in time."""
    verts = anim.template + anim.bias + np.einsum("tk,kvc->tvc", anim.weights, anim.basis)
    s = np.clip(seconds * anim.fps, 0, anim.num_frames - 1)
    i0 = int(np.floor(s)); i1 = min(i0 + 1, anim.num_frames - 1); a = s - i0
    return to_blender((1 - a) * verts[i0] + a * verts[i1])


def set_fps(scene, fps, base=1.0):
    scene.render.fps, scene.render.fps_base = fps, base


def check_frames(obj, anim, scene, start, frames):
    fps = scene.render.fps / scene.render.fps_base
    worst = 0.0
    for f in frames:
        scene.frame_set(f)
        err = np.abs(evaluated(obj) - expected_at(anim, (f - start) / fps)).max()
        worst = max(worst, err)
    assert worst <= 1e-5, f"max error {worst} m at fps {fps}"
    return worst


@pytest.mark.parametrize("scene_fps", [(24, 1.0), (25, 1.0), (60, 1.0), (30, 1.0), (30000, 1001.0)])
def test_bake_matches_animation_at_scene_frames(ext, scene_fps):
    bake = ext.mod("imitator_blender.bake")
    head = make_head(ext)
    obj = make_object(ext, head)
    anim = random_animation(ext, head)
    scene = bpy.context.scene
    set_fps(scene, *scene_fps)
    start = 7
    result = bake.bake_animation(obj, anim, scene, start_frame=start)
    fps = scene_fps[0] / scene_fps[1]
    assert result.keys == anim.basis.shape[0] + 1  # + bias key
    assert scene.frame_start == start and scene.frame_end == start + result.frames - 1
    assert abs((result.frames - 1) / fps - (anim.num_frames - 1) / anim.fps) < 1 / fps
    frames = [start, start + 1, start + 5, start + 17, scene.frame_end - 1, scene.frame_end]
    check_frames(obj, anim, scene, start, frames)


def test_bake_survives_save_and_reopen(ext, tmp_dir):
    bake = ext.mod("imitator_blender.bake")
    head = make_head(ext)
    obj = make_object(ext, head)
    anim = random_animation(ext, head, seed=3)
    scene = bpy.context.scene
    set_fps(scene, 25)
    bake.bake_animation(obj, anim, scene, start_frame=1)
    name = obj.name
    path = str(tmp_dir / "baked.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    obj = bpy.data.objects[name]
    check_frames(obj, anim, scene, 1, [1, 2, 13, 30, scene.frame_end])


def test_rebake_replaces_only_its_own_keys_and_curves(ext):
    bake = ext.mod("imitator_blender.bake")
    head = make_head(ext)
    obj = make_object(ext, head)
    scene = bpy.context.scene
    set_fps(scene, 30)
    # The user's own key and keyframes must survive every bake.
    own = obj.shape_key_add(name="Smile", from_mix=False)
    own.value = 0.0
    own.keyframe_insert("value", frame=1)
    own.value = 1.0
    own.keyframe_insert("value", frame=10)
    user_action = obj.data.shape_keys.animation_data.action
    bake.bake_animation(obj, random_animation(ext, head, keys=6), scene, 1)
    first_names = set(obj.data.shape_keys.key_blocks.keys())
    anim2 = random_animation(ext, head, keys=4, seed=9)
    bake.bake_animation(obj, anim2, scene, 1)
    names = list(obj.data.shape_keys.key_blocks.keys())
    assert "Smile" in names and len([n for n in names if n.startswith("IM_")]) == 4 + 1
    assert not any(n.startswith("IM_0") and n not in first_names for n in names)
    assert obj.data.shape_keys.animation_data.action == user_action
    tag = json.loads(obj["imitator_bake"])
    assert len(tag["paths"]) == 4 and tag["made_action"] is False
    scene.frame_set(10)
    assert abs(obj.data.shape_keys.key_blocks["Smile"].value - 1.0) < 1e-6
    # Our curves are there once each, the user's curve too.
    paths = [fc.data_path for fc in action_fcurves(user_action)]
    assert sorted(paths) == sorted(tag["paths"] + ['key_blocks["Smile"].value'])
    # Clearing removes ours only.
    assert bake.remove_bake(obj)
    assert [n for n in obj.data.shape_keys.key_blocks.keys()] == ["Basis", "Smile"]
    paths = [fc.data_path for fc in action_fcurves(user_action)]
    assert paths == ['key_blocks["Smile"].value']
    assert "imitator_bake" not in obj


def test_bake_owns_and_removes_its_action_when_none_was_assigned(ext):
    bake = ext.mod("imitator_blender.bake")
    head = make_head(ext)
    obj = make_object(ext, head)
    before = set(bpy.data.actions.keys())
    bake.bake_animation(obj, random_animation(ext, head), bpy.context.scene, 1)
    made = set(bpy.data.actions.keys()) - before
    assert len(made) == 1
    bake.bake_animation(obj, random_animation(ext, head, seed=2), bpy.context.scene, 1)
    assert set(bpy.data.actions.keys()) - before == made  # replaced in place, no second action
    bake.remove_bake(obj)
    assert set(bpy.data.actions.keys()) == before


def test_raw_vertex_clip_is_baked_within_its_stated_error(ext):
    Animation = ext.mod("core.animation").Animation
    bake = ext.mod("imitator_blender.bake")
    head = make_head(ext)
    obj = make_object(ext, head)
    source = random_animation(ext, head, frames=40, keys=5)
    noise = np.random.default_rng(1).normal(0, 2e-6, (40, head.num_vertices, 3))
    clip = source.vertices() + noise
    anim = Animation.from_vertices(clip, head.vertices, fps=30.0)
    assert anim.max_error <= 1e-5 and anim.basis.shape[0] < 40
    scene = bpy.context.scene
    set_fps(scene, 30)
    bake.bake_animation(obj, anim, scene, 1)
    for f in (1, 9, 40):
        scene.frame_set(f)
        err = np.abs(evaluated(obj) - to_blender(clip[f - 1])).max()
        assert err <= 1e-5 + 1e-6, err


def expect_error(op, *words):
    """Operators that report an ERROR raise RuntimeError in background mode; check its one line."""
    with pytest.raises(RuntimeError) as info:
        op()
    message = str(info.value).strip()
    assert "\n" not in message and all(w in message for w in words), message


def test_bad_objects_change_nothing(ext):
    head = make_head(ext)
    obj = make_object(ext, head)
    other = make_object(ext, make_head(ext, nx=5, ny=5))
    anim = random_animation(ext, head)
    path = __import__("os").environ["IMITATOR_TMP"] + "/anim.npz"
    anim.save(path)
    scene = bpy.context.scene
    scene.imitator.animation_path = path
    # Wrong vertex count: cancelled, the mesh keeps only its Basis key, no action is made.
    bpy.context.view_layer.objects.active = other
    actions = len(bpy.data.actions)
    expect_error(bpy.ops.imitator.bake_animation_file, f"'{other.name}'", "vertices")
    assert list(other.data.shape_keys.key_blocks.keys()) == ["Basis"]
    assert len(bpy.data.actions) == actions
    # Not a mesh.
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.collection.objects.link(cam)
    bpy.context.view_layer.objects.active = cam
    expect_error(bpy.ops.imitator.bake_animation_file, "'Cam'", "not a mesh")
    expect_error(bpy.ops.imitator.bake_test_motion, "'Cam'", "not a mesh")
    # Missing and corrupt files.
    bpy.context.view_layer.objects.active = obj
    scene.imitator.animation_path = path + ".missing"
    expect_error(bpy.ops.imitator.bake_animation_file, "anim.npz.missing", "not found")
    with open(path + ".bad", "wb") as f:
        f.write(b"not a zip")
    scene.imitator.animation_path = path + ".bad"
    expect_error(bpy.ops.imitator.bake_animation_file, "anim.npz.bad", "not an .npz archive", "export the animation again")
    assert list(obj.data.shape_keys.key_blocks.keys()) == ["Basis"]
    # The right file bakes.
    scene.imitator.animation_path = path
    assert bpy.ops.imitator.bake_animation_file() == {"FINISHED"}
    assert len(obj.data.shape_keys.key_blocks) == 1 + 6 + 1
