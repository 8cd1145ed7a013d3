"""Bilabial closure labels (m, b, p) of a corpus's utterances, for the lip contact loss and metrics.

Where they come from, per utterance:
* ``phones``: the phone timings of dataset.json (our synthetic corpus writes ``[phone, start_s,
  end_s]`` per phone; ``{"phone", "start", "end"}`` dicts are read too): exact, nothing to compute;
* ``aligned`` / ``recognized``: ``core.bilabial`` on the audio, forced-aligned to the transcript
  when dataset.json has one, recognized otherwise. Detection costs 0.05-0.5 s per utterance, so
  results are cached in a JSON file keyed by the wav's size and modification time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..bilabial import BILABIALS, Interval, closure_frames
from ..errors import ImitatorError
from ..fileio import atomic_write
from .vocaset import Corpus, Utterance

log = logging.getLogger(__name__)

__all__ = ["phone_intervals", "closure_mask", "ClosureCache", "corpus_closures"]

CACHE_VERSION = 1


def phone_intervals(phones: Iterable[Any]) -> list[Interval]:
    """M/B/P intervals from phone timings: ``[phone, start_s, end_s]`` lists or dicts with
    ``phone``/``start``/``end``; phone names in any case, stress digits ignored (``M``, ``b``, ``P1``)."""
    out = []
    for entry in phones:
        if isinstance(entry, Mapping):
            name, start, end = entry.get("phone", entry.get("name")), entry.get("start"), entry.get("end")
        elif isinstance(entry, (list, tuple)) and len(entry) >= 3:
            name, start, end = entry[0], entry[1], entry[2]
        else:
            raise ImitatorError(f"phone timing {entry!r} is not [phone, start_s, end_s]; regenerate "
                                f"dataset.json")
        phone = str(name).upper().rstrip("012")
        if phone in BILABIALS:
            out.append(Interval(float(start), float(end), phone))
    return out


def closure_mask(intervals: Iterable[Interval], fps: float, num_frames: int) -> np.ndarray:
    """(num_frames,) bool closure frames; an interval shorter than a frame (no frame time inside)
    gets the frame nearest its middle, so every m/b/p leaves at least one frame."""
    intervals = list(intervals)
    mask = closure_frames(intervals, fps, num_frames)
    if num_frames == 0:
        return mask
    for iv in intervals:
        first = int(np.ceil(iv.start_s * fps - 1e-9))  # first frame time >= start
        if first / fps >= iv.end_s and iv.end_s > 0 and iv.start_s < num_frames / fps:
            middle = int(round(0.5 * (iv.start_s + iv.end_s) * fps))
            mask[min(max(middle, 0), num_frames - 1)] = True
    return mask


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


class ClosureCache:
    """Detected intervals per utterance key, in a JSON file; entries go stale when the wav changes."""

    def __init__(self, path: Path | None):
        self.path = None if path is None else Path(path)
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == CACHE_VERSION and isinstance(data.get("utterances"), dict):
                    self.entries = data["utterances"]
            except (OSError, ValueError, AttributeError):
                log.warning("%s: unreadable closure cache; detecting again", self.path)

    def get(self, utt: Utterance) -> tuple[list[Interval], str] | None:
        entry = self.entries.get(utt.key)
        if not entry or entry.get("wav") != _signature(utt.wav):
            return None
        return [Interval(float(s), float(e), str(p)) for s, e, p in entry["intervals"]], entry["source"]

    def put(self, utt: Utterance, intervals: list[Interval], source: str) -> None:
        self.entries[utt.key] = {"wav": _signature(utt.wav), "source": source,
                                 "intervals": [[iv.start_s, iv.end_s, iv.phone] for iv in intervals]}
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        with atomic_write(self.path) as f:
            f.write(json.dumps({"version": CACHE_VERSION, "utterances": self.entries}).encode())
        self.dirty = False


def utterance_closures(utt: Utterance, cache: ClosureCache | None = None) -> tuple[list[Interval], str]:
    """(intervals, source) of one utterance: dataset.json phones, else detection (cached)."""
    phones = utt.phonemes
    if isinstance(phones, list) and phones:
        return phone_intervals(phones), "phones"
    if cache is not None:
        hit = cache.get(utt)
        if hit is not None:
            return hit
    from ..bilabial import detect_closures

    transcript = utt.transcript
    intervals = detect_closures(utt.wav, transcript)
    source = "aligned" if transcript and str(transcript).strip() else "recognized"
    if cache is not None:
        cache.put(utt, intervals, source)
    return intervals, source


def corpus_closures(corpus: Corpus, utterances: Iterable[Utterance], cache_path: str | os.PathLike | None,
                    progress: bool = False) -> dict[str, list[Interval]]:
    """Intervals of every utterance by key; detections are cached in ``cache_path`` (JSON)."""
    utterances = list(utterances)
    cache = ClosureCache(Path(cache_path) if cache_path is not None else None)
    need = [u for u in utterances if not (isinstance(u.phonemes, list) and u.phonemes)]
    if need:
        log.info("%s: %d of %d utterances have no phone timings; finding m/b/p closures in the audio",
                 corpus.root, len(need), len(utterances))
    out: dict[str, list[Interval]] = {}
    try:
        from tqdm import tqdm

        for utt in tqdm(utterances, desc="closures", unit="utt", disable=not progress or not need):
            out[utt.key] = utterance_closures(utt, cache)[0]
    finally:
        cache.save()
    return out
