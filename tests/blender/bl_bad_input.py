"""Bad input through the Blender operators: hostile FLAME files, broken models, audio, animation
files, style profiles and clips each give one line naming the file and the fix, and leave the scene
and the extension's user folder as they were. The process runs with its address space capped at
what it uses plus 2 GiB, so a memory bomb that got through would fail here instead of the session.
"""

import os
import resource
import shutil
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from scene_setup import (default_head, ensure_runtime_packages, expect_error, sample_audio, snapshot,
                         tiny_model, user_folder)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hostile  # noqa: E402


def vm_size() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module")
def world(ext):
    tmp_dir = Path(os.environ["IMITATOR_TMP"])
    ensure_runtime_packages(ext)
    head, obj = default_head(ext)
    scene = bpy.context.scene
    folder = tiny_model(ext, head, tmp_dir / "model")
    scene.imitator.model_folder = str(folder)
    scene.imitator.audio_path = sample_audio(ext)
    import torch  # noqa: F401 - loaded before the cap is measured
    ext.mod("core.model.checkpoint").from_pretrained(folder)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (2 << 30), hard))
    yield {"head": head, "obj": obj, "model": folder, "tmp": tmp_dir}
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def nan_model(world):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    folder = world["tmp"] / "nan-model"
    if not folder.exists():
        shutil.copytree(world["model"], folder)
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            meta = f.metadata()
        state = load_file(folder / "model.safetensors")
        state["motion_decoder.final.bias"][3] = float("inf")
        save_file(state, folder / "model.safetensors", metadata=meta)
    return folder


def write(world, name, data):
    path = world["tmp"] / name
    path.write_bytes(data)
    return str(path)


def header_only_wav():
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(0, np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def flame(world, name, data):
    return bpy.ops.imitator.add_flame_head, {"filepath": write(world, name, data)}


def generate_audio(world, name, data):
    bpy.context.scene.imitator.audio_path = write(world, name, data)
    return bpy.ops.imitator.generate, {}


def generate_model(world):
    bpy.context.scene.imitator.model_folder = str(nan_model(world))
    return bpy.ops.imitator.generate, {}


def animation(world, name, data):
    return bpy.ops.imitator.bake_animation_file, {"filepath": write(world, name, data)}


def style_import(world, name, data):
    return bpy.ops.imitator.style_import, {"filepath": write(world, name, data)}


def adapt_clip(world, name, data):
    settings = bpy.context.scene.imitator_adapt
    settings.source, settings.clip_path = "FILE", write(world, name, data)
    return bpy.ops.imitator.adapt_style, {"model_dir": str(world["model"])}


CASES = {
    "flame-bytearray-bomb": (lambda w: flame(w, "bomb.pkl", hostile.bytearray_bomb()),
                             ("bomb.pkl", "refused to load"), "use the official file"),
    "flame-object-array-bomb": (lambda w: flame(w, "arr.pkl", hostile.object_array_bomb()),
                                ("arr.pkl", "numpy array would take"), "use the official file"),
    "flame-deep": (lambda w: flame(w, "deep.pkl", hostile.deep_bomb()), ("deep.pkl", "nested"),
                   "use the official file"),
    "flame-canary": (lambda w: flame(w, "code.pkl", hostile.code_pickle()),
                     ("code.pkl", "hostile.canary"), "use the official file"),
    "flame-random-npz": (lambda w: flame(w, "flame.npz", np.random.default_rng(0).bytes(999)),
                         ("flame.npz", "not an .npz archive"), "numpy.savez"),
    "flame-npz-bomb": (lambda w: flame(w, "bomb.npz", hostile.forged_npz()), ("bomb.npz", "refused"),
                       "re-export it"),
    "generate-nan-model": (generate_model, ("model.safetensors", "NaN or Inf"), "train it again"),
    "generate-text-mp3": (lambda w: generate_audio(w, "speech.mp3", b"lines of my script\n" * 9),
                          ("speech.mp3", "text file"), "convert it to WAV"),
    "generate-no-samples": (lambda w: generate_audio(w, "empty.wav", header_only_wav()),
                            ("empty.wav", "holds no samples"), "recording with speech"),
    "generate-random-wav": (lambda w: generate_audio(w, "noise.wav", np.random.default_rng(1).bytes(4000)),
                            ("noise.wav", "not a readable audio file"), "convert it to WAV"),
    "animation-random": (lambda w: animation(w, "anim.npz", b"\x93NUMPY" + bytes(100)),
                         ("anim.npz", "not an .npz archive"), "export the animation again"),
    "animation-bomb": (lambda w: animation(w, "anim2.npz", hostile.forged_npz()),
                       ("anim2.npz", "refused to load"), "export the animation again"),
    "style-import-text": (lambda w: style_import(w, "notes.imstyle", b"just text " * 20),
                          ("notes.imstyle", "not a style profile"), "made by Adapt Style"),
    "adapt-random-npz": (lambda w: adapt_clip(w, "take.npz", np.random.default_rng(2).bytes(3000)),
                         ("take.npz", "not an .npz archive"), "re-export the clip"),
    "adapt-npz-bomb": (lambda w: adapt_clip(w, "take2.npz", hostile.forged_npz()),
                       ("take2.npz", "refused to load"), "re-export the clip"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_operator_refuses_with_one_line_and_changes_nothing(ext, world, name):
    build, words, fix = CASES[name]
    scene = bpy.context.scene
    saved = (scene.imitator.audio_path, scene.imitator.model_folder)
    bpy.context.view_layer.objects.active = world["obj"]
    try:
        op, kwargs = build(world)
        before = (snapshot(), user_folder(ext))
        calls = len(hostile.CANARY_CALLS)
        message = expect_error(op, *words, fix, **kwargs)
        assert (snapshot(), user_folder(ext)) == before, message
        assert len(hostile.CANARY_CALLS) == calls and "out of memory" not in message
    finally:
        scene.imitator.audio_path, scene.imitator.model_folder = saved
        scene.imitator_adapt.source = "OBJECT"
