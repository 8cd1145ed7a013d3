"""Shared by the Generate/Export cases: the runtime packages, the default head, a tiny model.

The 4.2 LTS test environment holds only bpy, numpy and scipy (like a fresh Blender). Its Generate
cases use the pinned torch & co of the main test venv, made visible the way the dependency
installer does it: a package set in the extension's ``deps`` folder named by ``active.json``,
appended to sys.path by ``dependencies.activate`` (the function register() calls).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MAIN_SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
MOUTH_KEYS = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft", "mouthRollLower")
TINY = {"encoder": "logmel", "encoder_options": {"dim": 16, "n_mels": 20}, "feature_dim": 16,
        "ff_dim": 32, "window": 80, "overlap": 20}


def ensure_runtime_packages(ext) -> None:
    deps = ext.mod("imitator_blender.dependencies")
    if not deps.missing_modules():
        return
    root = ext.mod("imitator_blender.preferences").user_dir("deps")
    link = root / "set-test-venv"
    if not link.exists():
        link.symlink_to(MAIN_SITE, target_is_directory=True)
    (root / deps.ACTIVE).write_text(json.dumps({"folder": link.name}))
    deps.activate(root)
    assert not deps.missing_modules(), deps.missing_modules()


def default_head(ext):
    """The default head (core data) and a new scene object of it, active and selected."""
    head = ext.mod("core.faces.default_head").load_default_head(
        ext.mod("imitator_blender.preferences").user_dir("cache"))
    assert bpy.ops.imitator.add_default_head() == {"FINISHED"}
    return head, bpy.context.active_object


def tiny_model(ext, head, folder: Path, seed: int = 0, num_vertices: int | None = None) -> Path:
    """A tiny random model on ``head`` whose output moves the mouth through the ARKit keys
    (a random model's last layer is zero: it would not move at all)."""
    import torch

    model_mod = ext.mod("core.model")
    V = num_vertices or head.num_vertices
    config = model_mod.ImitatorConfig(**TINY, num_vertices=V, styles=["a", "b"],
                                      topology=head.topology if V == head.num_vertices else "")
    torch.manual_seed(seed)
    model = model_mod.Imitator(config)
    if V == head.num_vertices:
        keys = torch.tensor(np.stack([head.shape_keys[n].reshape(-1) for n in MOUTH_KEYS], 1))  # (3V, 6)
        mix = torch.randn(len(MOUTH_KEYS), config.feature_dim) * 0.5
        with torch.no_grad():
            model.motion_decoder.final.weight.copy_(keys @ mix)
            model.motion_decoder.final.bias.copy_(keys[:, 0] * 0.05)  # a small constant: the bias key
            model.template.copy_(torch.tensor(head.vertices))
    model.save_pretrained(folder)
    return folder


def generate_setup(ext, tmp_dir: Path):
    """The runtime packages, the default head (active), a tiny model on it and the sample audio
    chosen: what a Generate case starts from."""
    from types import SimpleNamespace

    ensure_runtime_packages(ext)
    head, obj = default_head(ext)
    folder = tiny_model(ext, head, tmp_dir / "model")
    scene = bpy.context.scene
    scene.imitator.model_folder = str(folder)
    scene.imitator.audio_path = sample_audio(ext)
    return SimpleNamespace(head=head, obj=obj, folder=folder, scene=scene)


def sample_audio(ext) -> str:
    return str(ext.mod("imitator_blender.preferences").SAMPLE_AUDIO)


def evaluated(obj) -> np.ndarray:
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def action_fcurves(action):
    if hasattr(action, "layers"):
        return [fc for layer in action.layers for s in layer.strips for b in s.channelbags for fc in b.fcurves]
    return list(action.fcurves)


def all_strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return []
    return list(editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all)


def snapshot(scene=None) -> dict:
    """Everything a Generate may change, to compare before/after a refused or cancelled one."""
    scene = scene or bpy.context.scene
    objects = {}
    for o in bpy.data.objects:
        keys = o.data.shape_keys if o.type == "MESH" else None
        objects[o.name] = {
            "props": sorted(o.keys()),
            "keys": [(kb.name, round(kb.value, 6)) for kb in keys.key_blocks] if keys else [],
            "action": keys.animation_data.action.name if keys and keys.animation_data and keys.animation_data.action else None,
        }
    return {
        "objects": objects,
        "actions": sorted((a.name, len(action_fcurves(a))) for a in bpy.data.actions),
        "strips": sorted((s.name, s.frame_start, s.channel) for s in all_strips(scene)),
        "frames": (scene.frame_start, scene.frame_end, scene.render.fps, scene.render.fps_base),
        "sounds": len(bpy.data.sounds),
    }


def user_folder(ext) -> dict:
    """Every file of the extension's user folder (the runtime package link excluded): hashes."""
    root = ext.mod("imitator_blender.preferences").user_dir()
    state = {}
    for path in sorted(root.rglob("*")):
        if "deps" in path.relative_to(root).parts[:1]:
            continue
        state[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest() \
            if path.is_file() else "dir"
    return state


def expect_error(op, *words, **kwargs):
    """Operators that report an ERROR raise RuntimeError in background mode: one line, with words."""
    import pytest

    with pytest.raises(RuntimeError) as info:
        op(**kwargs)
    message = str(info.value).strip()
    assert "\n" not in message and all(w in message for w in words), message
    return message
