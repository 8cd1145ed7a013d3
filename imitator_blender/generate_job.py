"""Generate, in three steps: ``prepare`` (main thread: read and check the scene, change nothing),
``run`` (worker thread: the model, no bpy), ``apply`` (main thread: bake, sound strip, frame range).

Everything that can be wrong with the input is found by ``prepare`` or ``run``, both of which leave
the scene untouched, so a refused, failed or cancelled Generate changes nothing; ``apply`` is the
only step that writes, and it runs as one operator step (one undo step).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..core.animation import Animation
from ..core.errors import ImitatorError
from ..core.faces.default_head import ARKIT_SHAPE_NAMES
from ..core.faces.head import Head
from . import dependencies, sound
from .arkit_bake import _refuse_foreign_curves, bake_arkit_weights, require_arkit_keys
from .bake import bake_animation, scene_fps
from .mesh import blender_to_core, key_coords, mesh_topology, require_mesh
from .preferences import DEFAULT_MODEL, prefs

GENERATE_TAG = "imitator_generate"  # on the head: what its last Generate made (sound strip id, ...)
INSTALL_HINT = "install them with Install Dependencies in Edit > Preferences > Add-ons > Imitator"


@dataclass
class GenerateRequest:
    """All a Generate needs, read from the scene on the main thread (plain data only)."""

    object_name: str
    num_vertices: int
    topology: str
    model_folder: Path
    model_fps: float
    audio_path: Path
    audio_seconds: float
    device: str  # AUTO, CUDA or CPU
    style: Any  # None, a model style name/index, or a style profile path
    mode: str  # EXACT or ARKIT
    start_frame: float
    fps_mode: str
    rest: np.ndarray | None = None  # (V, 3) core coordinates; ARKIT mode
    arkit_offsets: dict[str, np.ndarray] | None = None  # name -> (V, 3) core coordinates
    lip_closure: bool = True  # closure-aware decoding when the model has a contact head
    dialog_text: str | None = None  # transcript (None: AUDIO.txt beside the audio, if any)


@dataclass
class GenerateResult:
    animation: Animation  # at the model's fps, offsets relative to the head's rest shape
    arkit: np.ndarray | None  # (T, 52) in ARKIT_SHAPE_NAMES order (ARKIT mode)
    fit_error: float  # metres (ARKIT mode)
    model_seconds: float
    notes: list[str] = field(default_factory=list)  # e.g. a transcript that did not fit


# ------------------------------------------------------------------------------------------------
# 1. prepare (main thread, read only)


def resolve_model_folder(context: bpy.types.Context) -> Path:
    raw = context.scene.imitator.model_folder
    return Path(bpy.path.abspath(raw)) if raw.strip() else DEFAULT_MODEL


def read_model_config(folder: Path, shipped: bool) -> dict:
    """config.json of a model folder as a dict, or a one-line error (torch is not imported here)."""
    if not folder.is_dir():
        if shipped:
            raise ImitatorError(f"{folder}: the shipped default model is not in this build; choose a "
                                f"model folder in the Generate section")
        raise ImitatorError(f"{folder}: model folder not found; choose a folder holding config.json "
                            f"and model.safetensors")
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImitatorError(f"{path}: missing; a model folder needs config.json beside "
                            f"model.safetensors") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ImitatorError(f"{path}: unreadable model config ({' '.join(str(e).split())[:120]}); "
                            f"re-download the model") from None
    if not isinstance(data, dict) or not isinstance(data.get("num_vertices", 5023), int):
        raise ImitatorError(f"{path}: not a model config; re-download the model")
    return data


def prepare(context: bpy.types.Context) -> GenerateRequest:
    """Check the head, the audio, the model and the dependencies; change nothing."""
    settings = context.scene.imitator
    obj = context.active_object
    require_mesh(obj)
    missing = dependencies.missing_modules()
    if missing:
        raise ImitatorError(f"Missing Python packages: {', '.join(missing)}; {INSTALL_HINT}")

    raw_audio = settings.audio_path.strip()
    if not raw_audio:
        raise ImitatorError("No audio file chosen; pick a speech recording in the Audio section")
    audio_path = Path(bpy.path.abspath(raw_audio))
    from ..core.audio import audio_info

    info = audio_info(audio_path)
    if info.frames == 0:
        raise ImitatorError(f"{audio_path}: audio file holds no samples; choose a recording with speech")

    folder = resolve_model_folder(context)
    config = read_model_config(folder, shipped=not settings.model_folder.strip())
    V = len(obj.data.vertices)
    model_V = int(config.get("num_vertices", 5023))
    model_topology = str(config.get("topology") or "")
    topology = mesh_topology(obj.data)
    if model_V != V or (model_topology and model_topology != topology):
        raise ImitatorError(
            f"'{obj.name}' ({V} vertices, topology {topology[:8]}) does not match the model {folder.name} "
            f"({model_V} vertices, topology {(model_topology or '?')[:8]}); select the head the model "
            f"was trained for, or choose another model")

    request = GenerateRequest(
        object_name=obj.name, num_vertices=V, topology=topology, model_folder=folder,
        model_fps=float(config.get("fps", 30.0)), audio_path=audio_path, audio_seconds=info.duration,
        device=prefs(context).device, style=_selected_style(context), mode=settings.bake_mode,
        start_frame=float(settings.start_frame), fps_mode=settings.fps_mode,
        lip_closure=settings.lip_closure, dialog_text=settings.dialog_text.strip() or None)
    if request.mode == "ARKIT":
        require_arkit_keys(obj)
        key = obj.data.shape_keys
        _refuse_foreign_curves(obj, key, [f'key_blocks["{n}"].value' for n in ARKIT_SHAPE_NAMES])
        rest = key_coords(key.reference_key)
        request.rest = blender_to_core(rest).astype(np.float32)
        request.arkit_offsets = {n: blender_to_core(key_coords(key.key_blocks[n]) - rest).astype(np.float32)
                                 for n in ARKIT_SHAPE_NAMES}
    return request


def _selected_style(context: bpy.types.Context) -> Any:
    """The style profile chosen in the Style section (None: the model's first style)."""
    if importlib.util.find_spec(f"{__package__}.style_ui") is None:
        return None
    from .style_ui import selected_style_path

    return selected_style_path(context)


# ------------------------------------------------------------------------------------------------
# 2. run (worker thread, no bpy)


def resolve_device(choice: str) -> str:
    import torch

    if choice == "CPU":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if choice == "CUDA":
        raise ImitatorError(f"Device is CUDA but torch {torch.__version__} sees no CUDA GPU; choose "
                            f"Auto or CPU in the Imitator preferences, or install the CUDA build")
    return "cpu"


def run(request: GenerateRequest, report) -> GenerateResult:
    """Load the model, run it over the audio file, and (ARKIT mode) solve the ARKit weights."""
    t0 = time.perf_counter()
    report(0.02, f"loading the model {request.model_folder.name}")
    from ..core.model.checkpoint import from_pretrained
    from ..core.model.generate import generate_file

    model = from_pretrained(request.model_folder, resolve_device(request.device),
                            topology=request.topology)
    if model.config.num_vertices != request.num_vertices:
        raise ImitatorError(f"{request.model_folder}: the weights animate {model.config.num_vertices} "
                            f"vertices, the head has {request.num_vertices}; choose another model")
    style = request.style
    if isinstance(style, (str, os.PathLike)) and str(style).endswith(".imstyle"):
        from ..core.style_profile import load_style_profile

        style = load_style_profile(Path(style), model)
    closures, notes = None, []
    if request.lip_closure:
        from ..core.transcript import resolve_transcript

        report(0.05, "aligning the dialog text")
        closures, note = resolve_transcript(request.audio_path, request.dialog_text, where="Dialog text")
        notes += [note] if note is not None and closures is None else []
    report(0.1, "running the model")

    def progress(done: int, total: int | None) -> None:
        frac = done / total if total else 0.0
        report(0.1 + 0.75 * frac, f"running the model: {done} of {total or '?'} frames")

    # on the head's own rest shape: the bake uses offsets, and lips close on this head's lips
    anim = generate_file(model, request.audio_path, style, template=request.rest, progress=progress,
                         lip_closure=request.lip_closure, closures=closures)
    arkit, fit_error = None, 0.0
    if request.mode == "ARKIT":
        from ..core.arkit_fit import fit_arkit_weights

        report(0.88, f"solving ARKit weights for {anim.num_frames} frames")
        head = Head(request.object_name, request.rest, np.zeros(0, np.int32), np.zeros(0, np.int32),
                    request.arkit_offsets)
        arkit, fit_error = fit_arkit_weights(anim, head)
    report(0.97, "baking")
    return GenerateResult(anim, arkit, fit_error, time.perf_counter() - t0, notes)


# ------------------------------------------------------------------------------------------------
# 3. apply (main thread: the only step that changes the scene)


def apply(context: bpy.types.Context, request: GenerateRequest, result: GenerateResult) -> tuple[str, list[str]]:
    """Bake the result on the head, replace its sound strip, fit the frame range.

    Returns the summary line and warnings. Raises (changing nothing) if the head went away.
    """
    scene = context.scene
    obj = bpy.data.objects.get(request.object_name)
    if obj is None or obj.type != "MESH" or len(obj.data.vertices) != request.num_vertices:
        raise ImitatorError(f"'{request.object_name}' was deleted or changed while Generate ran; "
                            f"nothing was baked")
    warnings: list[str] = list(result.notes)
    previous = json.loads(obj.get(GENERATE_TAG, "{}"))
    _set_scene_fps(scene, request.fps_mode, request.model_fps)
    start = request.start_frame
    if request.mode == "ARKIT":
        baked = bake_arkit_weights(obj, result.arkit, result.animation.fps, scene, start,
                                   result.fit_error)
        scene.imitator.fit_error_mm = result.fit_error * 1000
    else:
        baked = bake_animation(obj, result.animation, scene, start)
    sound.remove_strips(scene, previous.get("sound_id", ""))
    sound_id = ""
    if sound.can_play_sound():
        try:
            _, sound_id = sound.place_sound(scene, request.audio_path, start, f"Imitator {obj.name}")
        except ImitatorError as e:
            warnings.append(str(e))
    else:
        warnings.append("this Blender build has no audio support; no sound strip was placed")
    fps = scene_fps(scene)
    audio_end = start + request.audio_seconds * fps
    scene.frame_end = max(scene.frame_end, math.ceil(audio_end - 1 - 1e-6))
    obj[GENERATE_TAG] = json.dumps({
        "sound_id": sound_id, "audio": str(request.audio_path), "model": str(request.model_folder),
        "mode": request.mode, "start_frame": start, "fit_error": result.fit_error,
    })
    text = (f"Generated {baked.frames} frames on '{obj.name}' "
            f"({'ARKit keys, fit error %.2f mm' % (result.fit_error * 1000) if request.mode == 'ARKIT' else f'{baked.keys} shape keys'}), "
            f"frames {scene.frame_start}-{scene.frame_end}; model {result.model_seconds:.1f} s")
    scene.imitator.last_report = text
    return text, warnings


def _set_scene_fps(scene: bpy.types.Scene, mode: str, model_fps: float) -> None:
    if mode == "KEEP":
        return
    fps = model_fps if mode == "MODEL" else float(mode)
    whole = max(1, round(fps))
    scene.render.fps, scene.render.fps_base = whole, whole / fps
