"""An optional transcript (the animator's script, Rhubarb's "dialog text") that pins m/b/p.

The words are force-aligned to the audio (``core.bilabial.Aligner``) and the aligned M/B/P
intervals drive closure-aware decoding at those times (``core.model.closure.transcript_contact``).
Text that does not fit the audio (another recording, another language, mostly unknown words) is
dropped with a warning and the audio alone decides, as without a transcript.

    text = read_transcript(Path("take.txt"))          # one-line ImitatorError if not text
    closures = transcript_closures(Path("take.wav"), text)  # None (and a warning) if it does not fit
    closures, note = resolve_transcript(Path("take.wav"))   # take.txt beside it, if any
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["MAX_ALIGN_S", "MIN_SCORE", "read_transcript", "transcript_beside", "check_transcript",
           "fit_transcript", "transcript_closures", "resolve_transcript"]

MAX_ALIGN_S = 600.0  # the aligner decodes in one piece; longer audio keeps to the audio alone
MIN_SCORE = -33.0  # acoustic score per frame below which the words do not fit the audio
MAX_UNKNOWN = 0.5  # share of words outside the English pronunciation dictionary allowed
_MAX_BYTES = 1_000_000


def read_transcript(path: str | os.PathLike) -> str:
    """The text of a transcript file (UTF-8 or Latin-1 plain text), whitespace collapsed."""
    path = Path(path)
    try:
        data = path.read_bytes()[: _MAX_BYTES + 1]
    except OSError as e:
        raise ImitatorError(f"{path}: cannot read the transcript ({e.strerror or e}); give a .txt "
                            f"file with the words spoken") from None
    if len(data) > _MAX_BYTES:
        raise ImitatorError(f"{path}: over 1 MB, not a transcript; give a .txt file with the words "
                            f"spoken")
    if b"\0" in data:
        raise ImitatorError(f"{path}: not a text file (binary data); give a .txt file with the "
                            f"words spoken")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if sum(not (c.isprintable() or c.isspace()) for c in text) > 0.01 * max(1, len(text)):
        raise ImitatorError(f"{path}: not a text file (control characters); give a .txt file with "
                            f"the words spoken")
    return " ".join(text.split())


def transcript_beside(audio: str | os.PathLike) -> Path | None:
    """``take.txt`` next to ``take.wav`` if there is one (picked up automatically)."""
    path = Path(audio).with_suffix(".txt")
    return path if path.is_file() else None


def check_transcript(text: str, where: str = "the transcript") -> str:
    """The text if it has words; a one-line error for an empty one."""
    text = " ".join(str(text).split())
    if not any(c.isalnum() for c in text):
        raise ImitatorError(f"{where} is empty; give the words spoken, or leave it out to let the "
                            f"audio alone decide")
    return text


def fit_transcript(audio: str | os.PathLike | np.ndarray, text: str, sr: int = 16000,
                   where: str = "the transcript") -> tuple[list | None, str]:
    """(M/B/P intervals in seconds, a one-line note) of ``text`` aligned to ``audio`` (a file, or
    samples at ``sr``); the intervals are None, and the note says why, when the text does not fit."""
    from .bilabial import Aligner, transcript_words

    text = check_transcript(text, where)
    fallback = "; lip closures come from the audio alone"
    letters = [c for c in text if c.isalpha()]
    if sum(not c.isascii() for c in letters) > 0.3 * len(letters):
        return None, f"{where} does not look like English (the aligner knows English words only){fallback}"
    if not isinstance(audio, np.ndarray):
        from .audio import audio_info, load_audio

        if audio_info(audio).duration > MAX_ALIGN_S:
            return None, f"{audio}: audio over {MAX_ALIGN_S / 60:.0f} minutes is not aligned to {where}{fallback}"
        audio, sr = load_audio(audio, 16000), 16000
    elif len(audio) > MAX_ALIGN_S * sr:
        return None, f"audio over {MAX_ALIGN_S / 60:.0f} minutes is not aligned to {where}{fallback}"
    aligner = Aligner()
    words = transcript_words(text, aligner._decoder.lookup_word)
    if not words or sum(w == "[SPEECH]" for w in words) > MAX_UNKNOWN * len(words):
        return None, f"{where}: most words are not English dictionary words{fallback}"
    alignment = aligner(audio, sr, text)
    if alignment is None or alignment.score < MIN_SCORE:
        return None, f"{where} does not fit the audio (other words or another recording?){fallback}"
    return alignment.closures, f"{where}: {len(alignment.closures)} m/b/p aligned"


def transcript_closures(audio: str | os.PathLike | np.ndarray, text: str, sr: int = 16000,
                        where: str = "the transcript") -> list | None:
    """``fit_transcript``'s intervals; a logged warning instead when the text does not fit."""
    closures, note = fit_transcript(audio, text, sr, where)
    if closures is None:
        log.warning("%s", note)
    return closures


def resolve_transcript(audio: str | os.PathLike, text: str | None = None,
                       text_file: str | os.PathLike | None = None,
                       where: str = "--text") -> tuple[list | None, str | None]:
    """(intervals or None, note or None) for ``audio`` from ``text``, else ``text_file``, else a
    ``.txt`` beside the audio. Empty or unreadable text given explicitly is an ImitatorError; a
    stray file beside the audio only gives a note."""
    if text is not None:
        return fit_transcript(audio, text, where=where)
    if text_file is not None:
        return fit_transcript(audio, read_transcript(text_file), where=str(text_file))
    beside = transcript_beside(audio)
    if beside is None:
        return None, None
    try:
        return fit_transcript(audio, read_transcript(beside), where=str(beside))
    except ImitatorError as e:  # a stray file beside the audio never stops generation
        return None, f"{e}; ignoring it"
