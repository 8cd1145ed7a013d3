"""Tracked clips (audio + a mesh sequence in a head's topology) from the formats people have.

``load_clip`` reads any of them into one ``Clip``; ``validate_clip`` checks it against the head it
will be used with (topology, NaN/Inf, fps, units, audio length) and ``resample`` moves it to the
model's frame rate. Writers give round trips and the animation export formats.

Formats (``load_clip`` picks by file type):
- ``.npz`` with ``vertices`` (T, V, 3) or (T, 3V), ``fps``, and ``audio`` + ``sample_rate`` or
  ``audio_path`` (relative to the npz);
- a folder of ``.obj`` or ``.ply`` frames (natural order: frame_2 before frame_10), the audio file in
  the folder or given, fps given or from a ``clip.json`` sidecar (``{"fps": 30}``);
- ``.npz`` with FLAME parameters: ``expression`` (T, <=100), ``jaw_pose`` (T, 3), optional
  ``neck_pose``, ``eye_pose`` (T, 6), ``global_pose``, ``translation``, ``shape``, ``fps``, audio
  as above; evaluated through the user's FLAME model;
- ``.csv`` of ARKit weights as Live Link Face exports it, evaluated on a head with ARKit keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import AUDIO_RATE, load_audio, save_wav, to_mono
from ..errors import ImitatorError
from ..faces.default_head import ARKIT_SHAPE_NAMES
from ..faces.head import Head
from ..fileio import atomic_write, new_file_mode, read_npz
from .livelink import read_arkit_csv, write_arkit_csv
from .meshfiles import MESH_SUFFIXES, faces_text, natural_key, read_mesh_vertices, write_obj

log = logging.getLogger(__name__)

__all__ = ["AUDIO_SUFFIXES", "Clip", "check_sequence_folder", "load_clip", "resample",
           "resample_frames", "save_arkit_csv", "save_clip_npz", "save_obj_sequence", "validate_clip"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SIDECAR = "clip.json"
FPS_RANGE = (10.0, 240.0)  # plausible capture rates
AUDIO_SLACK_S, AUDIO_SLACK_FRACTION = 0.2, 0.05  # audio/motion length difference fixed silently
SCALE_OK = (1 / 3, 3.0)  # clip size / head size accepted as metres (other identities, crops)
SCALE_MM = (300.0, 3000.0)  # ... taken as millimetres and converted
MAX_CLIP_BYTES = 2 << 30  # vertices a compact clip (FLAME parameters, ARKit CSV) may expand to
_FLAME_KEYS = {  # FlameModel.evaluate argument -> names found in parameter files
    "expression": ("expression", "exp", "expr"),
    "jaw": ("jaw_pose", "jaw"),
    "neck": ("neck_pose", "neck"),
    "eyes": ("eye_pose", "eyes_pose", "eyes"),
    "rotation": ("global_pose", "global_orient", "rotation"),
    "translation": ("translation", "transl", "trans"),
    "shape": ("shape", "shape_params", "betas"),
}


@dataclass
class Clip:
    """A mesh sequence with its speech: what style adaptation and the dataset tools consume."""

    vertices: np.ndarray  # (T, V, 3) float32, metres once validated
    fps: float
    audio: np.ndarray | None = None  # (N,) float32 mono samples
    sample_rate: int | None = None
    source: Path | None = None
    arkit: np.ndarray | None = None  # (T, 52) weights in ARKIT_SHAPE_NAMES order, when known

    @property
    def name(self) -> str:
        return str(self.source) if self.source is not None else "clip"

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[1])

    @property
    def duration(self) -> float:
        """Seconds of motion: frame i covers [i / fps, (i + 1) / fps)."""
        return self.num_frames / self.fps

    @property
    def audio_duration(self) -> float | None:
        return None if self.audio is None else len(self.audio) / self.sample_rate


# ------------------------------------------------------------------------------------------------
# Reading


def load_clip(path: str | os.PathLike, head: Head | None = None, flame: Any = None,
              fps: float | None = None, audio: str | os.PathLike | None = None) -> Clip:
    """Read a tracked clip in any supported format; validated against ``head`` when one is given.

    ``fps`` overrides or supplies the frame rate, ``audio`` an audio file to use instead of the
    clip's own. ``flame`` (a ``FlameModel``) is needed for FLAME parameter files, ``head`` (with
    ARKit shape keys) for ARKit CSVs.
    """
    path = Path(path)
    if not path.exists():
        raise ImitatorError(f"{path}: clip not found; check the path")
    suffix = path.suffix.lower()
    if path.is_dir():
        clip = _load_frames_folder(path, fps, audio)
    elif suffix == ".npz":
        clip = _load_npz(path, flame, fps, audio)
    elif suffix == ".csv":
        if head is None:
            raise ImitatorError(f"{path}: an ARKit CSV needs a head with ARKit shape keys; "
                                f"choose the default head")
        clip = _load_arkit_csv(path, head, fps, audio)
    elif suffix in MESH_SUFFIXES:
        raise ImitatorError(f"{path}: is a single mesh frame; choose the folder that holds all "
                            f"frames of the clip")
    else:
        raise ImitatorError(f"{path}: unknown clip format '{suffix}'; use .npz, a folder of "
                            f".obj/.ply frames, FLAME parameters (.npz) or a Live Link Face .csv")
    if head is None and flame is not None:
        head = flame.head()
    return validate_clip(clip, head) if head is not None else clip


def holds_flame_params(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an .npz clip of FLAME parameters (it needs the user's FLAME model)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "vertices" not in z.files and any(k in z.files for k in _FLAME_KEYS["expression"])
    except Exception:  # noqa: BLE001 - load_clip reports what is wrong with the file
        return False


def _load_npz(path: Path, flame: Any, fps: float | None, audio: Any) -> Clip:
    data = read_npz(path, fix="re-export the clip")
    is_flame = any(k in data for k in _FLAME_KEYS["expression"])
    if "vertices" not in data and not is_flame:
        raise ImitatorError(f"{path}: .npz has neither 'vertices' nor FLAME 'expression' (keys: "
                            f"{', '.join(sorted(data)) or 'none'}); see the clip formats in the docs")
    rate = _fps(path, data, fps)
    if "vertices" in data:
        vertices = np.asarray(data["vertices"])
        if vertices.ndim == 2 and vertices.shape[1] % 3 == 0:
            vertices = vertices.reshape(len(vertices), -1, 3)
        if vertices.ndim != 3 or vertices.shape[2] != 3:
            raise ImitatorError(f"{path}: 'vertices' has shape {vertices.shape}; expected "
                                f"(frames, vertices, 3) or (frames, 3 * vertices)")
        arkit = data.get("arkit")
        arkit = np.asarray(arkit, np.float32) if arkit is not None and arkit.shape == (
            len(vertices), len(ARKIT_SHAPE_NAMES)) else None
        samples, sr = _audio(path, data, audio)
        return Clip(vertices.astype(np.float32), rate, samples, sr, path, arkit)
    return _load_flame_params(path, data, flame, rate, audio)


def _fps(path: Path, data: dict, fps: float | None) -> float:
    if fps is not None:
        if "fps" in data and abs(float(data["fps"]) - float(fps)) > 1e-6:
            log.info("%s: using fps %g given instead of the file's %g", path, fps, float(data["fps"]))
        return float(fps)
    if "fps" not in data:
        raise ImitatorError(f"{path}: no 'fps' in the file; give the clip's frame rate (--fps)")
    try:
        return float(np.asarray(data["fps"]).reshape(()))
    except (TypeError, ValueError):
        raise ImitatorError(f"{path}: 'fps' is {data['fps']!r}, not a number; fix the file") from None


def _audio(path: Path, data: dict, audio: Any) -> tuple[np.ndarray | None, int | None]:
    """(samples, rate) from the ``audio`` argument, else the file's samples or audio_path."""
    if audio is not None:
        return load_audio(audio, AUDIO_RATE), AUDIO_RATE
    if "audio" in data:
        if "sample_rate" not in data:
            raise ImitatorError(f"{path}: has 'audio' samples but no 'sample_rate'; add it")
        samples = np.asarray(data["audio"])
        if samples.ndim == 2 and samples.shape[0] < samples.shape[1] and samples.shape[0] <= 8:
            samples = samples.T  # (channels, N) -> (N, channels)
        return to_mono(samples.astype(np.float32)), int(np.asarray(data["sample_rate"]).reshape(()))
    if "audio_path" in data:
        audio_path = Path(str(np.asarray(data["audio_path"]).reshape(())))
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        return load_audio(audio_path, AUDIO_RATE), AUDIO_RATE
    return None, None


def _load_flame_params(path: Path, data: dict, flame: Any, rate: float, audio: Any) -> Clip:
    if flame is None:
        raise ImitatorError(f"{path}: holds FLAME parameters; choose your FLAME model file "
                            f"(generic_model.pkl) in the preferences or pass --flame")
    params = {}
    for arg, names in _FLAME_KEYS.items():
        key = next((n for n in names if n in data), None)
        if key is None:
            continue
        value = np.asarray(data[key], dtype=np.float64)
        if arg == "shape" and value.ndim == 2 and len(value) == 1:
            value = value[0]
        if arg != "shape" and value.ndim == 2:
            bad = ~np.isfinite(value).all(axis=1)
            if bad.any():
                raise ImitatorError(f"{path}: '{key}' holds NaN or Inf at frame "
                                    f"{int(np.argmax(bad))}; clean the tracking result")
        params[arg] = value
    frames = {k: v.shape[0] for k, v in params.items() if k != "shape" and v.ndim == 2}
    if len(set(frames.values())) > 1:
        raise ImitatorError(f"{path}: FLAME parameters disagree on the frame count ("
                            f"{', '.join(f'{k} {n}' for k, n in frames.items())}); fix the file")
    _check_size(path, max(frames.values(), default=1), flame.num_vertices)
    try:
        vertices = flame.evaluate(**params)
    except ImitatorError as exc:
        raise ImitatorError(f"{path}: {exc}") from None
    if vertices.ndim == 2:
        vertices = vertices[None]
    samples, sr = _audio(path, data, audio)
    return Clip(vertices.astype(np.float32), rate, samples, sr, path)


def _check_size(path: Path, frames: int, num_vertices: int) -> None:
    """Refuse a compact clip (FLAME parameters, ARKit weights) whose vertices would not fit the
    budget: they are about 75x larger than the file's numbers."""
    need = frames * num_vertices * 3 * 4
    if need > MAX_CLIP_BYTES:
        raise ImitatorError(f"{path}: {frames:,} frames would take {need / 2**30:.1f} GB as vertices "
                            f"(at most {MAX_CLIP_BYTES / 2**30:.0f} GB); trim the clip to a few "
                            f"minutes (adaptation uses at most a minute)")


def _load_frames_folder(folder: Path, fps: float | None, audio: Any) -> Clip:
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES
                     and not p.name.startswith(".")), key=natural_key)
    kinds = {p.suffix.lower() for p in frames}
    if not frames:
        raise ImitatorError(f"{folder}: no .obj or .ply frames in the folder; choose the folder "
                            f"that holds the mesh sequence")
    if len(kinds) > 1:
        raise ImitatorError(f"{folder}: holds both .obj and .ply files; keep one sequence per folder")
    first = read_mesh_vertices(frames[0])
    vertices = np.empty((len(frames),) + first.shape, dtype=np.float32)
    vertices[0] = first
    for i, p in enumerate(frames[1:], start=1):
        v = read_mesh_vertices(p)
        if v.shape != first.shape:
            raise ImitatorError(f"{p}: frame has {len(v)} vertices but {frames[0].name} has "
                                f"{len(first)}; every frame must share one topology")
        vertices[i] = v
    if fps is None:
        fps = _sidecar_fps(folder)
    if audio is None:
        sounds = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if len(sounds) > 1:
            raise ImitatorError(f"{folder}: holds several audio files ({', '.join(p.name for p in sounds)}); "
                                f"give the clip's audio file explicitly")
        audio = sounds[0] if sounds else None
    samples = load_audio(audio, AUDIO_RATE) if audio is not None else None
    return Clip(vertices, float(fps), samples, AUDIO_RATE if audio is not None else None, folder)


def _sidecar_fps(folder: Path) -> float:
    """fps from ``clip.json`` (or the folder's only .json) holding ``{"fps": ...}``."""
    sidecar = folder / SIDECAR
    if not sidecar.is_file():
        others = [p for p in folder.glob("*.json")]
        sidecar = others[0] if len(others) == 1 else sidecar
    if not sidecar.is_file():
        raise ImitatorError(f"{folder}: no frame rate; give --fps or add {SIDECAR} with "
                            f'{{"fps": 30}} to the folder')
    try:
        return float(json.loads(sidecar.read_text())["fps"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImitatorError(f"{sidecar}: no readable 'fps' ({type(exc).__name__}: {exc}); write "
                            f'{{"fps": 30}} or give --fps') from None


def _load_arkit_csv(path: Path, head: Head, fps: float | None, audio: Any) -> Clip:
    keys = [n for n in ARKIT_SHAPE_NAMES if n in head.shape_keys]
    if not keys:
        raise ImitatorError(f"{path}: head '{head.name}' has no ARKit shape keys (jawOpen, ...); "
                            f"use the default head for ARKit CSVs")
    take = read_arkit_csv(path, fps)
    columns = [ARKIT_SHAPE_NAMES.index(n) for n in keys]
    unused = np.abs(np.delete(take.weights, columns, axis=1)).max(initial=0.0)
    if unused > 0.05:
        log.warning("%s: head '%s' lacks some ARKit keys the take uses; they are left out",
                    path, head.name)
    basis = np.stack([head.shape_keys[n] for n in keys]).reshape(len(keys), -1)  # (K, 3V)
    _check_size(path, len(take.weights), head.num_vertices)
    flat = take.weights[:, columns] @ basis  # (T, 3V)
    vertices = (flat.reshape(len(flat), -1, 3) + head.vertices).astype(np.float32)
    samples = load_audio(audio, AUDIO_RATE) if audio is not None else None
    if samples is None:
        sounds = [path.with_suffix(s) for s in AUDIO_SUFFIXES if path.with_suffix(s).is_file()]
        if sounds:  # Live Link Face saves the take's audio beside the CSV (same name, .wav/.mov)
            samples = load_audio(sounds[0], AUDIO_RATE)
    return Clip(vertices, take.fps, samples, AUDIO_RATE if samples is not None else None, path,
                take.weights)


# ------------------------------------------------------------------------------------------------
# Validation and resampling


def validate_clip(clip: Clip, head: Head, *, require_audio: bool = False) -> Clip:
    """The clip checked against ``head``: topology, finite values, fps, units, audio length.

    Millimetre clips are converted to metres and small audio/motion length differences are
    trimmed or padded (both logged); anything else wrong raises a one-line ImitatorError.
    """
    name = clip.name
    v = np.asarray(clip.vertices)
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] == 0:
        raise ImitatorError(f"{name}: vertices have shape {v.shape}; expected (frames, vertices, 3) "
                            f"with at least one frame")
    if v.shape[1] != head.num_vertices:
        raise ImitatorError(f"{name}: clip has {v.shape[1]} vertices but head '{head.name}' has "
                            f"{head.num_vertices}; the clip must be tracked or exported in the "
                            f"head's topology")
    bad = ~np.isfinite(v).reshape(len(v), -1).all(axis=1)
    if bad.any():
        raise ImitatorError(f"{name}: frame {int(np.argmax(bad))} holds NaN or Inf vertices "
                            f"({int(bad.sum())} bad frames); clean or re-export the clip")
    fps = float(clip.fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ImitatorError(f"{name}: fps is {clip.fps}; give the clip's positive frame rate")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise ImitatorError(f"{name}: fps {fps:g} is outside {FPS_RANGE[0]:g}..{FPS_RANGE[1]:g}; "
                            f"give the clip's real frame rate")
    v = _to_metres(name, v.astype(np.float32, copy=False), head)
    audio, sr = clip.audio, clip.sample_rate
    if audio is None:
        if require_audio:
            raise ImitatorError(f"{name}: clip has no audio; give the audio file of the take")
    else:
        audio = _fit_audio(name, np.asarray(audio, dtype=np.float32).reshape(-1), sr,
                           len(v) / fps)
    return dataclasses.replace(clip, vertices=v, fps=fps, audio=audio, sample_rate=sr)


def _to_metres(name: str, v: np.ndarray, head: Head) -> np.ndarray:
    """Detect millimetres from the clip's size relative to the head's template."""

    def size(x: np.ndarray) -> float:  # RMS distance from the centroid
        return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))

    ratio = size(v[0].astype(np.float64)) / max(size(head.vertices.astype(np.float64)), 1e-12)
    if SCALE_OK[0] <= ratio <= SCALE_OK[1]:
        return v
    if SCALE_MM[0] <= ratio <= SCALE_MM[1]:
        log.info("%s: vertices are in millimetres (%.0fx the head); converted to metres", name, ratio)
        return (v * np.float32(1e-3)).astype(np.float32)
    raise ImitatorError(f"{name}: clip is {ratio:.3g}x the size of head '{head.name}'; expected "
                        f"metres (millimetres are converted); rescale the clip to metres")


def _fit_audio(name: str, audio: np.ndarray, sr: int | None, motion_s: float) -> np.ndarray:
    if sr is None or int(sr) <= 0:
        raise ImitatorError(f"{name}: audio has no valid sample rate ({sr}); store 'sample_rate'")
    if audio.size == 0:
        raise ImitatorError(f"{name}: audio holds no samples; give the audio of the take")
    if not np.all(np.isfinite(audio)):
        raise ImitatorError(f"{name}: audio holds NaN or Inf samples; re-export the audio")
    audio_s = len(audio) / sr
    slack = max(AUDIO_SLACK_S, AUDIO_SLACK_FRACTION * motion_s)
    if abs(audio_s - motion_s) > slack:
        shorter = "shorter" if audio_s < motion_s else "longer"
        raise ImitatorError(f"{name}: audio is {audio_s:.2f} s, {shorter} than the motion "
                            f"({motion_s:.2f} s) by more than {slack:.2f} s; give the matching "
                            f"audio or trim both to the same take")
    n = int(round(motion_s * sr))
    if n != len(audio):
        log.info("%s: audio %s by %.3f s to match the motion", name,
                 "trimmed" if len(audio) > n else "padded", abs(len(audio) - n) / sr)
        audio = audio[:n] if len(audio) > n else np.pad(audio, (0, n - len(audio)))
    return audio


def resample_frames(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """(T, ...) -> (T', ...) sampled at j / fps_out by linear interpolation in time.

    Output frames span the input's (no extrapolation): T' = floor((T - 1) * fps_out / fps_in) + 1,
    so 60 -> 30 fps gives exactly ``frames[::2]``.
    """
    frames = np.asarray(frames)
    if fps_in == fps_out or len(frames) <= 1:
        return frames.copy()
    ratio = float(fps_in) / float(fps_out)
    n_out = int(np.floor((len(frames) - 1) / ratio + 1e-9)) + 1
    pos = np.arange(n_out) * ratio  # source frame of each output frame
    near = np.round(pos)
    pos = np.where(np.abs(pos - near) < 1e-9, near, pos)
    i0 = np.minimum(np.floor(pos).astype(np.int64), len(frames) - 1)
    i1 = np.minimum(i0 + 1, len(frames) - 1)
    a = (pos - i0).astype(np.float32 if frames.dtype == np.float32 else np.float64)
    a = a.reshape((-1,) + (1,) * (frames.ndim - 1))
    return ((1 - a) * frames[i0] + a * frames[i1]).astype(frames.dtype, copy=False)


def resample(clip: Clip, fps: float) -> Clip:
    """The clip at ``fps`` (vertices and ARKit weights linear in time; audio unchanged)."""
    if not (np.isfinite(fps) and fps > 0):
        raise ImitatorError(f"{clip.name}: target fps {fps} must be a positive number")
    arkit = None if clip.arkit is None else resample_frames(clip.arkit, clip.fps, fps)
    return dataclasses.replace(clip, vertices=resample_frames(clip.vertices, clip.fps, fps),
                               fps=float(fps), arkit=arkit)


# ------------------------------------------------------------------------------------------------
# Writing


def save_clip_npz(path: str | os.PathLike, clip: Clip) -> None:
    """Write the clip as .npz (vertices, fps, audio + sample_rate, arkit), atomically."""
    arrays: dict[str, np.ndarray] = {
        "vertices": np.asarray(clip.vertices, dtype=np.float32),
        "fps": np.float64(clip.fps),
    }
    if clip.audio is not None:
        arrays["audio"] = np.asarray(clip.audio, dtype=np.float32)
        arrays["sample_rate"] = np.int64(clip.sample_rate)
    if clip.arkit is not None:
        arrays["arkit"] = np.asarray(clip.arkit, dtype=np.float32)
    with atomic_write(Path(path)) as f:
        np.savez(f, **arrays)


def check_sequence_folder(folder: Path, *, overwrite: bool = False, option: str = "") -> None:
    """Refuse what ``save_obj_sequence`` would refuse, before any work: an existing folder
    without ``overwrite``, a file, or a folder that holds more than a previous sequence."""
    where = f"{option} {folder}" if option else str(folder)
    if folder.exists() and not folder.is_dir():
        raise ImitatorError(f"{where}: is a file, not a folder; give a new folder name")
    if folder.exists() and not overwrite:
        raise ImitatorError(f"{where}: already exists; choose a new folder or "
                            f"{'pass --overwrite' if option else 'allow overwriting'}")
    if folder.exists():
        foreign = [p.name for p in folder.iterdir() if not _ours(p)]
        if foreign:
            raise ImitatorError(f"{where}: holds other files ({', '.join(foreign[:3])}); choose "
                                f"an empty or new folder")


def save_obj_sequence(folder: str | os.PathLike, clip: Clip, head: Head | None = None, *,
                      overwrite: bool = False) -> Path:
    """Write ``frame_00000.obj`` ... (faces from ``head``), ``audio.wav`` and ``clip.json``.

    The folder appears complete or not at all: it is written beside the target and renamed.
    An existing folder is replaced only with ``overwrite`` and only if it holds nothing but a
    previous sequence.
    """
    folder = Path(folder)
    check_sequence_folder(folder, overwrite=overwrite)
    faces = faces_text(head.face_sizes, head.face_indices) if head is not None else ""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with contextlib.suppress(OSError):
            os.chmod(tmp, new_file_mode(folder, folder=True))  # mkdtemp's 0700 otherwise
        digits = max(5, len(str(clip.num_frames - 1)))
        for i, frame in enumerate(np.asarray(clip.vertices)):
            write_obj(tmp / f"frame_{i:0{digits}d}.obj", frame, faces)
        meta: dict[str, Any] = {"fps": float(clip.fps), "frames": clip.num_frames}
        if clip.audio is not None:
            save_wav(tmp / "audio.wav", clip.audio, int(clip.sample_rate))
            meta["audio"] = "audio.wav"
        with atomic_write(tmp / SIDECAR) as f:
            f.write(json.dumps(meta, indent=1).encode())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _ours(p: Path) -> bool:
    return p.name in (SIDECAR, "audio.wav") or (p.name.startswith("frame_") and p.suffix == ".obj")


def save_arkit_csv(path: str | os.PathLike, weights: np.ndarray, fps: float,
                   rotations: np.ndarray | None = None) -> None:
    """ARKit weights (T, 52) in ``ARKIT_SHAPE_NAMES`` order as a Live Link Face CSV."""
    write_arkit_csv(path, weights, fps, rotations)
