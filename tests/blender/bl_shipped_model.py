"""The shipped default model through the Generate operator, the way a user meets it: default head,
shipped sample audio, Generate, then scrub. The lip gap follows the speech, and the lips close
(< 1 mm between the lip centres) inside every m/b/p interval that forced alignment finds in the
sample, also after save and reopen; with closure-aware decoding switched off the same check
fails, so it can."""

import bpy
import numpy as np
from scene_setup import default_head, ensure_runtime_packages, evaluated, sample_audio


def scrub_gaps(ext, head, obj, scene) -> np.ndarray:
    """(frames,) distance between the lip centres of the evaluated head at every scene frame."""
    upper, lower = ext.mod("core.evaluate.metrics").FaceRegions.from_head(head).lip_centres
    gaps = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        co = evaluated(obj)
        gaps.append(float(np.linalg.norm(co[upper] - co[lower])))
    return np.array(gaps)


def closed_intervals(ext, gaps: np.ndarray, intervals, fps: float) -> list[bool]:
    """Per m/b/p interval: does the gap drop below 1 mm on a frame inside it? Frame f (from 1)
    shows time (f - 1) / fps, so gap index i is time i / fps, the metrics' convention."""
    metrics = ext.mod("core.evaluate.metrics")
    out = []
    for iv in intervals:
        frames = metrics.interval_frames(iv, fps, len(gaps))
        if frames.size:
            out.append(bool(gaps[frames].min() < metrics.CLOSED_GAP_M))
    return out


def test_shipped_model_closes_the_lips_on_every_bilabial_of_the_sample(ext, tmp_dir):
    ensure_runtime_packages(ext)
    head, obj = default_head(ext)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    settings = scene.imitator
    settings.model_folder = ""  # the shipped default model
    settings.audio_path = sample_audio(ext)
    settings.start_frame = 1
    assert settings.lip_closure  # on by default
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    gaps = scrub_gaps(ext, head, obj, scene)
    assert gaps.max() > 5e-3 and gaps.std() > 1e-3, (gaps.min(), gaps.max())  # the mouth really talks

    audio = ext.mod("imitator_blender.preferences").SAMPLE_AUDIO
    transcript = audio.with_suffix(".txt").read_text()
    intervals = ext.mod("core.bilabial").detect_closures(audio, transcript)
    closed = closed_intervals(ext, gaps, intervals, 30.0)
    assert len(closed) >= 15  # "Bob made a map of the moon. Please bring me my blue pipe, maybe by Monday."
    print(f"shipped model: {sum(closed)} of {len(closed)} m/b/p intervals close below 1 mm; "
          f"lip gap {gaps.min() * 1e3:.2f}-{gaps.max() * 1e3:.1f} mm")
    assert all(closed), [(round(iv.start_s, 2), iv.phone) for iv, c in zip(intervals, closed) if not c]

    # Saved and reopened: the same lips at every frame.
    path, name = str(tmp_dir / "shipped.blend"), obj.name
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    scene, obj = bpy.context.scene, bpy.data.objects[name]
    settings = scene.imitator
    bpy.context.view_layer.objects.active = obj
    np.testing.assert_allclose(scrub_gaps(ext, head, obj, scene), gaps, atol=1e-7)

    # The raw model output (closure-aware decoding off) leaves lips open: the check discriminates.
    settings.lip_closure = False
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    raw = closed_intervals(ext, scrub_gaps(ext, head, obj, scene), intervals, 30.0)
    print(f"raw model output: {sum(raw)} of {len(raw)} close below 1 mm")
    assert sum(raw) < len(raw)
