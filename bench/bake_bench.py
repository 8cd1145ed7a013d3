"""Bake speed: 1800 frames (60 s at 30 fps) x 64 keys on a 5023-vertex mesh.

Ours (foreach_set keys + keyframes through slotted actions) vs the naive path an add-on would
write (shape_key_add + keyframe_insert per key and frame), in one run; plus .blend size growth.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import report  # noqa: E402
from tools.blender_session import install_extension, isolate_home  # noqa: E402

FRAMES, KEYS, VERTS, FPS = 1800, 64, 5023, 30.0


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imitator-bench-"))
    isolate_home(tmp / "home")
    import build

    zip_path = build.build(tmp / "dist")
    import bpy

    module = install_extension(zip_path)
    import importlib

    Animation = importlib.import_module(f"{module}.core.animation").Animation
    Head = importlib.import_module(f"{module}.core.faces").Head
    mesh_mod = importlib.import_module(f"{module}.imitator_blender.mesh")
    bake_mod = importlib.import_module(f"{module}.imitator_blender.bake")

    rng = np.random.default_rng(0)
    verts = rng.normal(0, 0.1, (VERTS, 3)).astype(np.float32)
    tris = rng.integers(0, VERTS, (2 * VERTS, 3)).astype(np.int32)
    tris = tris[(tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])]
    head = Head("Bench", verts, np.full(len(tris), 3, np.int32), tris.ravel())
    anim = Animation(verts, rng.normal(0, 1e-3, (KEYS, VERTS, 3)).astype(np.float32),
                     rng.uniform(-1, 1, (FRAMES, KEYS)).astype(np.float32),
                     np.zeros((VERTS, 3), np.float32), FPS)
    scene = bpy.context.scene
    scene.render.fps = int(FPS)

    def fresh_object():
        return mesh_mod.create_head_object(head, bpy.context, name="Bench")

    def blend_size(name: str) -> int:
        path = tmp / f"{name}.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False, copy=True)
        return path.stat().st_size

    base_size = blend_size("empty_head")

    obj = fresh_object()
    t0 = time.perf_counter()
    bake_mod.bake_animation(obj, anim, scene, 1)
    ours = time.perf_counter() - t0
    ours_size = blend_size("ours") - base_size
    # A second bake (the re-Generate case) replaces the first.
    t0 = time.perf_counter()
    bake_mod.bake_animation(obj, anim, scene, 1)
    rebake = time.perf_counter() - t0
    bpy.data.objects.remove(obj)

    # Naive: one keyframe_insert per key and frame (what most add-ons do).
    obj = fresh_object()
    basis_co = mesh_mod.core_to_blender(verts)
    t0 = time.perf_counter()
    blocks = []
    for k in range(KEYS):
        kb = obj.shape_key_add(name=f"naive{k}", from_mix=False)
        kb.data.foreach_set("co", (basis_co + mesh_mod.core_to_blender(anim.basis[k])).ravel())
        kb.slider_min = -1
        blocks.append(kb)
    insert_s = time.perf_counter()
    naive_frames = 180  # timed on 10% of the frames, scaled up: the full run takes minutes
    for f in range(naive_frames):
        for k, kb in enumerate(blocks):
            kb.value = float(anim.weights[f, k])
            kb.keyframe_insert("value", frame=f + 1)
    naive = (insert_s - t0) + (time.perf_counter() - insert_s) * FRAMES / naive_frames

    rows = [
        {"path": "ours (foreach_set, slotted action)", "seconds": ours, "speedup": naive / ours},
        {"path": "ours, re-bake (replaces previous)", "seconds": rebake, "speedup": naive / rebake},
        {"path": f"naive keyframe_insert (timed {naive_frames} frames, x{FRAMES // naive_frames})",
         "seconds": naive, "speedup": 1.0},
    ]
    print(f"bake: {FRAMES} frames x {KEYS} keys on {VERTS} vertices, Blender {bpy.app.version_string}")
    report("bake", rows, {"frames": FRAMES, "keys": KEYS, "vertices": VERTS,
                          "blend_growth_bytes": ours_size, "blender": bpy.app.version_string,
                          "target_seconds": 1.0})
    print(f".blend growth of our bake: {ours_size / 2**20:.1f} MiB (uncompressed)")


if __name__ == "__main__":
    main()
