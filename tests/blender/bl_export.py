"""Exports of a Generate: npz, OBJ sequence and ARKit CSV read back to what Blender plays."""

import json

import bpy
import numpy as np
from scene_setup import default_head, ensure_runtime_packages, evaluated, expect_error, sample_audio, tiny_model


def to_core(p):
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def test_exports_round_trip(ext, tmp_dir):
    ensure_runtime_packages(ext)
    Animation = ext.mod("core.animation").Animation
    read_obj = ext.mod("core.data.meshfiles").read_obj_vertices
    read_csv = ext.mod("core.data.livelink").read_arkit_csv
    ARKIT = ext.mod("core.faces.default_head").ARKIT_SHAPE_NAMES
    head, obj = default_head(ext)
    scene = bpy.context.scene
    scene.imitator.model_folder = str(tiny_model(ext, head, tmp_dir / "model"))
    audio = ext.mod("core.audio")  # the first 2.5 s of the sample keep this case quick
    audio.save_wav(tmp_dir / "short.wav", audio.load_audio(sample_audio(ext))[:40000], 16000, "PCM_16")
    scene.imitator.audio_path = str(tmp_dir / "short.wav")
    scene.render.fps = 25
    scene.imitator.start_frame = 5

    # Nothing baked yet: one clear message, no file.
    expect_error(bpy.ops.imitator.export_npz, "has no Imitator bake", filepath=str(tmp_dir / "none.npz"))
    assert not (tmp_dir / "none.npz").exists()

    assert bpy.ops.imitator.generate() == {"FINISHED"}
    frames = [5, 6, 30, 65]
    played = {}
    for f in frames:
        scene.frame_set(f)
        played[f] = to_core(evaluated(obj))  # what Blender shows, in core coordinates

    # npz: the exact animation at the scene's fps, from the start frame.
    assert bpy.ops.imitator.export_npz(filepath=str(tmp_dir / "anim.npz")) == {"FINISHED"}
    anim = Animation.load(tmp_dir / "anim.npz")
    assert anim.fps == 25 and anim.basis.shape[0] == 16
    for f in frames:
        assert np.abs(anim.vertices(slice(f - 5, f - 4))[0] - played[f]).max() < 1e-5

    # OBJ sequence: one file per frame with the head's faces, the audio and clip.json.
    out = tmp_dir / "objs"
    assert bpy.ops.imitator.export_obj_sequence(filepath=str(out)) == {"FINISHED"}
    objs = sorted(out.glob("frame_*.obj"))
    assert len(objs) == anim.num_frames and json.loads((out / "clip.json").read_text())["fps"] == 25
    assert np.abs(read_obj(objs[25]) - played[30]).max() < 1e-5
    assert sum(line.startswith("f ") for line in objs[0].read_text().splitlines()) == len(obj.data.polygons)
    assert (out / "audio.wav").stat().st_size > 100_000  # 2.5 s, 32-bit float
    # A second export into the same folder is refused unless asked to replace it.
    expect_error(bpy.ops.imitator.export_obj_sequence, "already exists", filepath=str(out))
    assert bpy.ops.imitator.export_obj_sequence(filepath=str(out), overwrite=True) == {"FINISHED"}

    # ARKit CSV of an exact bake: fitted onto the head's ARKit keys (Live Link Face layout).
    assert bpy.ops.imitator.export_arkit_csv(filepath=str(tmp_dir / "exact.csv")) == {"FINISHED"}
    header = (tmp_dir / "exact.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert header[16:20] == ["JawForward", "JawRight", "JawLeft", "JawOpen"]  # ARKit's enum order

    # ARKit CSV of an ARKit-key bake: exactly the keyed weights.
    scene.imitator.bake_mode = "ARKIT"
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    assert bpy.ops.imitator.export_arkit_csv(filepath=str(tmp_dir / "arkit.csv")) == {"FINISHED"}
    take = read_csv(tmp_dir / "arkit.csv", fps=25)
    scene.frame_set(30)
    keys = obj.data.shape_keys.key_blocks
    assert np.abs(take.weights[25] - [keys[n].value for n in ARKIT]).max() < 1e-6
    assert len(take.weights) == anim.num_frames

    # An ARKit CSV needs ARKit keys.
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    ext.mod("imitator_blender.bake").bake_animation(
        cube, Animation(to_core(np.array([v.co for v in cube.data.vertices])), np.ones((1, 8, 3), np.float32) * 0.01,
                        np.zeros((3, 1), np.float32), np.zeros((8, 3), np.float32), 25.0), scene, 1)
    expect_error(bpy.ops.imitator.export_arkit_csv, "no ARKit shape keys", filepath=str(tmp_dir / "cube.csv"))
    assert not (tmp_dir / "cube.csv").exists()
