"""Read a bake back out of the scene as an exact ``Animation`` (for the exports).

A bake is shape keys + one linear curve per key sampled at the scene's frames, so the keyframe
values *are* the weights and the keys' offsets the basis: reading them gives the animation exactly
as Blender plays it, including a bake the user edited by hand, after save and reopen.
"""

from __future__ import annotations

import json
import re

import bpy
import numpy as np

from ..core.animation import Animation
from ..core.errors import ImitatorError
from ..core.faces.default_head import ARKIT_SHAPE_NAMES
from ..core.faces.head import Head
from .bake import TAG, _fcurve_collection, scene_fps
from .mesh import blender_to_core, key_coords, require_mesh

_PATH = re.compile(r'^key_blocks\["(.+)"\]\.value$')


def head_from_object(obj: bpy.types.Object) -> Head:
    """The object's rest mesh, polygons and shape keys (offsets) in core coordinates."""
    require_mesh(obj)
    mesh = obj.data
    sizes = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", sizes)
    indices = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", indices)
    key = mesh.shape_keys
    if key is None:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        return Head(obj.name, blender_to_core(co.reshape(-1, 3)), sizes, indices)
    rest = key_coords(key.reference_key)
    offsets = {kb.name: blender_to_core(key_coords(kb) - rest).astype(np.float32)
               for kb in key.key_blocks[1:]}
    return Head(obj.name, blender_to_core(rest).astype(np.float32), sizes, indices, offsets)


def bake_tag(obj: bpy.types.Object) -> dict:
    if obj is None or TAG not in obj:
        name = obj.name if obj is not None else "no object"
        raise ImitatorError(f"'{name}' has no Imitator bake; Generate (or bake) first, then export")
    return json.loads(obj[TAG])


def animation_from_bake(obj: bpy.types.Object, scene: bpy.types.Scene) -> tuple[Animation, float, list[str]]:
    """(animation at the scene's fps, its first frame, names of the animated keys)."""
    require_mesh(obj)
    tag = bake_tag(obj)
    key = obj.data.shape_keys
    action = bpy.data.actions.get(tag["action"])
    curves = _fcurve_collection(action, key, create=False) if action is not None and key else None
    if curves is None:
        raise ImitatorError(f"'{obj.name}': the keyframes of its Imitator bake are gone; Generate again")
    by_path = {fc.data_path: fc for fc in curves}
    names, weights, frames = [], [], None
    for path in tag["paths"]:
        fc = by_path.get(path)
        if fc is None:
            raise ImitatorError(f"'{obj.name}': the bake's curve {path} was deleted; Generate again")
        co = np.empty(len(fc.keyframe_points) * 2, np.float32)
        fc.keyframe_points.foreach_get("co", co)
        co = co.reshape(-1, 2)
        if frames is None:
            frames = co[:, 0]
        elif len(co) != len(frames) or np.abs(co[:, 0] - frames).max() > 1e-3:
            raise ImitatorError(f"'{obj.name}': the bake's curves were edited to different frames; "
                                f"export needs one key per frame on every curve (Generate again)")
        names.append(_PATH.match(path).group(1))
        weights.append(co[:, 1])
    rest = key_coords(key.reference_key)
    basis = np.stack([key_coords(key.key_blocks[n]) - key_coords(key.key_blocks[n].relative_key)
                      for n in names])  # (K, V, 3) Blender axes
    bias = np.zeros_like(rest)
    for name in tag["keys"]:  # created but not animated: the constant bias key
        if name not in names and name in key.key_blocks:
            kb = key.key_blocks[name]
            bias += kb.value * (key_coords(kb) - key_coords(kb.relative_key))
    anim = Animation(blender_to_core(rest).astype(np.float32), blender_to_core(basis).astype(np.float32),
                     np.stack(weights, axis=1).astype(np.float32), blender_to_core(bias).astype(np.float32),
                     scene_fps(scene))
    return anim, float(frames[0]), names


def arkit_weights_from_bake(obj: bpy.types.Object, scene: bpy.types.Scene) -> tuple[np.ndarray, float, float]:
    """(T, 52) ARKit weights of the bake, its fps, and the fit error in metres (0 when exact).

    An ARKit-key bake is read as is; an exact bake is fitted onto the head's ARKit keys.
    """
    anim, _, names = animation_from_bake(obj, scene)
    if set(names) == set(ARKIT_SHAPE_NAMES):
        order = [names.index(n) for n in ARKIT_SHAPE_NAMES]
        return anim.weights[:, order], anim.fps, 0.0
    head = head_from_object(obj)
    missing = [n for n in ARKIT_SHAPE_NAMES if n not in head.shape_keys]
    if missing:
        raise ImitatorError(f"'{obj.name}' has no ARKit shape keys ({missing[0]} ...); the ARKit CSV "
                            f"needs the default head (or a head with the 52 ARKit keys)")
    from ..core.arkit_fit import fit_arkit_weights

    head.shape_keys = {n: head.shape_keys[n] for n in ARKIT_SHAPE_NAMES}
    weights, error = fit_arkit_weights(anim, head)
    return weights, anim.fps, error
