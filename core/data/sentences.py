"""The corpus text: the 720 Harvard sentences (IEEE 1969, public domain), 72 lists of 10.

Source: IEEE Subcommittee on Subjective Measurements, "IEEE Recommended Practice for Speech
Quality Measurements", IEEE Trans. Audio and Electroacoustics 17(3), 1969, Appendix C. Each list
is phonetically balanced (phoneme frequencies close to those of spoken English). The text file
beside this module is the collection of the stringr R package (data-raw/harvard-sentences.txt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ImitatorError

SENTENCES_FILE = Path(__file__).with_name("harvard_sentences.txt")
SOURCE = ("Harvard sentences: IEEE Recommended Practice for Speech Quality Measurements, "
          "IEEE Trans. Audio and Electroacoustics 17(3), 1969 (public domain)")
SENTENCES_PER_LIST = 10


@dataclass(frozen=True)
class Sentence:
    """One prompt: ``id`` like ``harvard042`` (1-based line number), its Harvard list, the text."""

    id: str
    list_no: int  # 1..72
    text: str


def load_sentences(path: Path = SENTENCES_FILE) -> list[Sentence]:
    """All sentences of the file, in order; comment lines (``#``) and blank lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ImitatorError(f"Cannot read the sentence list {path} ({exc}).") from exc
    texts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not texts:
        raise ImitatorError(f"The sentence list {path} holds no sentences.")
    return [Sentence(f"harvard{i + 1:03d}", i // SENTENCES_PER_LIST + 1, t)
            for i, t in enumerate(texts)]
