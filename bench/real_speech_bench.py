"""Real recorded speech: lips on a person's voice, next to the same sentences by TTS engines.

    python -m bench.real_speech_bench [--model models/default] [--limit N] [--threads 2]

Data: the *test* split of ``core.data.real_speech`` (English Asterisk prompts, one professional
voice, 8 kHz; Debian asterisk-core-sounds-en-wav + asterisk-core-sounds-en), never used for
training, fitting or tuning. The same sentences are rendered in the same run by eSpeak NG (en-us)
and Festival (kal_diphone) through ``core.data.tts``. "clips" joins 4 test prompts at a time with
pauses of 0.6-2 s (plus 1 s before and after; -60 dBFS noise) so that rest in pauses is measured
on enough pause frames (the single prompts have almost none).

Phone timings: every recording is force-aligned with its transcript (``core.bilabial.Aligner``);
a clip reuses its prompts' alignments, shifted, with the inserted pauses as silence; the TTS
renderings use the engine's own phone timings (exact). On the model's lip centres ("closed" =
within 1 mm, ``core.evaluate.metrics``):
* closures: m/b/p intervals in which the lips close at some frame (and with +-2 frames);
* false closures: frames of speech (aligned phones) more than 100 ms from any aligned m/b/p with
  the lips closed;
* rest in pauses: frames of aligned pauses >= 0.5 s, from 0.2 s into the pause, whose lip gap is
  at most the head's rest gap + 1 mm (a pause next to an unknown word's filler is left out: the
  aligner gives such a word 50 ms and calls the rest of it silence);
* opening range: 95th minus 5th percentile of the lip gap over speech frames, median over utterances.
Decodings: ``v0.2`` closure-aware decoding as v0.2 shipped it (no rest), ``default`` what
generate does now (closure-aware + rest in silence), ``transcript`` default with the transcript's
aligned m/b/p (generate --text), ``recognized`` default with the m/b/p of pocketsphinx's
recognizer instead (no transcript: its acoustic model was trained on real human speech, so this
row compares its phonetic decisions with the model's own log-mel contact net; ``--no-recognized``
skips it), ``raw`` the bare model (--no-lip-closure --no-rest).
PNGs of the worst utterances (default decoding) go to bench/results/real_speech/.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import RESULTS, report
from core.audio import load_audio
from core.bilabial import BILABIALS, Alignment, Aligner, Interval, closures_from_audio
from core.data import tts
from core.data.real_speech import list_prompts
from core.evaluate.metrics import CLOSED_GAP_M, animation_lip_opening, interval_frames
from core.model.rest import HOP_S, speech_mask

SR = 16000
ENGINES = {"espeak": tts.Voice("espeak", "en-us"), "festival": tts.Voice("festival", "kal_diphone")}
DECODINGS = {"v0.2": dict(lip_closure=True, rest=False, transcript=False),
             "default": dict(lip_closure=True, rest=True, transcript=False),
             "transcript": dict(lip_closure=True, rest=True, transcript=True),
             "recognized": dict(lip_closure=True, rest=True, transcript=False, recognized=True),
             "raw": dict(lip_closure=False, rest=False, transcript=False)}
CLIP_PROMPTS = 4
CLIP_PAUSES_S = (0.6, 1.0, 1.5, 2.0)
EDGE_S = 1.0
NOISE_DBFS = -60.0
MIN_PAUSE_S, PAUSE_SETTLE_S, FAR_S, TOLERANCE = 0.5, 0.2, 0.1, 2


def utterance_scores(gap: np.ndarray, fps: float, alignment, rest_gap: float) -> dict:
    """Counts for one utterance: closures, false closures, rest in pauses, opening range."""
    T = len(gap)
    t = np.arange(T) / fps
    closed = gap < CLOSED_GAP_M
    hits = hits_tol = 0
    min_gaps = []
    near = np.zeros(T, dtype=bool)
    for iv in alignment.closures:
        frames = interval_frames(iv, fps, T)
        if not frames.size:
            continue
        hits += bool(closed[frames].any())
        wide = np.arange(max(0, frames[0] - TOLERANCE), min(T, frames[-1] + TOLERANCE + 1))
        hits_tol += bool(closed[wide].any())
        min_gaps.append(float(gap[frames].min()))
        near |= (t > iv.start_s - FAR_S) & (t < iv.end_s + FAR_S)
    speech = np.zeros(T, dtype=bool)
    for name, a, b in alignment.phones:
        if name != "SIL":
            speech |= (t >= a) & (t < b)
    far = speech & ~near
    in_pause = np.zeros(T, dtype=bool)
    fillers = [(a, b) for name, a, b in alignment.phones if name.startswith("+")]
    for a, b in alignment.pauses(MIN_PAUSE_S):
        if any(abs(fb - a) < 1e-6 or abs(fa - b) < 1e-6 for fa, fb in fillers):
            continue
        in_pause |= (t >= a + PAUSE_SETTLE_S - 1e-9) & (t < b)
    g = gap[speech] if speech.any() else gap
    return {"closures": len(min_gaps), "closed": hits, "closed_tol": hits_tol, "min_gaps": min_gaps,
            "far_frames": int(far.sum()), "false_frames": int((far & closed).sum()),
            "pause_frames": int(in_pause.sum()),
            "rest_frames": int((in_pause & (gap <= rest_gap + 1e-3)).sum()),
            "range_mm": float(np.percentile(g, 95) - np.percentile(g, 5)) * 1000}


def pooled(scores: list[dict]) -> dict:
    n = sum(s["closures"] for s in scores)
    k = sum(s["closed"] for s in scores)
    far = sum(s["far_frames"] for s in scores)
    pause = sum(s["pause_frames"] for s in scores)
    gaps = [g for s in scores for g in s["min_gaps"]]
    return {"utterances": len(scores), "closures": f"{k}/{n}",
            "closure_rate": k / n if n else float("nan"),
            "closure_rate_tol2": sum(s["closed_tol"] for s in scores) / n if n else float("nan"),
            "median_min_gap_mm": float(np.median(gaps)) * 1000 if gaps else float("nan"),
            "false_closures": sum(s["false_frames"] for s in scores) / far if far else float("nan"),
            "rest_in_pauses": sum(s["rest_frames"] for s in scores) / pause if pause else float("nan"),
            "pause_frames": pause,
            "opening_range_mm": float(np.median([s["range_mm"] for s in scores]))}


class Runner:
    """Aligns, decodes once per audio, and scores every decoding of it."""

    def __init__(self, model):
        from core.model.generate import generate_stream

        self.model, self.generate_stream = model, generate_stream
        self.aligner = Aligner()
        self.centres = tuple(model.config.lip_closure["centres"])
        tpl = model.template.detach().cpu().numpy()
        self.rest_gap = float(np.linalg.norm(tpl[self.centres[0]] - tpl[self.centres[1]]))
        self.skipped: list[str] = []

    def run(self, name: str, audio: np.ndarray, alignment: Alignment | str,
            decodings: list[str]) -> dict | None:
        """Scores of every decoding; ``alignment`` given, or a transcript to align."""
        from core.model.generate import to_animation

        if isinstance(alignment, str):
            alignment = self.aligner(audio, SR, alignment)
        if alignment is None:
            self.skipped.append(name)
            return None
        step = 30 * SR
        decoded = self.generate_stream(self.model, (audio[i:i + step] for i in range(0, len(audio), step)))
        out = {"name": name, "alignment": alignment, "levels": decoded.levels, "gaps": {}, "scores": {}}
        for d in decodings:
            opt = DECODINGS[d]
            closures = (alignment.closures if opt["transcript"]
                        else closures_from_audio(audio, SR) if opt.get("recognized") else None)
            anim = to_animation(self.model, decoded.weights,
                                contact=decoded.contact if opt["lip_closure"] else None,
                                levels=decoded.levels if opt["rest"] else None, closures=closures)
            gap = animation_lip_opening(anim, self.centres)
            out["gaps"][d] = gap
            out["scores"][d] = utterance_scores(gap, anim.fps, alignment, self.rest_gap)
        return out


def clips(singles: list[tuple[str, np.ndarray, Alignment]], seed: int):
    """(name, audio, alignment) of CLIP_PROMPTS aligned prompts at a time joined with pauses
    (-60 dBFS noise); the prompts' own alignments shifted, the pauses as silence."""
    rng = np.random.default_rng(seed)
    for c in range(0, len(singles) - CLIP_PROMPTS + 1, CLIP_PROMPTS):
        pauses = [EDGE_S] + [CLIP_PAUSES_S[(c // CLIP_PROMPTS + i) % len(CLIP_PAUSES_S)]
                             for i in range(CLIP_PROMPTS - 1)] + [EDGE_S]
        parts, phones, closures, at = [], [], [], 0.0
        for pause, (_, audio, al) in zip(pauses, singles[c:c + CLIP_PROMPTS]):
            n = int(pause * SR)
            parts += [rng.normal(0, 10 ** (NOISE_DBFS / 20), n), audio]
            phones.append(("SIL", at, at + n / SR))
            at += n / SR
            phones += [(ph, a + at, b + at) for ph, a, b in al.phones]
            closures += [Interval(iv.start_s + at, iv.end_s + at, iv.phone) for iv in al.closures]
            at += len(audio) / SR
        n = int(pauses[-1] * SR)
        parts.append(rng.normal(0, 10 ** (NOISE_DBFS / 20), n))
        phones.append(("SIL", at, at + n / SR))
        yield f"clip{c // CLIP_PROMPTS:02d}", np.concatenate(parts).astype(np.float32), \
            Alignment(phones, closures)


def engine_alignment(speech: tts.Speech) -> Alignment:
    """The TTS engine's own phone timings as an Alignment."""
    return Alignment(list(speech.phones), [Interval(a, b, ph) for ph, a, b in speech.phones
                                           if ph in BILABIALS])


def badness(s: dict) -> float:
    return (s["closures"] - s["closed"]) + 0.2 * s["false_frames"] + 0.1 * (s["pause_frames"] - s["rest_frames"])


def plot_worst(runner: Runner, results: list[dict], count: int, folder: Path, fps: float) -> list[str]:
    from core.plot import plot_lip_sync

    folder.mkdir(parents=True, exist_ok=True)
    worst = sorted(results, key=lambda r: -badness(r["scores"]["default"]))[:count]
    written = []
    for r in worst:
        s = r["scores"]["default"]
        path = folder / f"{r['name'].replace('/', '_')}.png"
        plot_lip_sync(path, r["gaps"]["default"] * 1000, fps, levels_db=r["levels"], hop_s=HOP_S,
                      speech=speech_mask(r["levels"]), closures=r["alignment"].closures,
                      pauses=r["alignment"].pauses(MIN_PAUSE_S), rest_gap_mm=runner.rest_gap * 1000,
                      title=f"{r['name']}: {s['closed']}/{s['closures']} closures, "
                            f"{s['false_frames']} false-closure frames, "
                            f"{s['rest_frames']}/{s['pause_frames']} pause frames at rest")
        written.append(str(path))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default", help="model folder (default models/default)")
    ap.add_argument("--limit", type=int, help="only the first N prompts (quick runs)")
    ap.add_argument("--split", default="test", choices=("test", "val"),
                    help="prompts to score (default test; tune on val, never on test)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--plots", type=int, default=8, help="PNGs of the worst utterances (default 8)")
    ap.add_argument("--no-tts", action="store_true", help="skip the eSpeak NG / Festival renderings")
    ap.add_argument("--no-recognized", action="store_true", help="skip the pocketsphinx-recognition row")
    ap.add_argument("--seed", type=int, default=0, help="noise in the clips' pauses")
    ap.add_argument("--name", default="real_speech", help="results name (JSON and PNG folder)")
    args = ap.parse_args()

    import torch

    from core.model.checkpoint import from_pretrained

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    model = from_pretrained(args.model)
    if model.closure is None:
        raise SystemExit(f"{args.model}: the model has no lip centres (no closure-aware decoding); "
                         f"this benchmark reads them from config lip_closure.centres")
    prompts = list_prompts(args.split)[: args.limit]
    runner = Runner(model)
    fps = model.config.fps
    groups: dict[str, list[dict]] = {"real": [], "clips": []}
    singles = []
    decodings = [d for d in DECODINGS if not (args.no_recognized and d == "recognized")]
    for p in prompts:
        audio = load_audio(p.wav, SR)
        r = runner.run(p.name, audio, p.text, decodings)
        if r is not None:
            groups["real"].append(r)
            singles.append((p.name, audio, r["alignment"]))
    for name, audio, alignment in clips(singles, args.seed):
        groups["clips"].append(runner.run(name, audio, alignment, decodings))
    if not args.no_tts:
        for engine, voice in ENGINES.items():
            if not tts.engine_available(engine):
                raise SystemExit(f"TTS engine {engine} missing: apt-get install espeak-ng festival "
                                 f"festvox-kallpc16k")
            with ThreadPoolExecutor(max(1, args.threads)) as pool:  # the engines run as child processes
                speeches = list(pool.map(lambda p: tts.synthesize(p.text, voice), prompts))
            groups[engine] = [runner.run(f"{engine}:{p.name}", speech.audio, engine_alignment(speech),
                                         ["v0.2", "default"]) for p, speech in zip(prompts, speeches)]
    rows = []
    for source, results in groups.items():
        for d in (decodings if source in ("real", "clips") else ("v0.2", "default")):
            if results:
                rows.append({"source": source, "decoding": d,
                             **pooled([r["scores"][d] for r in results])})
    ratios = {}
    real = {r["decoding"]: r["closure_rate"] for r in rows if r["source"] == "real"}
    for d in ("v0.2", "default"):
        tts_rates = [r["closure_rate"] for r in rows if r["source"] in ENGINES and r["decoding"] == d]
        if tts_rates:
            ratios[d] = {"real_over_tts_mean": real[d] / float(np.mean(tts_rates)),
                         **{f"real_over_{row['source']}": real[d] / row["closure_rate"] for row in rows
                            if row["source"] in ENGINES and row["decoding"] == d}}
    for old in (RESULTS / args.name).glob("*.png"):  # this run's plots only
        old.unlink()
    pngs = plot_worst(runner, groups["real"], args.plots - args.plots // 4, RESULTS / args.name, fps)
    pngs += plot_worst(runner, groups["clips"], args.plots // 4, RESULTS / args.name, fps)
    seconds = time.perf_counter() - t0
    for d, r in ratios.items():
        print(f"real/TTS closure ratio ({d}): {r['real_over_tts_mean']:.3f} "
              + " ".join(f"{k}={v:.3f}" for k, v in r.items() if k != "real_over_tts_mean"))
    per_utt = [{"name": r["name"], **{k: v for k, v in r["scores"]["default"].items() if k != "min_gaps"}}
               for r in groups["real"]]
    report(args.name, rows, {"model": str(args.model), "split": args.split, "prompts": len(prompts),
                             "skipped_unaligned": runner.skipped, "rest_gap_mm": runner.rest_gap * 1000,
                             "real_over_tts": ratios, "plots": pngs, "seconds": round(seconds, 1),
                             "threads": args.threads, "per_utterance_default": per_utt})
    print(f"{seconds:.0f} s; worst utterances plotted: {len(pngs)} in {RESULTS / args.name}")


if __name__ == "__main__":
    main()
