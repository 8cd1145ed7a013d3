"""Semantic bake: per-frame ARKit weights keyframed onto the head's own 52 ARKit shape keys.

No shape key is created: the curves drive the keys the default head already has, so an animator
can edit jawOpen or mouthClose by hand. The tag has the same layout as the exact bake's (plus the
keys' previous values under ``restore``), so ``bake.remove_bake`` and a re-Generate remove it.
"""

from __future__ import annotations

import json
import math

import bpy
import numpy as np

from ..core.errors import ImitatorError
from ..core.faces.default_head import ARKIT_SHAPE_NAMES
from .bake import TAG, BakeResult, _ensure_action, _fcurve_collection, _write_curve, remove_bake, scene_fps
from .mesh import require_mesh


def arkit_key_names(obj: bpy.types.Object) -> list[str]:
    """The ARKit names missing from ``obj``'s shape keys (empty when all 52 are there)."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    have = set(key.key_blocks.keys()) if key is not None else set()
    return [n for n in ARKIT_SHAPE_NAMES if n not in have]


def require_arkit_keys(obj: bpy.types.Object) -> None:
    missing = arkit_key_names(obj)
    if missing:
        raise ImitatorError(f"'{obj.name}' lacks {len(missing)} of the 52 ARKit shape keys "
                            f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); bake "
                            f"as Exact basis, or use the default head")


def arkit_mapping(obj: bpy.types.Object, preset: str) -> tuple[dict[str, str], list[str]]:
    """(ARKit name -> ``obj``'s shape key, ARKit names not driven): the mapping the user edited on
    the object (Match ARKit Names), else matched by name now."""
    from ..core.faces.arkit_names import match_arkit_names

    rows = getattr(obj, "imitator_arkit_map", None)
    if rows is not None and len(rows):
        found = {r.arkit: r.key for r in rows if r.key and r.arkit in ARKIT_SHAPE_NAMES}
        return found, [n for n in ARKIT_SHAPE_NAMES if n not in found]
    key = obj.data.shape_keys if obj.type == "MESH" else None
    names = [k.name for k in key.key_blocks[1:]] if key is not None else []
    return match_arkit_names(names, preset)


class IMITATOR_OT_match_arkit_names(bpy.types.Operator):
    """Match the selected rig's shape keys to the 52 ARKit names (editable afterwards)"""

    bl_idname = "imitator.match_arkit_names"
    bl_label = "Match ARKit Names"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from ..core.faces.arkit_names import match_arkit_names

        obj = context.active_object
        try:
            require_mesh(obj)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        key = obj.data.shape_keys
        found, missing = match_arkit_names([k.name for k in key.key_blocks[1:]] if key else [],
                                           context.scene.imitator.arkit_preset)
        obj.imitator_arkit_map.clear()
        for n in ARKIT_SHAPE_NAMES:
            row = obj.imitator_arkit_map.add()
            row.arkit, row.key = n, found.get(n, "")
        self.report({"INFO"} if found else {"WARNING"},
                    f"'{obj.name}': {len(found)} of 52 ARKit shapes matched"
                    + (f"; not driven: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else ""))
        return {"FINISHED"}


CLASSES = (IMITATOR_OT_match_arkit_names,)


def bake_arkit_weights(obj: bpy.types.Object, weights: np.ndarray, fps: float, scene: bpy.types.Scene,
                       start_frame: float = 1.0, fit_error: float = 0.0,
                       name: str = "Imitator", names: dict[str, str] | None = None) -> BakeResult:
    """Replace ``obj``'s previous Imitator bake with ``weights`` (T, 52, ARKit order, at ``fps``).

    ``names``: ARKit name -> the rig's own key (a rig named another way; ARKit names it lacks are
    left out); None: the 52 ARKit names themselves, all required."""
    require_mesh(obj)
    if names is None:
        require_arkit_keys(obj)
        names = {n: n for n in ARKIT_SHAPE_NAMES}
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(ARKIT_SHAPE_NAMES) or not len(weights):
        raise ImitatorError(f"ARKit weights have shape {weights.shape}; expected (frames, 52)")
    key = obj.data.shape_keys
    missing = [k for k in names.values() if key is None or k not in key.key_blocks]
    if missing:
        raise ImitatorError(f"'{obj.name}' has no shape key '{missing[0]}' named in its ARKit mapping; "
                            f"match the names again in Bake options")
    columns = [ARKIT_SHAPE_NAMES.index(n) for n in names]
    weights = weights[:, columns]
    keys = list(names.values())
    paths = [f'key_blocks["{n}"].value' for n in keys]
    _refuse_foreign_curves(obj, key, paths)
    remove_bake(obj)

    restore = {n: float(key.key_blocks[n].value) for n in keys}
    out_fps = scene_fps(scene)
    count = max(1, math.floor((len(weights) - 1) / fps * out_fps + 1e-9) + 1)
    frames = start_frame + np.arange(count, dtype=np.float64)
    t = np.clip(np.arange(count) / out_fps * fps, 0, len(weights) - 1)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(weights) - 1)
    a = (t - i0)[:, None]
    sampled = (1 - a) * weights[i0] + a * weights[i1]  # (count, 52)

    action, made_action = _ensure_action(key, f"{name} {obj.name}")
    curves = _fcurve_collection(action, key)
    for k, path in enumerate(paths):
        _write_curve(curves, path, frames, sampled[:, k])
    obj[TAG] = json.dumps({"keys": [], "action": action.name, "made_action": made_action,
                           "paths": paths, "restore": restore, "mode": "ARKIT",
                           "fit_error": float(fit_error)})
    scene.frame_start = math.floor(start_frame)
    scene.frame_end = math.ceil(frames[-1])
    obj.data.update()
    return BakeResult(0, count, scene.frame_start, scene.frame_end, float(fit_error))


def _refuse_foreign_curves(obj, key, paths: list[str]) -> None:
    """The user's own keyframes on an ARKit key would be overwritten: refuse instead."""
    action = key.animation_data.action if key.animation_data else None
    if action is None:
        return
    curves = _fcurve_collection(action, key, create=False)
    if curves is None:
        return
    ours = set(json.loads(obj[TAG])["paths"]) if TAG in obj else set()
    taken = [fc.data_path for fc in curves if fc.data_path in set(paths) and fc.data_path not in ours]
    if taken:
        names = [p.split('"')[1] for p in taken]
        raise ImitatorError(f"'{obj.name}' already has keyframes on {', '.join(names[:3])}"
                            f"{' ...' if len(names) > 3 else ''}; delete them or bake as Exact basis")
