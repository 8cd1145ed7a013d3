"""Bilabial closures (lips shut for M, B, P) in speech audio, for the lip contact loss and metrics.

Two detectors, both offline with pocketsphinx's US-English acoustic model (PyPI ``pocketsphinx``):

* ``closures_from_transcript``: forced alignment of the known words; the pronunciations come from
  the CMU dictionary shipped with pocketsphinx, so every M/B/P of an in-vocabulary word is found.
  Digits are spelled out; other out-of-vocabulary words become a spoken-noise filler
  (``[SPEECH]``): their audio is absorbed, their own bilabials are lost (logged).
* ``closures_from_audio``: no transcript; words are recognized with the shipped trigram LM and the
  hypothesis is aligned the same way (all-phone recognition if nothing aligns). Less reliable,
  and slower (the LM takes ~0.3 s and ~300 MB to load); ``bench/bilabial_bench.py`` measures both.

Three adjustments, found while measuring with ``bench/bilabial_bench.py``:
a -60 dBFS noise floor (fixed seed) is added before decoding, because exact digital silence (as
TTS engines write it) throws the recognizer off (whole words came out as silence);
frame indices become times at the frame's centre (``_FRAME_OFFSET_S``, ~8 ms later than index x
10 ms); and a stop (B, P) that the aligner starts right after a silence (utterance-initial) gets
the last ``STOP_CLOSURE_S`` of that silence, since its silent closure is scored as silence.
Audio is decoded in one piece: meant for utterances up to about a minute, not for hour-long files.

Intervals are in seconds of the input audio; ``closure_frames`` turns them into a per-frame mask at
any fps, ``precision_recall`` compares two masks.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio import load_audio, resample_audio
from .errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["BILABIALS", "Interval", "interval_frames", "Alignment", "Aligner", "align_transcript",
           "closures_from_transcript", "closures_from_audio", "detect_closures", "closure_frames",
           "precision_recall", "add_commands"]

BILABIALS = frozenset({"M", "B", "P"})
STOP_CLOSURE_S = 0.05  # silence before a stop that counts as its closure
_RATE = 16000  # the acoustic model's sample rate
_FRAME_S = 0.01  # pocketsphinx frames are 10 ms
# Frame f is a 25.6 ms window starting at f * 10 ms; its centre is 12.8 ms in, so the boundary
# between frames f-1 and f lies at f * 10 ms + 7.8 ms of the audio.
_FRAME_OFFSET_S = 0.0128 - _FRAME_S / 2
_NOISE_FLOOR = 10 ** (-60 / 20)
_WIDE_BEAMS = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}
_OOV = "[SPEECH]"
_INSTALL_HINT = "install it with `pip install pocketsphinx==5.1.1`"


@dataclass(frozen=True)
class Interval:
    """One bilabial phone: ``phone`` is 'M', 'B' or 'P' (ARPAbet), times in seconds."""

    start_s: float
    end_s: float
    phone: str


@dataclass(frozen=True)
class Alignment:
    """Every phone of a forced alignment, ``(phone, start_s, end_s)`` in order ('SIL' for silence;
    fillers such as '+SPN+' count as speech), and the M/B/P closures among them."""

    phones: list[tuple[str, float, float]]
    closures: list[Interval]
    score: float = 0.0  # acoustic score per 10 ms frame (pocketsphinx log units; higher fits better)

    def pauses(self, min_s: float = 0.0) -> list[tuple[float, float]]:
        """(start_s, end_s) of the silences at least ``min_s`` long, adjacent SILs merged."""
        out: list[list[float]] = []
        for name, a, b in self.phones:
            if name != "SIL":
                continue
            if out and abs(out[-1][1] - a) < 1e-6:
                out[-1][1] = b
            else:
                out.append([a, b])
        return [(a, b) for a, b in out if b - a >= min_s]


class Aligner:
    """Forced alignment with one reusable pocketsphinx decoder (creating one costs ~0.2 s)."""

    def __init__(self):
        self._decoder = _decoder(bestpath=False, **_WIDE_BEAMS)

    def __call__(self, audio: np.ndarray, sr: int, transcript: str) -> Alignment | None:
        """The alignment of ``transcript`` to mono ``audio`` at ``sr`` Hz; None if the transcript
        has no dictionary word or does not fit the audio."""
        return self.align_pcm(_pcm16(audio, sr), transcript)

    def align_pcm(self, pcm: bytes, transcript: str) -> Alignment | None:
        words = transcript_words(transcript, self._decoder.lookup_word)
        if not any(w != _OOV for w in words):
            return None
        phones = _align(self._decoder, pcm, words)
        if phones is None:
            return None
        entries = [p for w in self._decoder.get_alignment() for p in w]
        score = sum(p.score for p in entries) / max(1, sum(p.duration for p in entries))
        timed = [(name, round(start * _FRAME_S + _FRAME_OFFSET_S, 3),
                  round((start + frames) * _FRAME_S + _FRAME_OFFSET_S, 3))
                 for name, start, frames in phones]
        return Alignment(timed, _bilabials(phones), float(score))


def align_transcript(audio: np.ndarray, sr: int, transcript: str) -> Alignment | None:
    """Forced alignment of ``transcript`` to ``audio`` (see ``Aligner``); None if it does not fit."""
    return Aligner()(audio, sr, transcript)


# --------------------------------------------------------------------------- detectors

def closures_from_transcript(audio: np.ndarray, sr: int, transcript: str) -> list[Interval]:
    """M/B/P intervals by forced alignment of ``transcript`` to mono ``audio`` at ``sr`` Hz.

    If the transcript has no dictionary word or cannot be aligned to the audio at all, this logs a
    warning and falls back to recognition (``closures_from_audio``).
    """
    pcm = _pcm16(audio, sr)
    alignment = Aligner().align_pcm(pcm, transcript)
    if alignment is None:
        log.warning("transcript %r could not be aligned to the audio (no dictionary word, or it "
                    "does not fit); recognizing the speech instead", transcript[:60])
        return _recognize(pcm)
    return alignment.closures


def closures_from_audio(audio: np.ndarray, sr: int) -> list[Interval]:
    """M/B/P intervals in mono ``audio`` at ``sr`` Hz without a transcript.

    Words are recognized with pocketsphinx's English trigram LM, then aligned like a transcript;
    if nothing aligns, all-phone recognition (phone LM) gives the phones directly.
    """
    return _recognize(_pcm16(audio, sr))


def detect_closures(path: str | os.PathLike, transcript: str | None = None) -> list[Interval]:
    """Closures in an audio file: aligned to ``transcript`` when given, recognized otherwise."""
    audio = load_audio(path, _RATE)
    if transcript and transcript.strip():
        return closures_from_transcript(audio, _RATE, transcript)
    return closures_from_audio(audio, _RATE)


# --------------------------------------------------------------------------- frames and scores

def closure_frames(intervals: list[Interval], fps: float, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: True where frame time ``i / fps`` lies in an interval [start, end)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    t = np.arange(num_frames) / float(fps)
    starts = np.searchsorted(t, [iv.start_s for iv in intervals])  # first frame with t >= start
    ends = np.searchsorted(t, [iv.end_s for iv in intervals])  # first frame with t >= end
    inside = np.zeros(num_frames + 1, dtype=np.int64)
    np.add.at(inside, starts, 1)
    np.add.at(inside, np.maximum(starts, ends), -1)
    return np.cumsum(inside[:-1]) > 0


def precision_recall(pred: np.ndarray, true: np.ndarray, tolerance: int = 0) -> tuple[float, float]:
    """Frame precision and recall of ``pred`` against ``true`` (bool masks of equal length).

    With ``tolerance=k`` a predicted frame counts as correct if a true frame lies within +-k frames,
    and a true frame as found if a predicted one does (k=1 forgives a one-frame boundary shift).
    A ratio with nothing to count (no predicted or no true frames) is NaN.
    """
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"masks must be 1-D of equal length, got {pred.shape} and {true.shape}")
    near_true, near_pred = _dilate(true, tolerance), _dilate(pred, tolerance)
    precision = (pred & near_true).sum() / pred.sum() if pred.any() else float("nan")
    recall = (true & near_pred).sum() / true.sum() if true.any() else float("nan")
    return float(precision), float(recall)


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Mask grown by ``k`` frames on each side."""
    if k <= 0:
        return mask
    padded = np.concatenate([np.zeros(k, bool), mask, np.zeros(k, bool)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)
    return windows.any(axis=1)


# --------------------------------------------------------------------------- transcript

_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def transcript_words(transcript: str, lookup) -> list[str]:
    """Transcript -> dictionary words for the aligner; numbers spelled out, unknown -> [SPEECH].

    ``lookup(word)`` returns the pronunciation or None (``Decoder.lookup_word``).
    """
    words: list[str] = []
    for token in re.findall(r"[0-9]+|[a-z]+(?:'[a-z]+)*", transcript.lower().replace("’", "'")):
        for word in (_spell_number(int(token)) if token.isdigit() else [token]):
            if lookup(word) is not None:
                words.append(word)
            else:
                log.info("%r is not in the pronunciation dictionary; its bilabials are not aligned",
                         word)
                if not words or words[-1] != _OOV:
                    words.append(_OOV)
    return words


def _spell_number(n: int) -> list[str]:
    """0..999999 as English words; longer numbers digit by digit."""
    if n < 20:
        return [_NUMBERS[n]]
    if n < 100:
        return [_TENS[n // 10]] + (_spell_number(n % 10) if n % 10 else [])
    if n < 1000:
        return [_NUMBERS[n // 100], "hundred"] + (_spell_number(n % 100) if n % 100 else [])
    if n < 1_000_000:
        rest = _spell_number(n % 1000) if n % 1000 else []
        return _spell_number(n // 1000) + ["thousand"] + rest
    return [_NUMBERS[int(d)] for d in str(n)]


# --------------------------------------------------------------------------- pocketsphinx

def _model_dir() -> str:
    try:
        import pocketsphinx
    except ImportError:
        raise ImitatorError(f"bilabial detection needs the pocketsphinx package; {_INSTALL_HINT}") \
            from None
    return os.path.join(pocketsphinx.get_model_path(), "en-us")


def _decoder(word_lm: bool = False, **options):
    """A pocketsphinx Decoder for the shipped en-us model, with its trigram word LM or none."""
    lm = os.path.join(_model_dir(), "en-us.lm.bin") if word_lm else None
    from pocketsphinx import Decoder

    return Decoder(samprate=_RATE, lm=lm, loglevel="FATAL", **options)


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _align(decoder, pcm: bytes, words: list[str]) -> list[tuple[str, int, int]] | None:
    """(phone, start frame, frames) of ``words`` aligned to ``pcm``; None if they don't fit."""
    decoder.set_align_text(" ".join(words))
    _decode(decoder, pcm)
    if decoder.hyp() is None:
        return None
    decoder.set_alignment()
    _decode(decoder, pcm)
    return [(p.name, p.start, p.duration) for w in decoder.get_alignment() for p in w]


def _recognize(pcm: bytes) -> list[Interval]:
    """Closures without a transcript: recognized words aligned, else all-phone recognition."""
    decoder = _decoder(word_lm=True)
    _decode(decoder, pcm)
    words = [seg.word.split("(")[0] for seg in decoder.seg()]
    words = [w for w in words if not w.startswith(("<", "["))]
    phones = _align(_decoder(bestpath=False, **_WIDE_BEAMS), pcm, words) if words else None
    if phones is None:
        decoder = _decoder(allphone=os.path.join(_model_dir(), "en-us-phone.lm.bin"), lw=2.0,
                           **_WIDE_BEAMS)
        _decode(decoder, pcm)
        phones = [(seg.word, seg.start_frame, seg.end_frame - seg.start_frame + 1)
                  for seg in decoder.seg()]
    return _bilabials(phones)


def _pcm16(audio: np.ndarray, sr: int) -> bytes:
    """Mono float audio -> 16 kHz 16-bit PCM with a -60 dBFS noise floor (see module docstring)."""
    audio = resample_audio(np.asarray(audio, dtype=np.float32).reshape(-1), sr, _RATE)
    if audio.size == 0:
        raise ImitatorError("bilabial detection got empty audio; give a recording with speech")
    noise = np.random.default_rng(0).normal(0.0, _NOISE_FLOOR, audio.size).astype(np.float32)
    return (np.clip(audio + noise, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _bilabials(phones: list[tuple[str, int, int]]) -> list[Interval]:
    """(phone, start frame, frames) in order -> M/B/P intervals (stops after silence extended)."""
    out = []
    for i, (name, start, frames) in enumerate(phones):
        if name not in BILABIALS:
            continue
        start_s = start * _FRAME_S + _FRAME_OFFSET_S
        end_s = (start + frames) * _FRAME_S + _FRAME_OFFSET_S
        if name != "M" and i > 0 and phones[i - 1][0] == "SIL":
            silence_s = phones[i - 1][1] * _FRAME_S + _FRAME_OFFSET_S
            start_s = max(silence_s, start_s - STOP_CLOSURE_S)
        out.append(Interval(round(start_s, 3), round(end_s, 3), name))
    return out


# --------------------------------------------------------------------------- command line

def add_commands(sub: argparse._SubParsersAction) -> None:
    """``python -m core closures AUDIO [--text ...] [--json OUT]``."""
    p = sub.add_parser("closures", help="find bilabial closures (m, b, p) in an audio file")
    p.add_argument("audio", type=Path)
    p.add_argument("--text", help="what is said (forced alignment); without it, speech recognition")
    p.add_argument("--json", type=Path, help="write the intervals here as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .fileio import atomic_write

    intervals = detect_closures(args.audio, args.text)
    for iv in intervals:
        print(f"{iv.start_s:8.3f} {iv.end_s:8.3f}  {iv.phone}")
    if args.json:
        with atomic_write(args.json) as f:
            f.write(json.dumps([asdict(iv) for iv in intervals], indent=1).encode())
    return 0


def interval_frames(iv: Interval, fps: float, num_frames: int) -> np.ndarray:
    """Frame indices whose time i / fps lies in [start, end); the frame nearest the middle when none
    does; empty when the interval lies outside the clip."""
    first = max(0, int(math.ceil(iv.start_s * fps - 1e-9)))
    last = min(num_frames, int(math.ceil(iv.end_s * fps - 1e-9)))  # exclusive
    if first < last:
        return np.arange(first, last)
    if iv.end_s <= 0 or iv.start_s >= num_frames / fps:
        return np.zeros(0, dtype=np.int64)
    return np.array([min(max(int(round(0.5 * (iv.start_s + iv.end_s) * fps)), 0), num_frames - 1)])
