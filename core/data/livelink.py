"""ARKit blendshape CSV as exported by Epic's Live Link Face app (and written back the same way).

Layout: a header ``Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll``, then one row per
captured frame: timecode ``HH:MM:SS:FF.mmm`` (FF counts frames at the recording rate, 60 by default
in the app; the part after the dot is a sub-frame fraction), the count 61, 52 weights in 0..1 and
9 head/eye rotations. Column names are PascalCase; our heads use ARKit's camelCase names.
Rows are matched by name, case-insensitively, so other tools' column orders read too.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImitatorError
from ..faces.default_head import ARKIT_SHAPE_NAMES
from ..fileio import atomic_write

log = logging.getLogger(__name__)

__all__ = ["LIVE_LINK_NAMES", "ROTATION_NAMES", "ArkitTake", "read_arkit_csv", "write_arkit_csv"]

# Live Link Face's column order (ARKit's enum order: note JawRight before JawLeft).
LIVE_LINK_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft", "mouthSmileLeft",
    "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
ROTATION_NAMES = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                  "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
DEFAULT_FPS = 60.0  # Live Link Face's default capture rate
MAX_GAP_S = 1.0  # longest run of dropped frames filled in (the grid is as long as the timecodes span)
_STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+)(?:\.(\d+))?\s*$")

assert sorted(LIVE_LINK_NAMES) == sorted(ARKIT_SHAPE_NAMES)


@dataclass
class ArkitTake:
    """ARKit weights on a uniform time grid, columns in ``ARKIT_SHAPE_NAMES`` (the head's order)."""

    weights: np.ndarray  # (T, 52) float32
    fps: float
    rotations: np.ndarray | None  # (T, 9) head/eye rotations as recorded, or None


def read_arkit_csv(path: str | os.PathLike, fps: float | None = None) -> ArkitTake:
    """Read a Live Link Face CSV; rows are resampled onto a uniform grid from their timecodes.

    ``fps`` is the recording rate; when None it is read from the timecodes' frame field
    (the largest FF + 1, snapped to a standard rate) or taken as Live Link Face's default 60.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise ImitatorError(f"{path}: ARKit CSV not found; check the path") from None
    except OSError as exc:
        raise ImitatorError(f"{path}: cannot read the ARKit CSV ({exc.strerror})") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise ImitatorError(f"{path}: ARKit CSV is empty; export the take again from Live Link Face")
    header = [c.strip() for c in rows[0]]
    lower = {name.lower(): i for i, name in enumerate(header)}
    found = [lower.get(n.lower()) for n in ARKIT_SHAPE_NAMES]
    if sum(i is not None for i in found) == 0:
        raise ImitatorError(f"{path}: no ARKit blendshape columns (e.g. JawOpen) in the header; "
                            f"choose a Live Link Face CSV export")
    missing = [n for n, i in zip(ARKIT_SHAPE_NAMES, found) if i is None]
    if missing:
        log.warning("%s: %d ARKit columns missing (%s...), taken as 0", path, len(missing),
                    ", ".join(missing[:3]))
    body = rows[1:]
    if not body:
        raise ImitatorError(f"{path}: ARKit CSV has a header but no frames; export the take again")
    width = len(header)
    for k, r in enumerate(body):
        if len(r) < width:
            raise ImitatorError(f"{path}: row {k + 2} has {len(r)} of {width} columns (file "
                                f"truncated?); export the take again")
    try:
        table = np.array([[r[i] if i is not None else "0" for i in found] for r in body],
                         dtype=np.float64)
        rot_cols = [lower.get(n.lower()) for n in ROTATION_NAMES]
        rotations = (np.array([[r[i] for i in rot_cols] for r in body], dtype=np.float64)
                     if all(i is not None for i in rot_cols) else None)
    except ValueError as exc:
        raise ImitatorError(f"{path}: a weight is not a number ({exc}); export the take again") \
            from None
    bad = ~np.isfinite(table).all(axis=1)
    if bad.any():
        raise ImitatorError(f"{path}: frame {int(np.argmax(bad))} (row {int(np.argmax(bad)) + 2}) "
                            f"holds NaN or Inf weights; clean or re-export the take")
    stamps = [r[lower["timecode"]] for r in body] if "timecode" in lower else None
    seconds, fps = _times(path, stamps, fps, len(body))
    weights, rotations = _uniform(seconds, fps, table, rotations)
    return ArkitTake(weights.astype(np.float32), fps,
                     None if rotations is None else rotations.astype(np.float32))


def _times(path: Path, stamps: list[str] | None, fps: float | None, n: int
           ) -> tuple[np.ndarray | None, float]:
    """Seconds of each row from the first (None: rows are evenly spaced) and the frame rate."""
    parsed = [_TIMECODE.match(s) for s in stamps] if stamps else []
    bad = [k for k, m in enumerate(parsed) if m is None]
    if bad and len(bad) < len(parsed):  # a few broken rows: their times cannot be guessed
        raise ImitatorError(f"{path}: row {bad[0] + 2} has an unreadable timecode "
                            f"{stamps[bad[0]].strip()[:40]!r} ({len(bad)} such rows; expected "
                            f"HH:MM:SS:FF.mmm); fix or delete those rows, or export the take again")
    if not stamps or not all(parsed):
        if stamps and all(s.strip().isdigit() for s in stamps):  # other tools write frame numbers
            frames = np.array([int(s) for s in stamps], dtype=np.float64)
            fps = float(fps or DEFAULT_FPS)
            return _check_gaps(path, (frames - frames[0]) / fps), fps
        if stamps:
            log.warning("%s: unreadable timecodes, rows taken as evenly spaced", path)
        return None, float(fps or DEFAULT_FPS)
    hms = np.array([[int(m[1]), int(m[2]), int(m[3])] for m in parsed], dtype=np.float64)
    ff = np.array([int(m[4]) + (float("0." + m[5]) if m[5] else 0.0) for m in parsed])
    if fps is None:
        whole = hms @ [3600.0, 60.0, 1.0]
        if whole[-1] > whole[0]:  # the frame field wrapped at least once: its range is the rate
            top = float(np.floor(ff.max())) + 1
            fps = min(_STANDARD_RATES, key=lambda r: abs(r - top))
            if abs(fps - top) > 1:
                fps = top
        else:
            fps = DEFAULT_FPS
            log.info("%s: shorter than a second; assuming Live Link Face's %g fps", path, fps)
    if ff.max() >= fps + 1:
        raise ImitatorError(f"{path}: timecode frame {int(ff.max())} does not fit {fps:g} fps; "
                            f"give the recording frame rate")
    seconds = hms @ [3600.0, 60.0, 1.0] + ff / fps
    seconds = seconds + 86400 * np.cumsum(np.diff(seconds, prepend=seconds[0]) < -43200)  # midnight
    return _check_gaps(path, seconds - seconds[0]), float(fps)


def _check_gaps(path: Path, seconds: np.ndarray) -> np.ndarray:
    """Refuse a jump of more than MAX_GAP_S between rows: dropped frames are short, and the
    uniform grid is as long as the timecodes span (99 hours between two rows: 8.9 GB)."""
    gaps = np.diff(seconds)
    if gaps.size and gaps.max() > MAX_GAP_S:
        row = int(np.argmax(gaps)) + 3
        raise ImitatorError(f"{path}: the timecode jumps {gaps.max():.1f} s at row {row} (more than "
                            f"{MAX_GAP_S:g} s of missing frames: two takes in one file?); split or "
                            f"export the take again")
    return seconds


def _uniform(seconds: np.ndarray | None, fps: float, table: np.ndarray,
             rotations: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows interpolated onto frames 0, 1/fps, 2/fps, ... (dropped frames filled, repeats merged)."""
    if seconds is None:
        return table, rotations
    keep = np.concatenate([[True], np.diff(seconds) > 1e-6])  # first of repeated timestamps
    if not np.all(np.diff(seconds[keep]) > 0):  # out of order: trust row order instead
        return table, rotations
    t, table = seconds[keep], table[keep]
    grid = np.arange(int(np.floor(t[-1] * fps + 1e-6)) + 1) / fps
    if len(grid) == len(t) and np.allclose(grid, t, atol=1e-4):
        return table, None if rotations is None else rotations[keep]

    def interp(a: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(grid, t, a[:, k]) for k in range(a.shape[1])], axis=1)

    return interp(table), None if rotations is None else interp(rotations[keep])


def write_arkit_csv(path: str | os.PathLike, weights: np.ndarray, fps: float,
                    rotations: np.ndarray | None = None, start_seconds: float = 0.0) -> None:
    """Write weights (T, 52) in ``ARKIT_SHAPE_NAMES`` order as a Live Link Face CSV, atomically."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(ARKIT_SHAPE_NAMES):
        raise ImitatorError(f"{path}: ARKit weights have shape {weights.shape}, expected (frames, 52)")
    if not (np.isfinite(fps) and fps > 0):
        raise ImitatorError(f"{path}: fps is {fps}; give a positive frame rate")
    T = len(weights)
    rotations = np.zeros((T, 9)) if rotations is None else np.asarray(rotations, dtype=np.float64)
    order = [ARKIT_SHAPE_NAMES.index(n) for n in LIVE_LINK_NAMES]
    columns = np.concatenate([weights[:, order], rotations], axis=1)
    header = ["Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in LIVE_LINK_NAMES),
              *ROTATION_NAMES]
    lines = [",".join(header)]
    count = len(LIVE_LINK_NAMES) + len(ROTATION_NAMES)
    row_format = ",".join(["%.8f"] * columns.shape[1])
    for i in range(T):
        lines.append(f"{_timecode(start_seconds + i / fps, fps)},{count}," + row_format
                     % tuple(columns[i]))
    with atomic_write(Path(path)) as f:
        f.write(("\n".join(lines) + "\n").encode("ascii"))


def _timecode(seconds: float, fps: float) -> str:
    """HH:MM:SS:FF.mmm at ``fps`` (FF whole frames within the second, .mmm the sub-frame)."""
    frame = seconds * fps
    if abs(frame - round(frame)) < 1e-6:
        frame = float(round(frame))
    if float(fps).is_integer():
        whole = int(np.floor(frame))
        s, ff = divmod(whole, int(fps))
        sub = frame - whole
    else:
        s = int(np.floor(seconds + 1e-9))
        within = max(0.0, (seconds - s) * fps)
        ff = int(np.floor(within))
        sub = within - ff
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}:{ff:02d}.{min(999, int(round(sub * 1000))):03d}"
