"""Dialog text in the Audio section: the shipped model on the sample audio (copied without its
.txt, so nothing is picked up on its own). The right words close the lips on every aligned m/b/p
and change the bake; words that do not fit the audio give the audio-alone bake, not a refusal."""

import shutil

import bpy
import numpy as np
from bl_shipped_model import closed_intervals, scrub_gaps
from scene_setup import default_head, ensure_runtime_packages, sample_audio

OTHER = "Seven silly sheep tried to catch the yellow rat in the kitchen before noon."


def test_dialog_text_pins_the_closures_and_misfit_text_falls_back(ext, tmp_dir):
    ensure_runtime_packages(ext)
    head, obj = default_head(ext)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    settings = scene.imitator
    source = ext.mod("imitator_blender.preferences").SAMPLE_AUDIO
    audio = tmp_dir / "take.wav"
    shutil.copy(sample_audio(ext), audio)
    transcript = source.with_suffix(".txt").read_text()
    settings.model_folder, settings.audio_path, settings.start_frame = "", str(audio), 1
    assert settings.dialog_text == ""  # empty by default

    assert bpy.ops.imitator.generate() == {"FINISHED"}
    plain = scrub_gaps(ext, head, obj, scene)
    settings.dialog_text = OTHER
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    np.testing.assert_allclose(scrub_gaps(ext, head, obj, scene), plain, atol=1e-7)

    settings.dialog_text = transcript
    assert bpy.ops.imitator.generate() == {"FINISHED"}
    pinned = scrub_gaps(ext, head, obj, scene)
    intervals = ext.mod("core.bilabial").detect_closures(audio, transcript)
    closed = closed_intervals(ext, pinned, intervals, 30.0)
    assert len(closed) >= 15 and all(closed), closed
    assert np.abs(pinned - plain).max() > 1e-4  # the text changed the bake
