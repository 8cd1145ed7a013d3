"""Bilabial closure detection: frame precision/recall against the TTS engines' own phone timings
(the corpus's ground truth, ``core.data.tts``), and agreement of the two detectors on real
recorded speech (Asterisk prompts: Debian asterisk-core-sounds-en-wav + asterisk-core-sounds-en).

    python -m bench.bilabial_bench [--utterances 60] [--prompts 80] [--seed 0]

Ground truth (synthetic): every B, M, P phone as the engine timed it (eSpeak NG phoneme events,
a voiceless stop's closure silence included; Festival's segment times). Scores are on 10 ms frames
(100 fps), pooled over utterances, exact and with +-1 frame tolerance.
Real speech has no timings: the no-transcript detector is scored against the aligned one, and
both are checked against the signal: a P closure is silent, so the quietest 10 ms frame inside a
detected P should lie far below the utterance's median speech level ("dip"; random intervals of
the same length inside speech give the baseline).
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import time
from pathlib import Path

import numpy as np

from bench.common import report
from core.audio import load_audio
from core.bilabial import (BILABIALS, Interval, closure_frames, closures_from_audio,
                           closures_from_transcript, precision_recall)
from core.data import tts
from core.data.sentences import load_sentences

FPS = 100
VOICES = [tts.Voice("espeak", "en-us"), tts.Voice("espeak", "en-us", "f3"),
          tts.Voice("espeak", "en-us", "m3"), tts.Voice("espeak", "en"),
          tts.Voice("espeak", "en-gb-x-rp", "m1"), tts.Voice("espeak", "en-029", "f2"),
          tts.Voice("festival", "kal_diphone"), tts.Voice("festival", "ked_diphone"),
          tts.Voice("festival", "cmu_us_slt_arctic_hts")]
PROSODY = [tts.Prosody(1.0, 0.0), tts.Prosody(0.85, 2.0), tts.Prosody(1.25, -2.0)]
PROMPTS = Path("/usr/share/asterisk/sounds/en")
PROMPT_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def true_closures(speech: tts.Speech) -> list[Interval]:
    """The engine's own B/M/P phones."""
    return [Interval(a, b, phone) for phone, a, b in speech.phones if phone in BILABIALS]


def pooled(masks: list[tuple[np.ndarray, np.ndarray]], tolerance: int) -> tuple[float, float]:
    """Precision/recall over all utterances, separated by gaps so tolerance never crosses them."""
    gap = np.zeros(2, dtype=bool)
    pred = np.concatenate([x for p, _ in masks for x in (p, gap)])
    true = np.concatenate([x for _, t in masks for x in (t, gap)])
    return precision_recall(pred, true, tolerance)


def event_scores(pred: list[Interval], true: list[Interval]) -> tuple[int, list[float]]:
    """True closures overlapped by a prediction, and |start error| (ms) of each of those."""
    hits, errors = 0, []
    for t in true:
        overlapping = [p for p in pred if p.start_s < t.end_s and p.end_s > t.start_s]
        if overlapping:
            hits += 1
            errors.append(min(abs(p.start_s - t.start_s) for p in overlapping) * 1000)
    return hits, errors


def synthetic_rows(n: int, seed: int) -> tuple[list[dict], dict]:
    rng = random.Random(seed)
    sentences = rng.sample(load_sentences(), n)
    runs: dict[tuple[str, str], dict] = {}
    for i, sentence in enumerate(sentences):
        voice = VOICES[i % len(VOICES)]
        if not tts.engine_available(voice.engine):
            raise SystemExit(f"TTS engine {voice.engine} missing: ./dev setup installs it")
        speech = tts.synthesize(sentence.text, voice, PROSODY[(i // len(VOICES)) % len(PROSODY)])
        frames = int(np.ceil(speech.duration * FPS))
        truth = true_closures(speech)
        true_mask = closure_frames(truth, FPS, frames)
        for mode in ("aligned", "recognized"):
            run = runs.setdefault((voice.engine, mode), {"masks": [], "hits": 0, "true": 0,
                                                         "errors": [], "s": 0.0, "audio_s": 0.0})
            t0 = time.perf_counter()
            if mode == "aligned":
                pred = closures_from_transcript(speech.audio, tts.SAMPLE_RATE, sentence.text)
            else:
                pred = closures_from_audio(speech.audio, tts.SAMPLE_RATE)
            run["s"] += time.perf_counter() - t0
            run["audio_s"] += speech.duration
            run["masks"].append((closure_frames(pred, FPS, frames), true_mask))
            hits, errors = event_scores(pred, truth)
            run["hits"] += hits
            run["true"] += len(truth)
            run["errors"] += errors
    rows = []
    for (engine, mode), run in sorted(runs.items()):
        p0, r0 = pooled(run["masks"], 0)
        p1, r1 = pooled(run["masks"], 1)
        rows.append({"data": engine, "detector": mode, "utterances": len(run["masks"]),
                     "precision": p0, "recall": r0, "precision_tol1": p1, "recall_tol1": r1,
                     "closures_found": f"{run['hits']}/{run['true']}",
                     "median_start_err_ms": float(np.median(run["errors"])) if run["errors"]
                     else float("nan"),
                     "x_realtime": run["s"] / run["audio_s"]})
    return rows, {"voices": [v.id for v in VOICES],
                  "prosody": [(p.rate, p.pitch) for p in PROSODY]}


def prompt_transcripts() -> dict[str, str]:
    """Asterisk prompt name -> transcript (bracketed non-speech prompts left out)."""
    if not PROMPT_TEXT.exists():
        raise SystemExit(f"{PROMPT_TEXT} missing: apt-get install asterisk-core-sounds-en "
                         f"asterisk-core-sounds-en-wav")
    out = {}
    for line in gzip.open(PROMPT_TEXT, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        wav = PROMPTS / f"{name.strip()}.wav"
        if sep and not line.startswith(";") and "[" not in text and wav.exists():
            out[name.strip()] = re.sub(r"\(.*?\)", " ", text).strip()  # drop "(tone plays)"
    return out


def level_dips(audio: np.ndarray, intervals: list[Interval], rng: np.random.Generator,
               ) -> tuple[list[float], list[float]]:
    """dB below the median speech level of the quietest 10 ms frame in each interval, and the same
    for a random interval of equal length inside speech (baseline)."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-10)
    speech = np.flatnonzero(db > db.max() - 35)
    median = float(np.median(db[speech]))
    dips, baseline = [], []
    for iv in intervals:
        a = int(iv.start_s * 100)
        n = max(1, int(iv.end_s * 100) - a)
        dips.append(median - float(db[a:a + n].min()))
        b = int(rng.choice(speech[speech < len(db) - n]))
        baseline.append(median - float(db[b:b + n].min()))
    return dips, baseline


def real_rows(n: int, seed: int, show: int = 4) -> tuple[list[dict], dict]:
    texts = prompt_transcripts()
    names = sorted(texts)
    random.Random(seed).shuffle(names)
    names = [k for k in names if re.search(r"[mbp]", texts[k].lower())][:n]
    masks, seconds, total_audio, examples = [], [0.0, 0.0], 0.0, []
    counts = [0, 0]
    rng = np.random.default_rng(seed)
    dips: dict[str, list[float]] = {"aligned": [], "recognized": [], "random": []}
    for name in names:
        audio = load_audio(PROMPTS / f"{name}.wav", 16000)
        total_audio += len(audio) / 16000
        frames = int(np.ceil(len(audio) / 16000 * FPS))
        t0 = time.perf_counter()
        aligned = closures_from_transcript(audio, 16000, texts[name])
        t1 = time.perf_counter()
        recognized = closures_from_audio(audio, 16000)
        seconds[0] += t1 - t0
        seconds[1] += time.perf_counter() - t1
        counts[0] += len(aligned)
        counts[1] += len(recognized)
        masks.append((closure_frames(recognized, FPS, frames),
                      closure_frames(aligned, FPS, frames)))
        for mode, ivs in (("aligned", aligned), ("recognized", recognized)):
            found, baseline = level_dips(audio, [iv for iv in ivs if iv.phone == "P"], rng)
            dips[mode] += found
            dips["random"] += baseline if mode == "aligned" else []
        if len(examples) < show:
            examples.append({"prompt": name, "text": texts[name],
                             "aligned": [(iv.phone, iv.start_s, iv.end_s) for iv in aligned],
                             "recognized": [(iv.phone, iv.start_s, iv.end_s) for iv in recognized]})
    p0, r0 = pooled(masks, 0)
    p1, r1 = pooled(masks, 1)
    row = {"data": "asterisk 8 kHz", "detector": "recognized vs aligned", "utterances": len(names),
           "precision": p0, "recall": r0, "precision_tol1": p1, "recall_tol1": r1,
           "closures_found": f"{counts[1]} vs {counts[0]}", "median_start_err_ms": float("nan"),
           "x_realtime": (seconds[0] + seconds[1]) / total_audio}
    dip_summary = {mode: {"count": len(v), "median_db": round(float(np.median(v)), 1),
                          "share_over_10db": round(float(np.mean(np.array(v) > 10)), 3)}
                   for mode, v in dips.items()}
    return [row], {"real_audio_s": round(total_audio, 1), "p_closure_dips": dip_summary,
                   "examples": examples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=60)
    ap.add_argument("--prompts", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows, extra = synthetic_rows(args.utterances, args.seed)
    more, extra2 = real_rows(args.prompts, args.seed)
    for ex in extra2["examples"]:
        print(f"\n{ex['prompt']}: {ex['text']}")
        for mode in ("aligned", "recognized"):
            print(f"  {mode:10s} " + " ".join(f"{p}:{a:.2f}-{b:.2f}" for p, a, b in ex[mode]))
    print("\nP closures on real speech, quietest frame below the median speech level:")
    for mode, d in extra2["p_closure_dips"].items():
        print(f"  {mode:10s} n={d['count']:4d}  median {d['median_db']:5.1f} dB  "
              f"share > 10 dB {d['share_over_10db']:.2f}")
    print()
    report("bilabial", rows + more, {**extra, **extra2, "fps": FPS, "seed": args.seed})


if __name__ == "__main__":
    main()
