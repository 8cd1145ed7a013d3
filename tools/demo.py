"""The README's main job, headless: default head -> animation -> bake -> out/demo.blend.

Runs the installed extension's own operators in Blender's Python (PyPI bpy), with a Blender
config folder of its own under out/ so the user's Blender is never touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo.blend")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the test motion")
    parser.add_argument("--fps", type=int, default=30, help="scene frame rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from tools.blender_session import install_extension, isolate_home

    isolate_home(ROOT / "out" / ".blender-home")
    import build

    zip_path = build.build(ROOT / "dist")
    import bpy

    t0 = time.perf_counter()
    install_extension(zip_path)
    scene = bpy.context.scene
    cube = bpy.data.objects.get("Cube")
    if cube is not None:
        bpy.data.objects.remove(cube)
    scene.render.fps, scene.render.fps_base = args.fps, 1.0
    bpy.ops.imitator.add_default_head()
    head = bpy.context.active_object
    bpy.ops.imitator.bake_test_motion(seconds=args.seconds, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(args.out.resolve()))
    print(f"{args.out}: '{head.name}' ({len(head.data.vertices)} vertices), frames "
          f"{scene.frame_start}-{scene.frame_end} at {args.fps} fps, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
