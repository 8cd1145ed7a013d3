"""Real recorded speech with transcripts: the English Asterisk prompts, split once and for all.

Debian's ``asterisk-core-sounds-en-wav`` holds the prompts (one professional voice, 8 kHz wav)
and ``asterisk-core-sounds-en`` their transcripts (``name: text`` lines). Every prompt that has
a wav and a spoken transcript gets a fixed split from a hash of its name alone, so adding or
removing other prompts never moves one between splits:

* ``test`` (~35 %, >= 150 prompts): the real-speech benchmark's; never used for training,
  fitting or tuning;
* ``val`` (~10 %): for choices made while training (thresholds, early stopping);
* ``train`` (the rest): may go into a training corpus (phone timings by forced alignment).

    prompts = list_prompts()                      # all of them, sorted by name
    train = list_prompts(split="train")
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImitatorError

__all__ = ["SOUNDS_DIR", "TRANSCRIPTS", "SPLITS", "Prompt", "split_of", "spoken_text",
           "list_prompts"]

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SPLITS = ("train", "val", "test")
_TEST_SHARE, _VAL_SHARE = 0.35, 0.10
_SALT = "imitator-real-speech-v1:"
_INSTALL_HINT = "apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en"
# Key names as the voice reads them in the prompts ("press * to ...", "followed by #").
_SYMBOLS = {"*": " star ", "#": " pound "}


@dataclass(frozen=True)
class Prompt:
    """One recorded prompt: ``name`` as in the transcript file (``vm-login``, ``digits/40``)."""

    name: str
    wav: Path
    text: str
    split: str


def split_of(name: str) -> str:
    """'train', 'val' or 'test' for a prompt name; depends on the name only (a salted SHA-256)."""
    digest = hashlib.sha256((_SALT + name).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    if u < _TEST_SHARE:
        return "test"
    if u < _TEST_SHARE + _VAL_SHARE:
        return "val"
    return "train"


def spoken_text(text: str) -> str | None:
    """The words of a transcript line, or None if it describes no speech.

    Stage directions in parentheses ("(tone plays)", "(1 second of silence)") are dropped; lines
    with ``[..]`` or ``<..>`` describe tones and beeps; ``*`` and ``#`` are read as star / pound.
    """
    if re.search(r"[\[\]<>]", text):
        return None
    text = re.sub(r"\(.*?\)", " ", text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = " ".join(text.split())
    return text if re.search(r"[A-Za-z0-9]", text) else None


def list_prompts(split: str | None = None, sounds_dir: Path = SOUNDS_DIR,
                 transcripts: Path = TRANSCRIPTS) -> list[Prompt]:
    """Prompts that have a wav and a spoken transcript, sorted by name; one split if given.

    ``transcripts`` may be gzip-compressed (as Debian ships it) or plain text.
    """
    if split is not None and split not in SPLITS:
        raise ImitatorError(f"unknown real-speech split {split!r}; use one of {', '.join(SPLITS)}")
    sounds_dir, transcripts = Path(sounds_dir), Path(transcripts)
    if not transcripts.is_file():
        raise ImitatorError(f"prompt transcripts {transcripts} not found; {_INSTALL_HINT}")
    if not sounds_dir.is_dir():
        raise ImitatorError(f"prompt recordings {sounds_dir} not found; {_INSTALL_HINT}")
    prompts = {}
    for line in _read_lines(transcripts):
        name, sep, text = line.partition(":")
        name = name.strip()
        if not sep or not name or line.startswith(";") or ".." in name:
            continue
        words = spoken_text(text)
        wav = sounds_dir / f"{name}.wav"
        if words is None or not wav.is_file():
            continue
        prompts[name] = Prompt(name, wav, words, split_of(name))
    out = [prompts[k] for k in sorted(prompts)]
    return out if split is None else [p for p in out if p.split == split]


def _read_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        if gzipped:
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except (OSError, EOFError) as e:
        raise ImitatorError(f"cannot read prompt transcripts {path} ({e}); {_INSTALL_HINT}") \
            from None
