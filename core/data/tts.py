"""Text to speech with phone timings taken from the engine itself: eSpeak NG and Festival.

- eSpeak NG through its C library (``libespeak-ng.so.1``, Debian ``libespeak-ng1``, pulled in by
  ``espeak-ng``): synchronous synthesis with phoneme events, each carrying the sample where the
  phoneme starts; each call in a forked child so that output never depends on earlier calls.
  eSpeak emits the closure silence of a voiceless stop (p, t, k, ch) *before* that stop's event,
  so those starts are moved back over the near-silence that precedes the burst.
- Festival (``festival`` + voice packages) in a subprocess: ``utt.save.segs`` writes the Segment
  relation's end times (for HTS voices the durations HTS itself generated; their pitch is
  shifted afterwards with librosa, which keeps the timing).

Every result is 16 kHz mono float32 plus ``(phone, start_s, end_s)`` in ARPAbet (``phones.py``).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ..errors import ImitatorError
from . import phones as ph

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ESPEAK_PACKAGE = "espeak-ng"
FESTIVAL_PACKAGE = "festival"

Phone = tuple[str, float, float]  # (ARPAbet phone, start_s, end_s)


@dataclass(frozen=True)
class Voice:
    """A TTS voice: ``espeak:en-us+m3`` (voice + variant) or ``festival:kal_diphone``."""

    engine: str  # "espeak" | "festival"
    name: str
    variant: str = ""

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}" + (f"+{self.variant}" if self.variant else "")

    @classmethod
    def parse(cls, text: str) -> Voice:
        engine, sep, rest = text.partition(":")
        if not sep or engine not in ("espeak", "festival") or not rest:
            raise ImitatorError(f"Unknown voice {text!r}: write espeak:<voice>[+<variant>] "
                                f"(e.g. espeak:en-us+m3) or festival:<voice> "
                                f"(e.g. festival:kal_diphone).")
        name, _, variant = rest.partition("+")
        return cls(engine, name, variant)


@dataclass(frozen=True)
class Prosody:
    """Speaking rate (1 = the engine's default speed) and pitch shift in semitones."""

    rate: float = 1.0
    pitch: float = 0.0


@dataclass
class Speech:
    """One synthesized utterance."""

    audio: np.ndarray  # (N,) float32 in [-1, 1], SAMPLE_RATE
    phones: list[Phone]  # contiguous, from 0 to the end of the audio
    voice: Voice
    prosody: Prosody = field(default_factory=Prosody)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ---------------------------------------------------------------------------------------------
# Voices

# "en" is British English (en-gb) for espeak_SetVoiceByName.
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt3", "annie", "belinda", "david", "edward", "linda", "robert")
# Festival voice -> (Debian package, default mean F0 in Hz or None for HTS voices).
FESTIVAL_VOICES: dict[str, tuple[str, float | None]] = {
    "kal_diphone": ("festvox-kallpc16k", 105.0),
    "ked_diphone": ("festvox-kdlpc16k", 105.0),
    "cmu_us_slt_arctic_hts": ("festvox-us-slt-hts", None),
}


def check_text(text: str) -> str:
    """The text, stripped; refuses empty text and text that is not plain English."""
    text = " ".join(text.split())
    if not any(c.isalpha() for c in text):
        raise ImitatorError(f"Text to speak is empty: {text!r}; give an English sentence.")
    if not text.isascii():
        bad = next(c for c in text if not c.isascii())
        raise ImitatorError(f"Text {text[:40]!r} has the non-English character {bad!r}; the "
                            f"corpus voices speak English (ASCII) text only.")
    return text


def synthesize(text: str, voice: Voice, prosody: Prosody = Prosody()) -> Speech:
    """Speak ``text`` with ``voice``: 16 kHz audio and engine phone timings."""
    text = check_text(text)
    if voice.engine == "espeak":
        return _espeak_synthesize(text, voice, prosody)
    if voice.engine == "festival":
        return _festival_synthesize(text, voice, prosody)
    raise ImitatorError(f"Unknown TTS engine {voice.engine!r} in voice {voice.id}; "
                        f"use espeak or festival.")


FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


def festival_voice_installed(name: str) -> bool:
    """Whether Festival's voice folder holds ``name`` (Debian layout: voices/<language>/<name>)."""
    return any(FESTIVAL_VOICE_DIR.glob(f"*/{name}"))


def engine_available(engine: str) -> bool:
    """Whether the engine's program or library is installed (its voices are checked on use)."""
    if engine == "espeak":
        try:
            _espeak_library()
            return True
        except ImitatorError:
            return False
    return engine == "festival" and shutil.which("festival") is not None


# ---------------------------------------------------------------------------------------------
# Phone list helpers


def _phones_from_starts(names: list[str | None], starts: np.ndarray, end: float) -> list[Phone]:
    """Contiguous phones from start times (s). ``None`` names are dropped (their time goes to the
    phone before), a leading gap becomes SIL, zero-length phones vanish, SIL runs merge."""
    keep = [i for i, n in enumerate(names) if n is not None]
    named = [names[i] for i in keep]
    t = np.maximum.accumulate(np.clip(np.asarray(starts, dtype=np.float64)[keep], 0.0, end))
    if not named or t[0] > 0:
        named, t = [ph.SILENCE, *named], np.concatenate([[0.0], t])
    ends = np.append(t[1:], end)
    out: list[Phone] = []
    for name, s, e in zip(named, t.tolist(), ends.tolist()):
        if e <= s:
            continue
        if out and out[-1][0] == name == ph.SILENCE:
            out[-1] = (name, out[-1][1], e)
        else:
            out.append((name, s, e))
    return [(n, round(s, 6), round(e, 6)) for n, s, e in out] or [(ph.SILENCE, 0.0, end)]


def _resample(audio: np.ndarray, sr: int) -> np.ndarray:
    """(N,) float -> (M,) float32 at SAMPLE_RATE."""
    if sr == SAMPLE_RATE:
        return audio.astype(np.float32)
    g = np.gcd(sr, SAMPLE_RATE)
    return resample_poly(audio.astype(np.float64), SAMPLE_RATE // g, sr // g).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# eSpeak NG through its C library

_ESPEAK_EVENT_END_LIST, _ESPEAK_EVENT_PHONEME = 0, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS, _INITIALIZE_DONT_EXIT = 0x0001, 0x8000
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_RATE, _PITCH = 1, 3
ESPEAK_DEFAULT_RATE = 175  # words per minute
VOICELESS_STOPS = ("P", "T", "K", "CH")
MAX_CLOSURE_S = 0.15  # a stop closure found in the silence before a burst is at most this long
CLOSURE_BELOW_PEAK_DB = 35.0  # "silence": short-time RMS this far below the utterance's peak
CLOSURE_WINDOW_S = 0.002


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


def _espeak_library() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libespeak-ng.so.1")
    except OSError as exc:
        raise ImitatorError(
            f"eSpeak NG is not installed ({exc}): install the Debian package "
            f"`{ESPEAK_PACKAGE}` (apt-get install {ESPEAK_PACKAGE}).") from exc


def _espeak_raw(name: str, rate_wpm: int, pitch: int, text: str) -> dict:
    """Synthesize in this process: {"sample_rate", "pcm" (N,) int16, "events" [(mnemonic,
    sample)]} or {"error": message}. Leaves the library's global state changed."""
    lib = _espeak_library()
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                               _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
    if sr <= 0:
        return {"error": f"eSpeak NG could not start (no voice data?): reinstall the Debian "
                         f"package `{ESPEAK_PACKAGE}`."}
    chunks: list[np.ndarray] = []
    events: list[tuple[str, int]] = []

    def on_audio(wav, n, ev) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while ev[i].type != _ESPEAK_EVENT_END_LIST:
            if ev[i].type == _ESPEAK_EVENT_PHONEME:
                events.append((ev[i].id.string.decode("ascii", "replace"), ev[i].sample))
            i += 1
        return 0

    callback = _CALLBACK(on_audio)  # referenced until the end: C holds the pointer
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(name.encode()) != 0:
        return {"error": f"Unknown eSpeak NG voice {name!r}: list the voices with `espeak-ng "
                         f"--voices=en` and the variants in espeak-ng-data/voices/!v (Debian "
                         f"package `{ESPEAK_PACKAGE}`)."}
    lib.espeak_SetParameter(_RATE, rate_wpm, 0)
    lib.espeak_SetParameter(_PITCH, pitch, 0)
    data = text.encode("utf-8") + b"\0"
    err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if err != 0 or not chunks:
        return {"error": f"eSpeak NG failed on {text[:40]!r} with voice {name} (error {err})."}
    return {"sample_rate": sr, "pcm": np.concatenate(chunks), "events": events}


def _espeak_fresh(name: str, rate_wpm: int, pitch: int, text: str) -> dict:
    """``_espeak_raw`` in a forked child, so every call starts from the library's pristine state.

    eSpeak NG keeps state between calls (pitch flutter phase and the like): the same text comes
    out a few samples different depending on what was spoken before, which would make the corpus
    depend on which worker spoke what. A fork costs milliseconds. Without fork (Windows), it runs
    in-process and the output is not reproducible.
    """
    if not hasattr(os, "fork"):
        return _espeak_raw(name, rate_wpm, pitch, text)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesize, send, exit without running any Python clean-up
        code = 1
        try:
            os.close(read_fd)
            out = _espeak_raw(name, rate_wpm, pitch, text)
            pcm = out.pop("pcm", np.zeros(0, np.int16)).astype("<i2").tobytes()
            head = json.dumps(out).encode()
            with os.fdopen(write_fd, "wb") as f:
                f.write(len(head).to_bytes(8, "little") + head + pcm)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        blob = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or len(blob) < 8:
        raise ImitatorError(f"eSpeak NG crashed on {text[:40]!r} with voice {name} "
                            f"(status {status}); check the Debian package `{ESPEAK_PACKAGE}`.")
    n = int.from_bytes(blob[:8], "little")
    out = json.loads(blob[8:8 + n])
    out["pcm"] = np.frombuffer(blob[8 + n:], dtype="<i2").astype(np.int16)
    return out


def _espeak_synthesize(text: str, voice: Voice, prosody: Prosody) -> Speech:
    name = voice.name + (f"+{voice.variant}" if voice.variant else "")
    rate = int(round(ESPEAK_DEFAULT_RATE * prosody.rate))
    pitch = int(np.clip(round(50 + 6 * prosody.pitch), 0, 99))
    _espeak_library()  # a clear error here if the library is missing
    out = _espeak_fresh(name, rate, pitch, text)
    if "error" in out:
        raise ImitatorError(out["error"])
    sr, pcm = int(out["sample_rate"]), out["pcm"]  # (N,) int16 at sr
    names = [ph.espeak_to_arpabet(m) for m, _ in out["events"]]
    starts = np.array([s for _, s in out["events"]], dtype=np.int64)  # samples
    starts = _closure_starts(pcm, names, starts, sr)
    phones = _phones_from_starts(names, starts / sr, len(pcm) / sr)
    audio = _resample(pcm / 32768.0, sr)
    return Speech(audio, _fit_end(phones, len(audio) / SAMPLE_RATE), voice, prosody)


def _closure_starts(pcm: np.ndarray, names: list[str | None], starts: np.ndarray,
                    sr: int) -> np.ndarray:
    """Move each voiceless stop's start back over the near-silence just before its event
    (digital zeros, or breath noise for the breathy variants)."""
    x = pcm.astype(np.float64) ** 2
    win = max(1, int(CLOSURE_WINDOW_S * sr))
    rms = np.sqrt(np.convolve(x, np.ones(win) / win, mode="same"))  # (N,)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-CLOSURE_BELOW_PEAK_DB / 20))
    starts = starts.copy()
    for i in np.flatnonzero(np.isin(np.array(names, dtype=object), VOICELESS_STOPS)):
        j = np.searchsorted(loud, starts[i] - win) - 1  # the burst itself is loud
        quiet_from = loud[j] + 1 if j >= 0 else 0
        floor = max(starts[i - 1] + 1 if i > 0 else 0, starts[i] - int(MAX_CLOSURE_S * sr))
        starts[i] = max(min(quiet_from, starts[i]), floor)
    return starts


def _fit_end(phones: list[Phone], end: float) -> list[Phone]:
    """The phone list stretched or cut so it ends exactly at ``end`` (after resampling)."""
    phones = [p for p in phones if p[1] < end - 1e-6]
    name, start, _ = phones[-1]
    return phones[:-1] + [(name, start, round(end, 6))]


# ---------------------------------------------------------------------------------------------
# Festival in a subprocess


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_script(text: str, voice: Voice, prosody: Prosody, wav: Path, segs: Path) -> str:
    f0 = FESTIVAL_VOICES[voice.name][1]
    lines = [f"(voice_{voice.name})"]
    if f0 is not None:  # diphone voices: speed through durations, pitch through the F0 targets
        target = f0 * 2 ** (prosody.pitch / 12)
        lines += [f"(Parameter.set 'Duration_Stretch {1 / prosody.rate:.4f})",
                  f"(set! int_lr_params '((target_f0_mean {target:.2f}) "
                  f"(target_f0_std {0.14 * target:.2f}) (model_f0_mean 170) (model_f0_std 34)))"]
    else:  # HTS voices: the engine's own speed parameter
        lines.append(f"(set! hts_engine_params (append hts_engine_params "
                     f"(list '(\"-r\" {prosody.rate:.4f}))))")
    lines += [f"(set! utt1 (Utterance Text {_scheme_string(text)}))", "(utt.synth utt1)",
              f"(utt.save.wave utt1 {_scheme_string(str(wav))} 'riff)",
              f"(utt.save.segs utt1 {_scheme_string(str(segs))})"]
    return "\n".join(lines) + "\n"


def _read_segs(path: Path) -> tuple[list[str], np.ndarray]:
    """Festival segment file -> ARPAbet names and end times (s)."""
    lines = path.read_text().splitlines()
    body = lines[lines.index("#") + 1:] if "#" in lines else lines
    rows = [ln.split() for ln in body if ln.strip()]
    return [ph.festival_to_arpabet(r[2]) for r in rows], np.array([float(r[0]) for r in rows])


def _festival_synthesize(text: str, voice: Voice, prosody: Prosody) -> Speech:
    import soundfile as sf

    if shutil.which("festival") is None:
        raise ImitatorError(f"Festival is not installed: install the Debian package "
                            f"`{FESTIVAL_PACKAGE}` (voice {voice.id} also needs "
                            f"`{FESTIVAL_VOICES.get(voice.name, ('its festvox package',))[0]}`).")
    if voice.name not in FESTIVAL_VOICES:
        raise ImitatorError(f"Unknown Festival voice {voice.id}; known: "
                            f"{', '.join(FESTIVAL_VOICES)}.")
    package = FESTIVAL_VOICES[voice.name][0]
    with tempfile.TemporaryDirectory(prefix="imitator-festival-") as tmp:
        tmp = Path(tmp)
        wav, segs, script = tmp / "utt.wav", tmp / "utt.segs", tmp / "utt.scm"
        script.write_text(_festival_script(text, voice, prosody, wav, segs))
        proc = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True,
                              timeout=120, cwd=tmp)
        if proc.returncode != 0 or not wav.is_file() or not segs.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ImitatorError(f"Festival failed with voice {voice.id} ({tail[0][:120]}); is "
                                f"the Debian package `{package}` installed?")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
        names, ends = _read_segs(segs)
    audio = _resample(audio.mean(axis=1), sr)
    if FESTIVAL_VOICES[voice.name][1] is None and abs(prosody.pitch) > 1e-3:
        import librosa  # HTS has no pitch parameter here: shift the waveform, timing unchanged

        audio = librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE,
                                            n_steps=prosody.pitch).astype(np.float32)
    starts = np.concatenate([[0.0], ends[:-1]])
    phones = _phones_from_starts(names, starts, len(audio) / SAMPLE_RATE)
    return Speech(audio, _fit_end(phones, len(audio) / SAMPLE_RATE), voice, prosody)
