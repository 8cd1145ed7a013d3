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
from .arkit_bake import _refuse_foreign_curves, arkit_mapping, bake_arkit_weights, require_arkit_keys
from .bake import bake_animation, scene_fps
from .mesh import blender_to_core, key_coords, mesh_topology, require_mesh
from .preferences import DEFAULT_MODEL, prefs

GENERATE_TAG = "imitator_generate"  # on the head: what its last Generate made (sound strip id, ...)
_ALL_ARKIT = {n: n for n in ARKIT_SHAPE_NAMES}  # a rig named exactly like ARKit (the default head)
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
    # another head than the model's: the motion crosses over through a head fit
    retarget: bool = False
    triangles: np.ndarray | None = None  # (F, 3) of the head, for fitting
    fit_path: Path | None = None  # where this head's fit is kept (made now if missing)
    cache_dir: Path | None = None  # the default head's cache
    landmarks: dict[str, np.ndarray] | None = None  # placed by the user (landmark empties)
    arkit_map: dict[str, str] | None = None  # ARKit name -> the rig's key (ARKit keys by name)
    arkit_missing: list[str] | None = None
    dialog_text: str | None = None  # transcript (None: AUDIO.txt beside the audio, if any)


@dataclass
class GenerateResult:
    animation: Animation  # at the model's fps, offsets relative to the head's rest shape
    arkit: np.ndarray | None  # (T, 52) in ARKIT_SHAPE_NAMES order (ARKIT mode)
    fit_error: float  # metres (ARKIT mode)
    model_seconds: float
    new_fit: Any = None  # a HeadFit made by this Generate, saved when the bake is applied
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
    retarget = model_V != V or (model_topology and model_topology != topology)
    if retarget and not _animates_default_head(model_topology):
        raise ImitatorError(
            f"'{obj.name}' ({V} vertices, topology {topology[:8]}) does not match the model '{folder.name}' "
            f"({model_V} vertices, topology {(model_topology or '?')[:8]}); select the head the model "
            f"was trained for, or choose another model")

    request = GenerateRequest(
        object_name=obj.name, num_vertices=V, topology=topology, model_folder=folder,
        model_fps=float(config.get("fps", 30.0)), audio_path=audio_path, audio_seconds=info.duration,
        device=prefs(context).device, style=_selected_style(context), mode=settings.bake_mode,
        start_frame=float(settings.start_frame), fps_mode=settings.fps_mode,
        lip_closure=settings.lip_closure, dialog_text=settings.dialog_text.strip() or None)
    if request.mode == "ARKIT" and (retarget or arkit_mapping(obj, settings.arkit_preset)[0] != _ALL_ARKIT):
        # a rig with its own keys: driven by name from the ARKit weights solved on the model head
        mapping, missing = arkit_mapping(obj, settings.arkit_preset)
        if not mapping:
            raise ImitatorError(f"'{obj.name}' has none of the 52 ARKit shape keys, by name (jawOpen, JawOpen, "
                                f"jaw_open ...); pick its naming preset in Bake options or bake as Exact basis")
        if not _animates_default_head(model_topology):
            raise ImitatorError(f"ARKit keys by name need a model of the default head; {folder.name} animates "
                                f"{model_V} vertices")
        _refuse_foreign_curves(obj, obj.data.shape_keys, [f'key_blocks["{k}"].value' for k in mapping.values()])
        from .preferences import user_dir

        request.arkit_map, request.arkit_missing, request.cache_dir = mapping, missing, user_dir("cache")
        return request
    if retarget:
        from .fit_operators import read_head

        head = read_head(obj)  # refuses a cube or a plane here, before anything runs
        request.retarget, request.rest, request.triangles = True, head.rest, head.triangles
        request.cache_dir, request.fit_path, request.landmarks = head.cache_dir, head.fit_path, head.landmarks
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
    """The style profile chosen in the Style section (None: the model's mean style)."""
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
    from ..core.model.generate import generate_file
    from .warmup import MODELS

    other = request.retarget or request.arkit_map is not None  # the motion is made on the model head
    model = MODELS.get(request.model_folder, resolve_device(request.device))  # warm after the first
    if not other and model.config.topology and model.config.topology != request.topology:
        raise ImitatorError(f"{request.model_folder}: model is for head topology {model.config.topology}, the "
                            f"head has {request.topology}; pick the model trained for this head")
    if not other and model.config.num_vertices != request.num_vertices:
        raise ImitatorError(f"{request.model_folder}: the weights animate {model.config.num_vertices} "
                            f"vertices, the head has {request.num_vertices}; choose another model")
    style = request.style
    if isinstance(style, (str, os.PathLike)) and str(style).endswith(".imstyle"):
        from ..core.style.profile import load_style_profile

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
    anim = generate_file(model, request.audio_path, style,
                         template=None if request.retarget else request.rest, progress=progress,
                         lip_closure=request.lip_closure, closures=closures)
    new_fit = None
    if request.retarget:
        anim, new_fit = _retarget(request, model, anim, report)
    arkit, fit_error = None, 0.0
    if request.arkit_map is not None:
        from ..core.arkit_fit import fit_arkit_weights
        from ..core.faces.default_head import load_default_head

        report(0.88, f"solving ARKit weights for {anim.num_frames} frames on the model head")
        arkit, fit_error = fit_arkit_weights(anim, load_default_head(request.cache_dir))
    elif request.mode == "ARKIT":
        from ..core.arkit_fit import fit_arkit_weights

        report(0.88, f"solving ARKit weights for {anim.num_frames} frames")
        head = Head(request.object_name, request.rest, np.zeros(0, np.int32), np.zeros(0, np.int32),
                    request.arkit_offsets)
        arkit, fit_error = fit_arkit_weights(anim, head)
    report(0.97, "baking")
    return GenerateResult(anim, arkit, fit_error, time.perf_counter() - t0, new_fit, notes)


def _retarget(request: GenerateRequest, model, anim: Animation, report):
    """The model-head animation moved onto the selected head through its fit (made now when
    the head has none yet). Returns (animation on the head, the new fit or None)."""
    from ..core.faces.default_head import load_default_head
    from ..core.faces.head_fit import HeadFit, fit_head
    from ..core.faces.transfer import transfer_animation

    source = load_default_head(request.cache_dir)
    fit, new = None, None
    if request.fit_path is not None and request.fit_path.is_file():
        try:
            fit = HeadFit.load(request.fit_path)
            fit.check_target(request.object_name, request.num_vertices, request.topology, request.rest)
        except ImitatorError:
            fit = None  # a damaged or stale fit: fit again
    if fit is None:
        def fit_progress(fraction: float, text: str) -> None:
            report(0.85 + 0.1 * fraction, f"fitting the head: {text}")

        fit = new = fit_head(source, request.rest, request.triangles, name=request.object_name,
                             target_topology=request.topology, landmarks=request.landmarks,
                             progress=fit_progress)
    centres = (model.config.lip_closure or {}).get("centres") or (
        int(source.regions["upper_lip_centre"][0]), int(source.regions["lower_lip_centre"][0]))
    return transfer_animation(anim, fit, request.rest, tuple(centres)), new


def _animates_default_head(topology: str) -> bool:
    from ..core.faces.default_head import EXPECTED_TOPOLOGY

    return topology == EXPECTED_TOPOLOGY



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
    if result.new_fit is not None and request.fit_path is not None:
        result.new_fit.save(request.fit_path)  # before the bake: a failed write changes nothing
    previous = json.loads(obj.get(GENERATE_TAG, "{}"))
    _set_scene_fps(scene, request.fps_mode, request.model_fps)
    start = request.start_frame
    if request.mode == "ARKIT":
        baked = bake_arkit_weights(obj, result.arkit, result.animation.fps, scene, start,
                                   result.fit_error, names=request.arkit_map)
        if request.arkit_missing:
            warnings.append(f"'{obj.name}' lacks {len(request.arkit_missing)} ARKit keys, not driven: "
                            f"{', '.join(request.arkit_missing[:5])}{' ...' if len(request.arkit_missing) > 5 else ''}")
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
