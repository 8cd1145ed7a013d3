"""The sound strip of a Generate: placed at the start frame, tagged, replaced by the next Generate.

Blender 5.0 renamed the sequencer's collections (``strips``/``strips_all``; 4.x ``sequences``/
``sequences_all``). Strips start on whole frames, so a fractional start frame puts the strip on the
next whole frame and skips the sub-frame part of the audio with ``sound_offset``.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import bpy

from ..core.errors import ImitatorError

STRIP_TAG = "imitator_sound"  # custom property on our strips: the id recorded on the head


def _strips(scene: bpy.types.Scene, create: bool):
    editor = scene.sequence_editor or (scene.sequence_editor_create() if create else None)
    if editor is None:
        return None, None
    if hasattr(editor, "strips"):
        return editor.strips, editor.strips_all
    return editor.sequences, editor.sequences_all


def can_play_sound() -> bool:
    """False in builds without audio (the PyPI bpy 4.2 wheel has no Audaspace)."""
    return bool(bpy.app.build_options.audaspace)


def find_strips(scene: bpy.types.Scene, sound_id: str) -> list:
    _, everything = _strips(scene, create=False)
    if not sound_id or everything is None:
        return []
    return [s for s in everything if s.get(STRIP_TAG) == sound_id]


def remove_strips(scene: bpy.types.Scene, sound_id: str) -> int:
    """Remove the strips tagged ``sound_id`` (and their sounds, if nothing else uses them)."""
    top, _ = _strips(scene, create=False)
    removed = 0
    for strip in find_strips(scene, sound_id):
        sound = getattr(strip, "sound", None)
        # Strips inside meta strips belong to the meta's collection; ours are top level.
        top.remove(strip)
        removed += 1
        if sound is not None and sound.users == 0:
            bpy.data.sounds.remove(sound)
    return removed


def place_sound(scene: bpy.types.Scene, path: Path, start_frame: float, name: str) -> tuple[str, str]:
    """Add a sound strip playing ``path`` from ``start_frame``; returns (strip name, its tag id)."""
    top, everything = _strips(scene, create=True)
    frame = math.ceil(start_frame - 1e-6)
    fps = scene.render.fps / scene.render.fps_base
    channel = _free_channel(everything, frame)
    try:
        strip = top.new_sound(name, str(path), channel, frame)
    except RuntimeError as e:
        raise ImitatorError(f"{path}: Blender could not add it as a sound strip "
                            f"({' '.join(str(e).split())})") from None
    if frame - start_frame > 1e-6:
        strip.sound_offset = (frame - start_frame) / fps
    sound_id = uuid.uuid4().hex
    strip[STRIP_TAG] = sound_id
    return strip.name, sound_id


def _free_channel(everything, frame: int) -> int:
    """The lowest channel with no strip overlapping the frames from ``frame`` on."""
    used = {s.channel for s in everything if s.frame_final_end > frame}
    return next((c for c in range(1, 129) if c not in used), 128)
