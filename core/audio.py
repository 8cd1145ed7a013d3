"""Audio in: any file libsndfile reads -> mono float32 at the rate the caller asks for.

Files are read block by block and resampled as a stream (soxr), so memory follows the *output*
(16 kHz mono: 3.7 MB per minute), never the source (a 192 kHz 6-channel file is 276 MB per minute).
Hours-long files are therefore loaded, not refused; ``stream_audio`` yields blocks for callers that
process windows and want bounded memory whatever the length.

Bad input is an ``ImitatorError`` of one line naming the file: missing, not audio, empty, silent,
NaN/Inf samples. Clipping is only logged (the file is usable).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["AUDIO_RATE", "AudioInfo", "audio_info", "check_audio", "load_audio", "resample_audio", "save_wav",
           "stream_audio", "to_mono"]

AUDIO_RATE = 16000  # what the audio encoders take
SILENCE_PEAK = 1e-4  # -80 dBFS: below this everywhere, a file holds no usable speech
CLIPPED_FRACTION = 1e-3  # share of samples at full scale above which clipping is logged
LONG_SECONDS = 600.0  # longer files are logged with a hint to stream them
_BLOCK_SECONDS = 10.0
_CONVERT_HINT = "convert it to WAV or FLAC (e.g. `ffmpeg -i INPUT -ac 1 out.wav`)"


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(path: Path):
    """An open ``soundfile.SoundFile``; every failure becomes a one-line ImitatorError."""
    import soundfile as sf

    if not path.exists():
        raise ImitatorError(f"{path}: audio file not found; check the path")
    if path.is_dir():
        raise ImitatorError(f"{path}: is a folder, not an audio file; choose the file itself")
    if path.stat().st_size == 0:
        raise ImitatorError(f"{path}: audio file is empty (0 bytes); choose a recording with speech")
    try:
        return sf.SoundFile(str(path))
    except PermissionError:
        raise ImitatorError(f"{path}: permission denied; make the audio file readable") from None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ImitatorError(f"{path}: not a readable audio file ({_why_unreadable(path, exc)}); "
                            f"{_CONVERT_HINT}") from None


def _why_unreadable(path: Path, exc: Exception) -> str:
    """What the file is instead of audio, from its first bytes; else libsndfile's first line
    (its mp3 decoder says "possibly a pipe?" of any file it cannot parse)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if head.startswith((b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"%PDF", b"\x89PNG", b"\xff\xd8\xff")):
        return f"it is not audio: it starts with {head[:4]!r}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"it is a text file ('{' '.join(text.split())[:30]}...'), not audio"
    reason = str(exc).replace(f"Error opening {str(path)!r}: ", "").split("Note:")[0]
    reason = " ".join(reason.split())
    if "possibly a pipe" in reason:
        return "the format is not recognised"
    return reason or "the format is not recognised"


_DECLARED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _warn_truncated(path: Path, f) -> None:
    """A WAV (or AIFF) header that promises more data than the file holds: a copy cut short."""
    match = _DECLARED.search(getattr(f, "extra_info", "") or "")
    if match is None:
        return
    declared, present = int(match[1]), int(match[2])
    if declared in (0, 0xFFFFFFFF, 0x7FFFFFFF) or declared <= present:  # streamed-out headers
        return
    log.warning("%s: audio data is truncated (the header promises %d bytes, the file holds %d); "
                "using the %.2f s that are there; re-export or re-copy the file to get all of it",
                path, declared, present, f.frames / max(f.samplerate, 1))


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels, length and sample format, read from the header only."""
    path = Path(path)
    with _open(path) as f:
        return AudioInfo(path, int(f.samplerate), int(f.channels), int(f.frames), str(f.subtype))


def check_audio(path: str | os.PathLike) -> AudioInfo:
    """The header of an audio file a command is about to use, refused up front (one line naming
    it) when unreadable or without samples."""
    info = audio_info(path)
    if info.frames == 0:
        raise ImitatorError(f"{info.path}: audio file holds no samples; choose a recording with speech")
    return info


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) -> (N,) float32, channels averaged."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.reshape(-1)


def resample_audio(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Mono float32 samples from ``sr_in`` to ``sr_out`` Hz (soxr, high quality)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if int(sr_in) == int(sr_out) or samples.size == 0:
        return samples.copy()
    import soxr

    return soxr.resample(samples, int(sr_in), int(sr_out), quality="HQ").astype(np.float32)


def stream_audio(path: str | os.PathLike, sr: int = AUDIO_RATE, *,
                 block_seconds: float = 30.0, warn_silent: bool = True) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``sr`` Hz of about ``block_seconds`` each; memory is one block.

    Raises ImitatorError on unreadable files, NaN/Inf samples and (at the end) no samples at all;
    warns (one line) about truncated data and, with ``warn_silent``, about a silent file, whose
    animation is then the rest pose. ``load_audio`` refuses silent files instead.
    """
    path = Path(path)
    with _open(path) as f:
        _warn_truncated(path, f)
        total, peak = 0, 0.0
        sr_in = int(f.samplerate)
        block = max(1, int(round(block_seconds * sr_in)))
        stream = None
        if sr_in != int(sr):
            import soxr

            stream = soxr.ResampleStream(sr_in, int(sr), 1, dtype="float32", quality="HQ")
        while True:
            try:
                raw = f.read(block, dtype="float32", always_2d=True)
            except (RuntimeError, ValueError) as exc:
                raise ImitatorError(f"{path}: audio data is corrupt after {f.tell() / sr_in:.1f} s "
                                    f"({' '.join(str(exc).split())}); {_CONVERT_HINT}") from None
            last = len(raw) < block
            mono = to_mono(raw)
            if not np.all(np.isfinite(mono)):
                at = (f.tell() - len(raw) + int(np.argmin(np.isfinite(mono)))) / sr_in
                raise ImitatorError(f"{path}: audio holds NaN or Inf samples (first at {at:.2f} s); "
                                    f"re-export the audio")
            total += mono.size
            if mono.size:
                peak = max(peak, float(np.abs(mono).max()))
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            if out.size:
                yield out
            if last:
                break
    if total == 0:
        raise ImitatorError(f"{path}: audio file holds no samples; choose a recording with speech")
    if warn_silent and peak < SILENCE_PEAK:
        log.warning("%s: audio is silent (%s); the face stays at rest; check the recording's input "
                    "level", path, _level(peak))


def _level(peak: float) -> str:
    return f"peak {20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all samples are zero"


def load_audio(path: str | os.PathLike, sr: int = AUDIO_RATE, *,
               allow_silent: bool = False) -> np.ndarray:
    """The whole file as mono float32 at ``sr`` Hz, checked for emptiness and silence."""
    path = Path(path)
    info = check_audio(path)
    if info.duration > LONG_SECONDS:
        log.info("%s: %.1f min of audio; loading it at %d Hz mono (%.0f MB)", path,
                 info.duration / 60, sr, info.duration * sr * 4 / 1e6)
    expected = int(np.ceil(info.frames * sr / info.sample_rate)) + 64
    out = np.empty(expected, dtype=np.float32)
    n = peak = clipped = 0
    for chunk in stream_audio(path, sr, block_seconds=_BLOCK_SECONDS, warn_silent=allow_silent):
        if n + chunk.size > out.size:  # resampler delay can add a few samples
            out = np.resize(out, n + chunk.size)
        out[n:n + chunk.size] = chunk
        n += chunk.size
        peak = max(peak, float(np.abs(chunk).max()))
        clipped += int(np.count_nonzero(np.abs(chunk) >= 0.999))
    out = out[:n]
    if n == 0:
        raise ImitatorError(f"{path}: audio file holds no samples; choose a recording with speech")
    if peak < SILENCE_PEAK and not allow_silent:
        raise ImitatorError(f"{path}: audio is silent ({_level(peak)}); choose a recording with speech "
                            f"or check the input level")
    if clipped > CLIPPED_FRACTION * n:
        log.warning("%s: %.1f%% of the samples are clipped; lip sync may suffer", path,
                    100 * clipped / n)
    return out


def save_wav(path: str | os.PathLike, samples: np.ndarray, sr: int, subtype: str = "FLOAT") -> None:
    """Write mono or (N, C) samples as WAV atomically (32-bit float by default: exact round trip)."""
    import soundfile as sf

    from .fileio import atomic_write

    with atomic_write(Path(path)) as f:
        sf.write(f, np.asarray(samples, dtype=np.float32), int(sr), subtype=subtype, format="WAV")
