"""The README's main job, headless: default head -> sample speech -> Generate -> out/demo.blend,
out/demo.mp4 (front view, with sound) and docs/demo.png (a frame of it).

Runs the installed extension's own operators in Blender's Python (PyPI bpy), with a Blender
config folder of its own under out/ so the user's Blender is never touched. The video is rendered
by Blender itself (Workbench, on the CPU). Until the trained model lands in models/default, the
demo bakes the procedural test motion instead, and says so.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "sample"
DEFAULT_MODEL = ROOT / "models" / "default"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo.blend")
    parser.add_argument("--video", type=Path, default=ROOT / "out" / "demo.mp4")
    parser.add_argument("--image", default=str(ROOT / "docs" / "demo.png"),
                        help="a frame for the README ('' to skip)")
    parser.add_argument("--audio", type=Path, default=SAMPLE / "sample.wav")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--fps", type=int, default=30, help="scene frame rate")
    parser.add_argument("--size", type=int, default=480, help="video width and height in pixels")
    parser.add_argument("--no-video", action="store_true", help="only bake and save the .blend")
    parser.add_argument("--seed", type=int, default=0, help="seed of the procedural fallback motion")
    args = parser.parse_args(argv)

    from tools.blender_session import install_extension, isolate_home

    isolate_home(ROOT / "out" / ".blender-home")
    import build

    zip_path = build.build(ROOT / "dist")
    import bpy

    t0 = time.perf_counter()
    module = install_extension(zip_path)
    ext = lambda name: importlib.import_module(f"{module}.{name}")  # noqa: E731
    scene = bpy.context.scene
    for name in ("Cube", "Camera", "Light"):
        if name in bpy.data.objects:
            bpy.data.objects.remove(bpy.data.objects[name])
    scene.render.fps, scene.render.fps_base = args.fps, 1.0
    bpy.ops.imitator.add_default_head()
    head_obj = bpy.context.active_object
    scene.imitator.audio_path = str(args.audio.resolve())

    have_model = (args.model / "config.json").is_file() and (args.model / "model.safetensors").is_file()
    if have_model:
        scene.imitator.model_folder = "" if args.model.resolve() == DEFAULT_MODEL.resolve() else str(args.model)
        bpy.ops.imitator.generate()  # the button's operator, run to the end (headless)
        source = f"model {args.model.name}"
    else:
        print(f"NOTE: {args.model} is missing (the trained model has not landed yet): baking the "
              f"procedural test motion instead of the model's output; it is not synced to the speech")
        seconds = ext("core.audio").audio_info(args.audio).duration
        bpy.ops.imitator.bake_test_motion(seconds=seconds, seed=args.seed)
        ext("imitator_blender.sound").place_sound(scene, args.audio.resolve(), scene.imitator.start_frame,
                                                 f"Imitator {head_obj.name}")
        scene.frame_end = max(scene.frame_end, math.ceil(scene.imitator.start_frame + seconds * args.fps - 1))
        source = "procedural test motion (no model)"
    bake_s = time.perf_counter() - t0

    gaps = lip_gaps(ext, head_obj, scene)
    print(f"baked: {source}, frames {scene.frame_start}-{scene.frame_end} at {args.fps} fps, "
          f"{bake_s:.1f} s; lip gap {gaps.min() * 1000:.1f}-{gaps.max() * 1000:.1f} mm")
    report_closures(ext, args.audio, gaps, args.fps)

    setup_view(bpy, scene, head_obj, args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(args.out.resolve()))
    print(f"{args.out}: '{head_obj.name}' ({len(head_obj.data.vertices)} vertices)")
    if not args.no_video:
        t1 = time.perf_counter()
        render_video(bpy, scene, args.video)
        print(f"{args.video}: {scene.frame_end - scene.frame_start + 1} frames, {args.size}x{args.size}, "
              f"with sound, rendered by Blender ({scene.render.engine}) in {time.perf_counter() - t1:.1f} s")
    if args.image:
        image = Path(args.image)
        frame = scene.frame_start + int(np.argmax(gaps))
        render_still(bpy, scene, frame, image, size=min(args.size, 320))
        print(f"{image}: frame {frame} (widest lip gap), {image.stat().st_size / 1024:.0f} KiB")
    return 0


def lip_gaps(ext, obj, scene) -> np.ndarray:
    """(frames,) signed vertical gap between the lip centres of the evaluated head at every scene
    frame (what scrubbing shows); negative when the lips press into each other."""
    head = ext("core.faces.default_head").load_default_head(ext("imitator_blender.preferences").user_dir("cache"))
    upper, lower = ext("core.evaluate.metrics").FaceRegions.from_head(head).lip_centres
    import bpy

    gaps = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        gaps.append(mesh.vertices[upper].co.z - mesh.vertices[lower].co.z)
    scene.frame_set(scene.frame_start)
    return np.array(gaps)


def report_closures(ext, audio: Path, gaps: np.ndarray, fps: float) -> None:
    """Do the lips close (< 1 mm) inside the m/b/p intervals found in the speech?"""
    transcript_file = audio.with_suffix(".txt")
    try:
        bilabial = ext("core.bilabial")
        intervals = bilabial.detect_closures(audio, transcript_file.read_text() if transcript_file.is_file() else None)
    except Exception as e:  # noqa: BLE001 - optional: pocketsphinx may be missing
        print(f"lip closures: not checked ({' '.join(str(e).split())[:100]})")
        return
    threshold = ext("core.evaluate.metrics").CLOSED_GAP_M
    reached = []
    for iv in intervals:
        frames = ext("core.evaluate.metrics").interval_frames(iv, fps, len(gaps))
        if frames.size:
            reached.append(gaps[frames].min() < threshold)
    print(f"lip closures: {sum(reached)} of {len(reached)} m/b/p intervals close below "
          f"{threshold * 1000:.0f} mm")


def setup_view(bpy, scene, obj, size: int) -> None:
    """A front camera on the face, a plain background, Workbench (works headless, on the CPU)."""
    co = np.array([v.co for v in obj.data.vertices])
    lo, hi = co.min(0), co.max(0)
    centre = (lo + hi) / 2
    height = hi[2] - lo[2]
    cam_data = bpy.data.cameras.new("Front")
    cam_data.lens = 85.0
    cam = bpy.data.objects.new("Front", cam_data)
    distance = 0.62 * height / math.tan(cam_data.angle / 2)
    cam.location = (centre[0], lo[1] - distance, centre[2])
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looking along +Y: the face looks along -Y
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "OBJECT"
    obj.color = (0.80, 0.60, 0.50, 1.0)
    scene.view_settings.view_transform = "Standard"
    shading.show_cavity = True
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.045, 0.05, 0.06)
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100


def render_video(bpy, scene, path: Path) -> None:
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0: video is a media type of its own
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    ffmpeg = scene.render.ffmpeg
    ffmpeg.format, ffmpeg.codec = "MPEG4", "H264"
    ffmpeg.constant_rate_factor = "MEDIUM"
    ffmpeg.audio_codec, ffmpeg.audio_channels, ffmpeg.audio_mixrate = "AAC", "MONO", 48000
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path.resolve())
    scene.render.use_file_extension = False
    bpy.ops.render.render(animation=True)


def render_still(bpy, scene, frame: int, path: Path, size: int) -> None:
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "IMAGE"
    settings.file_format, settings.color_mode, settings.compression = "PNG", "RGB", 100
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.data.images["Render Result"].save_render(filepath=str(path.resolve()))


if __name__ == "__main__":
    sys.exit(main())
