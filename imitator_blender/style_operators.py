"""Adapt Style as a background job, and the style list's operators (import, export, rename, delete).

Adapt Style reads a tracked clip file, or the active animated mesh evaluated over the scene's frame
range (with the speech from a sound strip or an audio file), on the main thread; the model loads
and adapts in a worker thread (``core.style.adapt``), which never touches bpy; the main thread writes the
profile into the styles folder and updates the list. Interactive (the button): a modal operator
with a timer shows progress, Esc cancels and nothing is written. Scripts and headless runs
(``execute``) use the same job and wait for it.
"""

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..core.errors import ImitatorError
from ..core.fileio import atomic_write
from ..core.style.profile import SUFFIX, StyleProfile, read_profile_info
from . import dependencies
from .generate_job import INSTALL_HINT, resolve_model_folder
from .jobs import BackgroundJob, JobOperator
from .mesh import blender_to_core, mesh_topology, require_mesh
from .preferences import prefs, user_dir
from .style_ui import clean_name, refresh_styles, rename_style, styles_dir, unique_name

MAX_SECONDS = 30.0  # frames read from an object (core.style.adapt uses at most this much too)


# --------------------------------------------------------------------------- main thread: inputs

@dataclass
class AdaptRequest:
    """Everything the worker needs, as plain Python (read from Blender on the main thread)."""

    name: str
    model_dir: Path
    device: str  # AUTO, CUDA or CPU (the preferences)
    head_cache: Path
    lip_closures: bool = True
    transcript: str = ""
    steps1: int = 300
    steps2: int = 300
    clip_path: Path | None = None  # a clip file, or:
    vertices: np.ndarray | None = None  # (T, V, 3) core axes, an object's evaluated mesh
    fps: float = 0.0
    template: np.ndarray | None = None  # (V, 3) the object's rest shape (its neutral face)
    topology: str | None = None
    triangles: np.ndarray | None = None  # (F, 3) the object's faces, for a fit when it is another head
    flame_path: Path | None = None  # the preferences' FLAME model, for clips of FLAME parameters
    object_name: str = ""
    audio_path: Path | None = None
    audio_offset_s: float = 0.0  # where the first frame falls in audio_path (a sound strip)


def _model_dir(context, override: str) -> Path:
    """The Generate section's model (a profile only works with the model it was adapted with)."""
    folder = Path(bpy.path.abspath(override)) if override else resolve_model_folder(context)
    if not (folder / "config.json").is_file():
        raise ImitatorError(f"{folder}: no model there (no config.json); choose the model folder in the "
                            f"Generate section")
    return folder


def gather_request(context: bpy.types.Context, model_dir: str = "") -> AdaptRequest:
    """Read the Adapt Style inputs; raises a one-line ImitatorError and changes nothing if refused."""
    settings = context.scene.imitator_adapt
    name = clean_name(settings.style_name)
    missing = dependencies.missing_modules()
    if missing:
        raise ImitatorError(f"Missing Python packages: {', '.join(missing)}; {INSTALL_HINT}")
    request = AdaptRequest(name=name, model_dir=_model_dir(context, model_dir), device=prefs(context).device,
                           head_cache=user_dir("cache"), lip_closures=settings.lip_closures,
                           transcript=settings.transcript.strip(),
                           steps1=settings.steps1, steps2=settings.steps2)
    if settings.steps1 + settings.steps2 == 0:
        raise ImitatorError("Style Steps and Detail Steps are both 0; give at least one stage steps")
    if settings.audio_path:
        request.audio_path = Path(bpy.path.abspath(settings.audio_path))
        if not request.audio_path.is_file():
            raise ImitatorError(f"{request.audio_path}: audio file not found; choose the clip's audio")
    if settings.source == "FILE":
        if not settings.clip_path:
            raise ImitatorError("no clip chosen; pick a tracked clip file or folder in Adapt Style > Clip")
        request.clip_path = Path(bpy.path.abspath(settings.clip_path))
        if not request.clip_path.exists():
            raise ImitatorError(f"{request.clip_path}: clip not found; check the path")
        raw_flame = prefs(context).flame_model_path
        request.flame_path = Path(bpy.path.abspath(raw_flame)) if raw_flame else None
        return request
    obj = context.active_object
    require_mesh(obj)
    _require_animation(obj)
    scene = context.scene
    fps = scene.render.fps / scene.render.fps_base
    first, last = _frame_range(scene)
    last = min(last, first + int(MAX_SECONDS * fps) - 1)
    if request.audio_path is None:
        request.audio_path, start_s = _sound_strip(scene, obj, first, last)
        request.audio_offset_s = start_s
    request.vertices = read_object_frames(context, obj, first, last)
    request.fps, request.object_name = fps, obj.name
    request.template = blender_to_core(_rest(obj))
    request.topology = mesh_topology(obj.data)
    from .mesh import mesh_triangles

    request.triangles = mesh_triangles(obj.data)
    return request


def _frame_range(scene) -> tuple[int, int]:
    if scene.use_preview_range:
        return scene.frame_preview_start, scene.frame_preview_end
    return scene.frame_start, scene.frame_end


def _require_animation(obj: bpy.types.Object) -> None:
    key = obj.data.shape_keys

    def animated(data) -> bool:
        ad = getattr(data, "animation_data", None)
        return ad is not None and (ad.action is not None or len(ad.drivers) > 0)

    if not (animated(key) if key is not None else False) and not animated(obj) and not len(obj.modifiers):
        raise ImitatorError(f"'{obj.name}' has no animation (no shape-key keyframes or drivers, no "
                            f"modifiers); select the animated head or choose a clip file")


def _rest(obj: bpy.types.Object) -> np.ndarray:
    """(V, 3) the mesh's rest shape (the reference shape key when it has keys), Blender axes."""
    key = obj.data.shape_keys
    data = key.reference_key.data if key is not None else obj.data.vertices
    co = np.empty(len(data) * 3, np.float32)
    data.foreach_get("co", co)
    return co.reshape(-1, 3)


def read_object_frames(context: bpy.types.Context, obj: bpy.types.Object, first: int, last: int) -> np.ndarray:
    """(T, V, 3) evaluated vertices (object space, core axes) of frames first..last; the scene's
    current frame is restored afterwards."""
    scene = context.scene
    n = len(obj.data.vertices)
    frames = list(range(first, last + 1))
    out = np.empty((len(frames), n * 3), np.float32)
    current, subframe = scene.frame_current, scene.frame_subframe
    try:
        for i, frame in enumerate(frames):
            scene.frame_set(frame)
            evaluated = obj.evaluated_get(context.evaluated_depsgraph_get())
            mesh = evaluated.to_mesh()
            try:
                if len(mesh.vertices) != n:
                    raise ImitatorError(f"'{obj.name}' has {len(mesh.vertices)} vertices at frame {frame} "
                                        f"but {n} at rest; disable modifiers that change the topology")
                mesh.vertices.foreach_get("co", out[i])
            finally:
                evaluated.to_mesh_clear()
    finally:
        scene.frame_set(current, subframe=subframe)
    return blender_to_core(out.reshape(len(frames), n, 3))


def _sound_strip(scene, obj, first: int, last: int) -> tuple[Path, float]:
    """(file, seconds into it at frame ``first``) of the sound strip playing over the frame range."""
    editor = scene.sequence_editor
    everything = [] if editor is None else (getattr(editor, "strips_all", None) or editor.sequences_all)
    sounds = [s for s in everything if s.type == "SOUND" and not s.mute and s.sound is not None
              and s.frame_final_start <= last and s.frame_final_end > first]
    if not sounds:
        raise ImitatorError(f"no speech for '{obj.name}': add a sound strip over frames {first}-{last} "
                            f"or choose an audio file in Adapt Style > Audio")
    strip = min(sounds, key=lambda s: (s.channel, s.frame_start))
    if strip.sound.packed_file is not None:
        raise ImitatorError(f"sound '{strip.sound.name}' is packed into the .blend; unpack it "
                            f"(File > External Data) or choose the audio file in Adapt Style > Audio")
    path = Path(bpy.path.abspath(strip.sound.filepath, library=strip.sound.library))
    if not path.is_file():
        raise ImitatorError(f"{path}: the sound strip's file is missing; relink it or choose an audio file")
    fps = scene.render.fps / scene.render.fps_base
    return path, (first - strip.frame_start) / fps + float(getattr(strip, "sound_offset", 0.0))


# --------------------------------------------------------------------------- worker: no bpy here

def run_adaptation(request: AdaptRequest, report) -> StyleProfile:
    """Load the model and the clip, adapt; ``report(fraction, text)`` raises once cancelled."""
    from ..core.style.adapt import AdaptSettings, adapt
    from ..core.model.checkpoint import from_pretrained
    from .generate_job import resolve_device

    report(0.0, "Loading the model")
    model = from_pretrained(request.model_dir, resolve_device(request.device))
    report(0.02, "Reading the clip")
    flame = _flame_for(request)
    clip, head = _clip(request, flame)
    settings = AdaptSettings(steps1=request.steps1, steps2=request.steps2)
    total = max(request.steps1 + request.steps2, 1)

    def progress(stage: int, step: int, steps: int, loss: float) -> None:
        done = step + (request.steps1 if stage == 2 else 0)
        report(0.05 + 0.95 * done / total, f"Stage {stage}: step {step}/{steps}, fit loss {loss:.3g}")

    def status(text: str) -> None:
        report(0.03, text[:1].upper() + text[1:])

    topology = request.topology or (head.topology if head is not None else None)
    template = request.template
    if clip.vertices.shape[1] != model.config.num_vertices:  # another head: mapped through a head fit
        clip = _onto_model_head(request, clip, report, flame)
        template, topology = None, None
    return adapt(model, clip, name=request.name, settings=settings, transcript=request.transcript or None,
                 closures="auto" if request.lip_closures else None,
                 template=template, topology=topology, model_name=request.model_dir.name,
                 progress=progress, status=status)


def _flame_for(request: AdaptRequest):
    """The user's FLAME model when the clip file holds FLAME parameters (None otherwise)."""
    from ..core.data.clips import holds_flame_params

    if request.clip_path is None or request.flame_path is None or not holds_flame_params(request.clip_path):
        return None
    from ..core.faces.flame import load_flame

    return load_flame(request.flame_path)


def _onto_model_head(request: AdaptRequest, clip, report, flame=None):
    """A clip of another topology on the model head: through the object's kept fit (Fit Head), or
    a fit of its rest shape (an object) or first frame (a file) made now."""
    import dataclasses

    from ..core.faces.default_head import load_default_head
    from ..core.faces.fit_cli import clip_onto_model_head, clip_triangles
    from ..core.faces.head_fit import HeadFit, fit_head, fit_path_for

    source = load_default_head(request.head_cache)
    fit = None

    def fitting(fraction: float, text: str) -> None:
        report(0.02 + 0.02 * fraction, f"Fitting the clip's head: {text}")

    if request.clip_path is None:  # an animated object: its rest shape is the neutral
        path = fit_path_for(request.head_cache.parent, request.topology or "")
        try:
            fit = HeadFit.load(path)
            fit.check_target(request.object_name, len(request.template), request.topology or "", request.template)
        except ImitatorError:
            fit = fit_head(source, request.template, request.triangles, name=request.object_name,
                           target_topology=request.topology, progress=fitting)
        clip = dataclasses.replace(clip, vertices=np.concatenate([request.template[None], clip.vertices]))
        mapped, _ = clip_onto_model_head(clip, request.triangles, source, fit)
        return dataclasses.replace(mapped, vertices=mapped.vertices[1:])
    return clip_onto_model_head(clip, clip_triangles(request.clip_path, None, flame), source,
                                progress=fitting)[0]


def _clip(request: AdaptRequest, flame=None):
    from ..core.audio import AUDIO_RATE, load_audio
    from ..core.data.clips import Clip, load_clip

    if request.clip_path is not None:
        head = None
        if request.clip_path.suffix.lower() == ".csv":
            from ..core.faces.default_head import load_default_head

            head = load_default_head(request.head_cache)
        return load_clip(request.clip_path, head=head, flame=flame, audio=request.audio_path), head
    audio = load_audio(request.audio_path, AUDIO_RATE)
    seconds = len(request.vertices) / request.fps
    start = int(round(request.audio_offset_s * AUDIO_RATE))
    segment = np.zeros(int(round(seconds * AUDIO_RATE)), np.float32)
    a, b = max(start, 0), min(start + len(segment), len(audio))
    if b > a:
        segment[a - start: b - start] = audio[a:b]
    return Clip(request.vertices, request.fps, segment, AUDIO_RATE, Path(f"object '{request.object_name}'")), None


# --------------------------------------------------------------------------- main thread: the job

class AdaptRun:
    """One Adapt Style in progress: its request, its worker job, and the status it keeps current."""

    def __init__(self, request: AdaptRequest, job: BackgroundJob):
        self.request, self.job = request, job
        self.started = time.perf_counter()

    @classmethod
    def start(cls, context: bpy.types.Context, model_dir: str = "") -> "AdaptRun":
        """Check the inputs and start the worker; raises ImitatorError (nothing changed) if refused."""
        wm = context.window_manager
        if wm.imitator_style_busy:
            raise ImitatorError("an Adapt Style is already running; wait for it, or press Esc to cancel it")
        request = gather_request(context, model_dir)
        job = BackgroundJob("adapt style", lambda report: run_adaptation(request, report)).start()
        wm.imitator_style_busy = True
        wm.imitator_style_status = f"Adapting '{request.name}': starting"
        return cls(request, job)

    def update(self, context: bpy.types.Context) -> bool:
        """Show the latest progress; True once the worker has ended."""
        done = self.job.poll()
        wm = context.window_manager
        wm.imitator_style_status = f"Adapting '{self.request.name}': {self.job.progress.text}"[:200]
        wm.progress_update(int(1000 * self.job.progress.fraction))
        _redraw(context)
        return done

    def finish(self, context: bpy.types.Context) -> tuple[set[str], str]:
        """Write the profile and list it (main thread); (operator result, message)."""
        self._end(context)
        wm = context.window_manager
        if self.job.cancelled:
            text = "Adapt Style cancelled; nothing was written"
        elif self.job.error:
            text = self.job.error
        else:
            try:
                text = save_profile(context, self.job.result, time.perf_counter() - self.started)
            except (ImitatorError, OSError) as e:
                text = f"could not write the style: {e}"
            else:
                wm.imitator_style_status = text
                return {"FINISHED"}, text
        wm.imitator_style_status = text
        return {"CANCELLED"}, text

    def cancel(self, context: bpy.types.Context) -> None:
        """Stop: the worker ends at its next step; its result is dropped, nothing is written."""
        self.job.cancel()
        self._end(context)
        context.window_manager.imitator_style_status = "Adapt Style cancelled; nothing was written"

    def _end(self, context: bpy.types.Context) -> None:
        context.window_manager.imitator_style_busy = False
        context.window_manager.progress_end()
        _redraw(context)


def save_profile(context: bpy.types.Context, profile, seconds: float) -> str:
    """Write ``profile`` into the styles folder under a free name, list and select it."""
    name = unique_name(clean_name(profile.name))
    profile.meta["name"] = name
    path = profile.save(styles_dir() / f"{name}{SUFFIX}")
    refresh_styles(context.window_manager, select=path.name)
    meta = profile.meta
    losses = meta["losses"]
    last = losses.get("stage2") or losses.get("stage1")
    which = "held_out" if last.get("held_out") else "train"
    return (f"Style '{name}' from {meta['clip_seconds']:.1f} s: fit loss {losses['initial'][which]['total']:.3g}"
            f" -> {last[which]['total']:.3g} ({seconds:.0f} s)")


def _redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        if window.screen is not None:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()


class IMITATOR_OT_adapt_style(JobOperator, bpy.types.Operator):
    """Learn a speaking style from the animated head (or a clip file) and add it to the style list (Esc cancels)"""

    bl_idname = "imitator.adapt_style"
    bl_label = "Adapt Style"
    bl_options = {"REGISTER"}  # files only: the scene is not changed, so there is nothing to undo
    cancelled_text = "Adapt Style cancelled; nothing was written"

    model_dir: bpy.props.StringProperty(
        name="Model", subtype="DIR_PATH", options={"SKIP_SAVE"},
        description="Model folder (default: the Generate section's model)")

    def _start(self, context) -> AdaptRun | None:
        try:
            run = AdaptRun.start(context, self.model_dir)
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return None
        context.window_manager.progress_begin(0, 1000)
        return run

    def _end(self, context, outcome: tuple[set[str], str]) -> set[str]:
        result, text = outcome
        kind = "INFO" if result == {"FINISHED"} else "WARNING" if self._run.job.cancelled else "ERROR"
        self.report({kind}, text)
        return result

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        return super().invoke(context, event)


# --------------------------------------------------------------------------- the list's operators

def _selected(context) -> Path:
    wm = context.window_manager
    index = wm.imitator_style_index
    if not 0 <= index < len(wm.imitator_styles):
        raise ImitatorError("no style selected; pick one in the style list")
    path = styles_dir() / wm.imitator_styles[index].filename
    if not path.is_file():
        refresh_styles(wm)
        raise ImitatorError(f"{path}: style file is gone (deleted outside Blender?); the list is refreshed")
    return path


def validate_profile_file(path: Path) -> dict:
    """The profile's metadata; a one-line error for anything that is not a readable profile."""
    from ..core.style.profile import load_style_profile

    info = read_profile_info(path)  # header: format, version, truncation (needs nothing installed)
    try:
        load_style_profile(path)  # tensors: shapes, NaN (needs safetensors)
    except ImportError:
        pass
    return info


class _StyleOperator:
    bl_options = {"REGISTER"}

    def run(self, context) -> str:
        raise NotImplementedError

    def execute(self, context):
        try:
            text = self.run(context)
        except (ImitatorError, OSError) as e:
            self.report({"ERROR"}, str(e) if isinstance(e, ImitatorError) else f"{e.filename}: {e.strerror}")
            return {"CANCELLED"}
        context.window_manager.imitator_style_status = text
        self.report({"INFO"}, text)
        return {"FINISHED"}


class IMITATOR_OT_style_import(_StyleOperator, bpy.types.Operator, ImportHelper):
    """Copy a style profile (.imstyle) into your styles"""

    bl_idname = "imitator.style_import"
    bl_label = "Import Style"

    filename_ext = SUFFIX
    filter_glob: bpy.props.StringProperty(default=f"*{SUFFIX}", options={"HIDDEN"})

    def run(self, context) -> str:
        source = Path(bpy.path.abspath(self.filepath))
        info = validate_profile_file(source)
        name = unique_name(clean_name(source.stem))
        target = styles_dir() / f"{name}{SUFFIX}"
        _copy(source, target)
        refresh_styles(context.window_manager, select=target.name)
        base = str(info.get("base_model_name") or str(info.get("base_model", ""))[:12])
        return f"Imported style '{name}' (adapted with model {base})"


class IMITATOR_OT_style_export(_StyleOperator, bpy.types.Operator, ExportHelper):
    """Save a copy of the selected style profile"""

    bl_idname = "imitator.style_export"
    bl_label = "Export Style"

    filename_ext = SUFFIX
    filter_glob: bpy.props.StringProperty(default=f"*{SUFFIX}", options={"HIDDEN"})

    def invoke(self, context, event):
        try:
            self.filepath = _selected(context).name
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def run(self, context) -> str:
        source = _selected(context)
        target = Path(bpy.path.abspath(self.filepath))
        if target.suffix != SUFFIX:
            target = target.with_name(target.name + SUFFIX)
        if target.resolve() == source.resolve():
            raise ImitatorError(f"{target}: is the style itself; choose another place")
        _copy(source, target)
        return f"Exported style '{source.stem}' to {target}"


class IMITATOR_OT_style_rename(_StyleOperator, bpy.types.Operator):
    """Rename the selected style (and its file)"""

    bl_idname = "imitator.style_rename"
    bl_label = "Rename Style"

    new_name: bpy.props.StringProperty(name="Name", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        try:
            self.new_name = _selected(context).stem
        except ImitatorError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return context.window_manager.invoke_props_dialog(self)

    def run(self, context) -> str:
        source = _selected(context)
        target = rename_style(source, self.new_name)
        refresh_styles(context.window_manager, select=target.name)
        return f"Renamed style '{source.stem}' to '{target.stem}'"


class IMITATOR_OT_style_delete(_StyleOperator, bpy.types.Operator):
    """Delete the selected style's file"""

    bl_idname = "imitator.style_delete"
    bl_label = "Delete Style"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def run(self, context) -> str:
        path = _selected(context)
        wm = context.window_manager
        index = wm.imitator_style_index
        path.unlink()
        refresh_styles(wm)
        wm.imitator_style_index = min(index, len(wm.imitator_styles) - 1)
        return f"Deleted style '{path.stem}'"


class IMITATOR_OT_style_refresh(_StyleOperator, bpy.types.Operator):
    """Re-read the styles folder"""

    bl_idname = "imitator.style_refresh"
    bl_label = "Refresh Styles"

    def run(self, context) -> str:
        refresh_styles(context.window_manager)
        return f"{len(context.window_manager.imitator_styles)} styles in {styles_dir()}"


def _copy(source: Path, target: Path) -> None:
    """Copy a file so that ``target`` appears complete or not at all."""
    with open(source, "rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst)


CLASSES = (IMITATOR_OT_adapt_style, IMITATOR_OT_style_import, IMITATOR_OT_style_export,
           IMITATOR_OT_style_rename, IMITATOR_OT_style_delete, IMITATOR_OT_style_refresh)
