"""An optional transcript (the animator's script, Rhubarb's "dialog text") that pins m/b/p.

The words are force-aligned to the audio (``core.bilabial.Aligner``) and the aligned M/B/P
intervals drive closure-aware decoding at those times (``core.model.closure.transcript_contact``).
Text that does not fit the audio (another recording, another language, mostly unknown words) is
dropped with a warning and the audio alone decides, as without a transcript.

    text = read_transcript(Path("take.txt"))          # one-line ImitatorError if not text
    closures = transcript_closures(Path("take.wav"), text)  # None (and a warning) if it does not fit
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["MAX_ALIGN_S", "MIN_SCORE", "read_transcript", "transcript_beside", "check_transcript",
           "transcript_closures"]

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


def transcript_closures(audio: str | os.PathLike | np.ndarray, text: str, sr: int = 16000,
                        where: str = "the transcript") -> list | None:
    """M/B/P intervals (seconds) of ``text`` aligned to ``audio`` (a file, or samples at ``sr``);
    None, with a warning that says why, when the text does not fit it."""
    from .bilabial import Aligner, transcript_words

    text = check_transcript(text, where)
    letters = [c for c in text if c.isalpha()]
    if sum(not c.isascii() for c in letters) > 0.3 * len(letters):
        log.warning("%s does not look like English (the aligner knows English words only); "
                    "lip closures come from the audio alone", where)
        return None
    if not isinstance(audio, np.ndarray):
        from .audio import audio_info, load_audio

        if audio_info(audio).duration > MAX_ALIGN_S:
            log.warning("%s: audio over %.0f minutes is not aligned to a transcript; lip closures "
                        "come from the audio alone", audio, MAX_ALIGN_S / 60)
            return None
        audio, sr = load_audio(audio, 16000), 16000
    elif len(audio) > MAX_ALIGN_S * sr:
        log.warning("audio over %.0f minutes is not aligned to a transcript; lip closures come "
                    "from the audio alone", MAX_ALIGN_S / 60)
        return None
    aligner = Aligner()
    words = transcript_words(text, aligner._decoder.lookup_word)
    unknown = sum(w == "[SPEECH]" for w in words)
    if not words or unknown > MAX_UNKNOWN * len(words):
        log.warning("%s: most words are not English dictionary words; lip closures come from "
                    "the audio alone", where)
        return None
    alignment = aligner(audio, sr, text)
    if alignment is None or alignment.score < MIN_SCORE:
        log.warning("%s does not fit the audio (other words or another recording?); lip closures "
                    "come from the audio alone", where)
        return None
    log.info("%s aligned: %d m/b/p (score %.1f per frame)", where, len(alignment.closures),
             alignment.score)
    return alignment.closures
