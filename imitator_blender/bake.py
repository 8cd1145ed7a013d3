"""Bake an Animation onto a mesh as shape keys + keyframes (exact, vectorized, replaceable).

Each basis vector of the animation becomes one shape key and one linear F-curve sampled at the
scene's frames; a constant "bias" key holds the mean offset. Everything created is recorded in a
tag on the object so a later bake removes only its own keys and curves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import bpy
import numpy as np

from ..core.animation import Animation
from .mesh import core_to_blender, key_coords, require_mesh

TAG = "imitator_bake"
KEY_PREFIX = "IM_"
BIAS_KEY = "IM_bias"
SLOTTED_ACTIONS = bpy.app.version >= (4, 4, 0)


@dataclass
class BakeResult:
    keys: int
    frames: int
    frame_start: int
    frame_end: int
    max_error: float  # metres, from the animation's compression


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def bake_animation(obj: bpy.types.Object, anim: Animation, scene: bpy.types.Scene,
                   start_frame: float = 1.0, name: str = "Imitator") -> BakeResult:
    """Replace this object's previous Imitator bake with ``anim`` starting at ``start_frame``."""
    require_mesh(obj, anim.num_vertices)  # validate before touching anything
    anim = anim.normalized()
    remove_bake(obj)

    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    key = obj.data.shape_keys
    rest = key_coords(key.reference_key)  # (V, 3) Blender axes
    basis = core_to_blender(anim.basis)  # (K, V, 3)

    names = [f"{KEY_PREFIX}{k:02d}" for k in range(anim.basis.shape[0])]
    for name_k, offset in zip(names, basis):
        _add_key(obj, name_k, rest + offset, slider=(-1.0, 1.0), value=0.0)
    created = list(names)
    if np.any(anim.bias != 0):
        _add_key(obj, BIAS_KEY, rest + core_to_blender(anim.bias), slider=(0.0, 1.0), value=1.0)
        created.append(BIAS_KEY)

    # Sample the weights at the scene's frames: frame f shows time (f - start) / fps.
    fps = scene_fps(scene)
    count = max(1, math.floor((anim.num_frames - 1) / anim.fps * fps + 1e-9) + 1)
    frames = start_frame + np.arange(count, dtype=np.float64)
    weights = anim.weights_at(np.arange(count) / fps)  # (count, K)

    action, made_action = _ensure_action(key, f"{name} {obj.name}")
    curves = _fcurve_collection(action, key)
    for k, name_k in enumerate(names):
        _write_curve(curves, f'key_blocks["{name_k}"].value', frames, weights[:, k])

    obj[TAG] = json.dumps({"keys": created, "action": action.name, "made_action": made_action,
                           "paths": [f'key_blocks["{n}"].value' for n in names]})
    scene.frame_start = math.floor(start_frame)
    scene.frame_end = math.ceil(frames[-1])
    obj.data.update()
    return BakeResult(len(created), count, scene.frame_start, scene.frame_end, anim.max_error)


def remove_bake(obj: bpy.types.Object) -> bool:
    """Remove the shape keys and curves an earlier bake created; leave everything else."""
    raw = obj.get(TAG)
    if raw is None:
        return False
    tag = json.loads(raw)
    key = obj.data.shape_keys if obj.type == "MESH" else None
    action = bpy.data.actions.get(tag["action"])
    if key is not None and action is not None:
        curves = _fcurve_collection(action, key, create=False)
        if curves is not None:
            for fc in [fc for fc in curves if fc.data_path in set(tag["paths"])]:
                curves.remove(fc)
        if tag["made_action"] and not _has_curves(action):
            if key.animation_data and key.animation_data.action == action:
                key.animation_data.action = None
            bpy.data.actions.remove(action)
    if key is not None:
        for name in tag["keys"]:
            kb = key.key_blocks.get(name)
            if kb is not None:
                obj.shape_key_remove(kb)
        for name, value in tag.get("restore", {}).items():  # keys a bake drove but did not create
            kb = key.key_blocks.get(name)
            if kb is not None:
                kb.value = value
    del obj[TAG]
    return True


# ----------------------------------------------------------------------------------------------
def _add_key(obj, name: str, coords: np.ndarray, slider: tuple[float, float], value: float) -> None:
    kb = obj.shape_key_add(name=name, from_mix=False)
    kb.data.foreach_set("co", np.ascontiguousarray(coords, dtype=np.float32).ravel())
    kb.slider_min, kb.slider_max = slider
    kb.value = value


def _ensure_action(key: bpy.types.Key, name: str) -> tuple[bpy.types.Action, bool]:
    """The Key's assigned action (kept, our curves go into it) or a new one of ours."""
    anim_data = key.animation_data or key.animation_data_create()
    if anim_data.action is not None:
        return anim_data.action, False
    action = bpy.data.actions.new(name)
    if SLOTTED_ACTIONS:
        slot = action.slots.new(id_type="KEY", name=key.name)
        action.layers.new("Layer").strips.new(type="KEYFRAME").channelbags.new(slot)
        anim_data.action = action
        anim_data.action_slot = slot
    else:
        anim_data.action = action
    return action, True


def _fcurve_collection(action: bpy.types.Action, key: bpy.types.Key, create: bool = True):
    """Where F-curves for ``key`` live: the slot's channelbag (4.4+) or action.fcurves (4.2-4.3)."""
    if not SLOTTED_ACTIONS:
        return action.fcurves
    from bpy_extras import anim_utils

    anim_data = key.animation_data
    slot = anim_data.action_slot if anim_data and anim_data.action == action else None
    if slot is None:
        slot = next((s for s in action.slots if s.target_id_type == "KEY"), None)
    if slot is None:
        if not create:
            return None
        slot = action.slots.new(id_type="KEY", name=key.name)
        anim_data.action_slot = slot
    if create:
        return anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves
    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    return bag.fcurves if bag is not None else None


def _has_curves(action: bpy.types.Action) -> bool:
    if not SLOTTED_ACTIONS:
        return len(action.fcurves) > 0
    return any(len(bag.fcurves) for layer in action.layers for strip in layer.strips
               for bag in strip.channelbags)


def _write_curve(curves, data_path: str, frames: np.ndarray, values: np.ndarray) -> None:
    fc = curves.new(data_path)
    points = fc.keyframe_points
    points.add(len(frames))
    points.foreach_set("co", np.column_stack([frames, values]).astype(np.float32).ravel())
    linear = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
    points.foreach_set("interpolation", np.full(len(frames), linear, dtype=np.int32))
    fc.update()
