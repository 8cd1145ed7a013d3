"""The synthetic talking-head corpus: TTS speech + coarticulated ARKit motion on the default head,
written in the processed-VOCASET layout.

    OUT/wav/<subject>_<sentence>.wav            16 kHz mono PCM16
    OUT/arkit/<subject>_<sentence>.npy          (T, 52) float32 ARKit weights at fps (60)
    OUT/shape_keys.npy                          (52, V, 3) float32 the head's ARKit shape keys:
                                                vertices = template + weights @ shape keys, exactly
    OUT/vertices_npy/<subject>_<sentence>.npy   only with ``vertices``: (T, 3V) float32, metres
    OUT/templates.pkl                           {subject: (V, 3) float32}, plain pickle protocol 4
    OUT/dataset.json                            fps, units, topology, splits, transcripts, phone
                                                timings, voices, styles, summary numbers

Every subject has a sampled Style; every utterance a voice, rate, pitch and level drawn
independently of the subject, so the voice does not tell the subject.

Splits (``dataset.json`` "splits", the form ``core.data.vocaset`` reads): sentences are split by
Harvard list (1-56 train, 57-64 val, 65-72 test). Train subjects read train sentences (train
split) and val sentences (val split); val subjects are all val; test subjects read train and test
sentences and are all test (their train-sentence utterances serve style adaptation, their test
sentences were never spoken in training). Test and val subjects never appear in training.

Deterministic for a seed: all files are byte-identical between runs, except the ``timing`` entry
of dataset.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..errors import ImitatorError
from ..faces.default_head import ARKIT_SHAPE_NAMES
from ..faces.head import Head
from . import phones as ph
from . import tts
from .sentences import SOURCE, Sentence, load_sentences
from .styles import Style, dtw_lip_vertex_error, lip_vertex_error, sample_style
from .vocaset import SHAPE_KEYS
from .visemes import LipContact, MotionConfig, arkit_weights, bilabial_frames, shape_key_basis

log = logging.getLogger(__name__)

FORMAT = "imitator-synthetic-corpus"
FORMAT_VERSION = 1
SENTENCE_SPLIT_LISTS = {"train": range(1, 57), "val": range(57, 65), "test": range(65, 73)}
# Two fixed renditions used to measure how much styles matter (different accent, voice, rate).
STYLE_RENDITIONS = (
    (tts.Voice("espeak", "en-us"), tts.Prosody(1.0, 0.0)),
    (tts.Voice("espeak", "en-gb-x-rp", "f2"), tts.Prosody(1.2, 3.0)),
)


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate. The default (12 x 40) is the corpus of the shipped default model."""

    subjects: int = 12
    utterances: int = 40  # per subject
    seed: int = 0
    engines: tuple[str, ...] = ("espeak", "festival")
    festival_share: float = 0.3  # fraction of utterances spoken by Festival voices
    rate: tuple[float, float] = (0.8, 1.25)  # speaking-rate factor range
    pitch: tuple[float, float] = (-4.0, 4.0)  # pitch shift range, semitones
    level_db: tuple[float, float] = (-9.0, -1.0)  # peak level range, dBFS
    val_subjects: float = 1 / 6  # fractions of the subjects held out (at least 1 each if N >= 3)
    test_subjects: float = 1 / 6
    val_sentences: float = 0.1  # fractions of each subject's utterances from val/test sentences
    test_sentences: float = 0.1
    vertices: bool = False  # also write vertices_npy/ (about 60 kB per frame); arkit/ + shape keys are exact
    style_sentences: int = 3  # sentences used to measure style distances
    detection_sample: int = 60  # utterances on which the bilabial detector is scored (0: none)
    motion: MotionConfig = field(default_factory=MotionConfig)
    # closer to people: several sentences with pauses, silence around them, a noise floor, breaths
    sentences_per_utterance: tuple[int, int] = (1, 1)  # min, max sentences joined into one utterance
    pause: tuple[float, float] = (0.2, 2.0)  # seconds of silence between joined sentences
    edge_silence: tuple[float, float] = (0.0, 0.0)  # seconds of silence before and after the speech
    noise_floor_db: tuple[float, float] | None = None  # background noise level range, dBFS RMS
    breath_share: float = 0.0  # share of pauses (>= 0.5 s) that end with an audible breath
    # real recorded speech (core.data.real_speech, phones by forced alignment): every train prompt is
    # animated in this many training subjects' styles (val prompts go to the val split); 0: none
    real_styles: int = 0


@dataclass(frozen=True)
class Item:
    """One utterance to generate: a sentence (``extra`` ones joined after it, ``gaps`` the silences
    around and between them), or a real recording (``recording``: a core.data.real_speech prompt)."""

    subject: str
    subject_index: int
    sentence: Sentence
    voice: tts.Voice
    prosody: tts.Prosody
    level_db: float
    seed: tuple[int, ...]
    extra: tuple[Sentence, ...] = ()
    gaps: tuple[float, ...] = ()  # () or (lead, pause after each sentence but the last ..., trail)
    breaths: tuple[bool, ...] = ()  # per pause: ends with a breath
    noise_db: float | None = None
    recording: Path | None = None
    phones: tuple = ()  # of a recording, from forced alignment
    recording_split: str = ""  # the recording's real-speech split: train or val

    @property
    def name(self) -> str:
        return f"{self.subject}_{self.sentence.id}"

    @property
    def text(self) -> str:
        return " ".join(s.text for s in (self.sentence, *self.extra))


# ---------------------------------------------------------------------------------------------
# Plan


def subject_ids(n: int) -> list[str]:
    return [f"synth{i + 1:02d}" for i in range(n)]


def split_subjects(cfg: CorpusConfig) -> dict[str, list[str]]:
    """Subjects per split, drawn from the seed; val/test subjects never appear in training."""
    ids = subject_ids(cfg.subjects)
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(ids))
    n = len(ids)
    n_test = max(1, round(n * cfg.test_subjects)) if n >= 2 else 0
    n_val = max(1, round(n * cfg.val_subjects)) if n >= 3 else 0
    pick = [ids[i] for i in order]
    return {"train": sorted(pick[n_test + n_val:]), "val": sorted(pick[n_test:n_test + n_val]),
            "test": sorted(pick[:n_test])}


def split_sentences(sentences: list[Sentence]) -> dict[str, list[Sentence]]:
    return {k: [s for s in sentences if s.list_no in lists]
            for k, lists in SENTENCE_SPLIT_LISTS.items()}


def subject_style(cfg: CorpusConfig, index: int) -> Style:
    """Subject ``index``'s style: depends on the seed and the index only (not on N)."""
    return sample_style(np.random.default_rng([cfg.seed, 2, index]))


def draw_voice(cfg: CorpusConfig, rng: np.random.Generator) -> tts.Voice:
    engines = [e for e in cfg.engines if e in ("espeak", "festival")]
    if not engines:
        raise ImitatorError(f"No known TTS engine in {cfg.engines}; use espeak and/or festival.")
    if "festival" in engines and ("espeak" not in engines or rng.random() < cfg.festival_share):
        names = list(tts.FESTIVAL_VOICES)
        return tts.Voice("festival", names[rng.integers(len(names))])
    return tts.Voice("espeak", tts.ESPEAK_ACCENTS[rng.integers(len(tts.ESPEAK_ACCENTS))],
                     tts.ESPEAK_VARIANTS[rng.integers(len(tts.ESPEAK_VARIANTS))])


def sentence_counts(cfg: CorpusConfig, split: str) -> dict[str, int]:
    """How many sentences of each pool a subject of ``split`` reads."""
    m = cfg.utterances
    held = max(1, round(m * (cfg.val_sentences + cfg.test_sentences))) if m >= 3 else 0
    if split == "train":  # seen subjects: held-out sentences go to val only
        return {"train": m - held, "val": held, "test": 0}
    if split == "test":  # unseen subjects: some sentences nobody was trained on
        return {"train": m - held, "val": 0, "test": held}
    n_test = max(1, round(m * cfg.test_sentences)) if m >= 3 else 0
    n_val = max(1, round(m * cfg.val_sentences)) if m >= 3 else 0
    return {"train": m - n_val - n_test, "val": n_val, "test": n_test}


def plan(cfg: CorpusConfig, sentences: list[Sentence]) -> list[Item]:
    """Every utterance of the corpus, with its voice and prosody, in a fixed order."""
    if cfg.subjects < 1 or cfg.utterances < 1:
        raise ImitatorError(f"Need at least 1 subject and 1 utterance per subject "
                            f"(got {cfg.subjects} and {cfg.utterances}).")
    pools = split_sentences(sentences)
    split_of = {s: k for k, v in split_subjects(cfg).items() for s in v}
    items = []
    for si, subject in enumerate(subject_ids(cfg.subjects)):
        counts = sentence_counts(cfg, split_of[subject])
        for k, c in counts.items():
            if c > len(pools[k]):
                raise ImitatorError(
                    f"{cfg.utterances} utterances per subject need {c} {k} sentences but only "
                    f"{len(pools[k])} exist; use fewer --utterances.")
        rng = np.random.default_rng([cfg.seed, 3, si])
        chosen = [pools[k][i] for k in ("train", "val", "test")
                  for i in sorted(rng.choice(len(pools[k]), counts[k], replace=False))]
        for ui, sentence in enumerate(chosen):
            r = np.random.default_rng([cfg.seed, 4, si, ui])
            voice = draw_voice(cfg, r)
            prosody = tts.Prosody(round(float(r.uniform(*cfg.rate)), 4),
                                  round(float(r.uniform(*cfg.pitch)), 3))
            item = Item(subject, si, sentence, voice, prosody, round(float(r.uniform(*cfg.level_db)), 2),
                        (cfg.seed, 5, si, ui))
            items.append(_with_pauses(item, cfg, pools[_pool_of(sentence)], np.random.default_rng([cfg.seed, 6, si, ui])))
    return items


def _pool_of(sentence: Sentence) -> str:
    return next(k for k, lists in SENTENCE_SPLIT_LISTS.items() if sentence.list_no in lists)


def _with_pauses(item: Item, cfg: CorpusConfig, pool: list[Sentence], rng: np.random.Generator) -> Item:
    """The item with the sentences, silences, breaths and noise floor the config asks for (drawn
    from their own random stream, so the corpus of a 1-sentence config stays as it was)."""
    lo, hi = cfg.sentences_per_utterance
    n = int(rng.integers(lo, hi + 1)) if hi > 1 else 1
    extra = tuple(pool[i] for i in rng.choice(len(pool), n - 1, replace=False)
                  if pool[i].id != item.sentence.id) if n > 1 else ()
    edges = cfg.edge_silence
    if not extra and edges == (0.0, 0.0) and cfg.noise_floor_db is None:
        return item
    pauses = [round(float(rng.uniform(*cfg.pause)), 3) for _ in extra]
    gaps = (round(float(rng.uniform(*edges)), 3), *pauses, round(float(rng.uniform(*edges)), 3))
    breaths = tuple(bool(p >= 0.5 and rng.random() < cfg.breath_share) for p in pauses)
    noise = None if cfg.noise_floor_db is None else round(float(rng.uniform(*cfg.noise_floor_db)), 2)
    return dataclasses.replace(item, extra=extra, gaps=gaps, breaths=breaths, noise_db=noise)


def plan_recordings(cfg: CorpusConfig, train_subjects: list[str], recordings: list[dict]) -> list[Item]:
    """Real recordings (dicts of name, wav, text, split, phones) as utterances of training subjects:
    each train recording in ``real_styles`` subjects' styles, each val one in one subject's style."""
    index = {s: i for i, s in enumerate(subject_ids(cfg.subjects))}
    items = []
    for k, rec in enumerate(recordings):
        r = np.random.default_rng([cfg.seed, 7, k])
        count = cfg.real_styles if rec["split"] == "train" else 1
        for subject in sorted(r.choice(train_subjects, min(count, len(train_subjects)), replace=False)):
            si = index[subject]
            sentence = Sentence(rec["id"], 0, rec["text"])
            edges = cfg.edge_silence
            gaps = (round(float(r.uniform(*edges)), 3), round(float(r.uniform(*edges)), 3))
            items.append(Item(subject, si, sentence, tts.Voice("real", "asterisk-en"), tts.Prosody(),
                              round(float(r.uniform(*cfg.level_db)), 2), (cfg.seed, 8, si, k), gaps=gaps,
                              noise_db=None if cfg.noise_floor_db is None else
                              round(float(r.uniform(*cfg.noise_floor_db)), 2),
                              recording=Path(rec["wav"]), phones=tuple(map(tuple, rec["phones"])),
                              recording_split=rec["split"]))
    return items


def align_recordings(split: str | None = None) -> list[dict]:
    """The real-speech prompts of the train and val splits with phone timings by forced alignment
    (prompts that do not align are left out); [] when the prompts are not installed."""
    from ..audio import load_audio
    from ..bilabial import Aligner
    from .real_speech import list_prompts

    try:
        prompts = [p for p in list_prompts() if p.split in ("train", "val")]
    except ImitatorError as e:
        log.warning("no real recordings in the corpus: %s", e)
        return []
    align, out = Aligner(), []
    for p in prompts:
        audio = load_audio(p.wav, tts.SAMPLE_RATE)
        alignment = align(audio, tts.SAMPLE_RATE, p.text)
        if alignment is None:
            continue
        phones = [(ph.SILENCE if name not in ph.PHONES else name, a, b) for name, a, b in alignment.phones]
        out.append({"name": p.name, "id": "real-" + "".join(c if c.isalnum() else "-" for c in p.name),
                    "wav": str(p.wav), "text": p.text, "split": p.split, "phones": _fit_phones(phones, len(audio) / tts.SAMPLE_RATE)})
    log.info("real recordings: %d of %d prompts aligned", len(out), len(prompts))
    return out


def _fit_phones(phones: list, duration: float) -> list:
    """Contiguous phones from 0 to ``duration``: silence fills gaps, the last phone ends at the end."""
    out, t = [], 0.0
    for name, a, b in phones:
        a, b = max(float(a), t), min(float(b), duration)
        if b <= a:
            continue
        if a > t + 1e-6:
            out.append((ph.SILENCE, round(t, 4), round(a, 4)))
        out.append((name, round(a, 4), round(b, 4)))
        t = b
    if t < duration - 1e-6:
        out.append((ph.SILENCE, round(t, 4), round(duration, 4)))
    return out


def splits_json(cfg: CorpusConfig, sentences: list[Sentence], items: list[Item]) -> dict:
    """The "splits" entry of dataset.json, in the form core.data.vocaset reads."""
    subjects = split_subjects(cfg)
    pools = {k: {s.id for s in v} for k, v in split_sentences(sentences).items()}
    train = set(subjects["train"])
    real_train = {it.sentence.id for it in items if it.recording_split == "train"}
    return {
        "train": {"subjects": subjects["train"],
                  "sentences": sorted(({it.sentence.id for it in items} & pools["train"]) | real_train)},
        "val": {"subjects": subjects["val"],
                "utterances": [it.name for it in items if it.subject in train and
                               (it.sentence.id in pools["val"] or it.recording_split == "val")]},
        "test": {"subjects": subjects["test"]},
    }


# ---------------------------------------------------------------------------------------------
# Generating one utterance


@dataclass
class _Rig:
    """What a worker needs of the head."""

    template: np.ndarray  # (V, 3) float32
    basis: np.ndarray  # (52, 3V) float32
    contact: LipContact

    @classmethod
    def from_head(cls, head: Head) -> _Rig:
        return cls(head.vertices.astype(np.float32), shape_key_basis(head),
                   LipContact.from_head(head))


# Per worker process: the rig and settings, set once by the pool's initializer (the rig is too
# large to send with every task).
_WORKER: dict[str, object] = {}


def _init_worker(head: Head, cfg: CorpusConfig, out: Path) -> None:
    _WORKER.update(rig=_Rig.from_head(head), cfg=cfg, out=out)


def speak(item: Item) -> tts.Speech:
    """The item's audio and phones: its sentences synthesized and joined with the pauses and breaths
    between them and silence around them, or its recording with the aligned phones."""
    if item.recording is not None:
        from ..audio import load_audio

        parts = [tts.Speech(load_audio(item.recording, tts.SAMPLE_RATE), list(item.phones), item.voice)]
    else:
        parts = [tts.synthesize(s.text, item.voice, item.prosody) for s in (item.sentence, *item.extra)]
    if not item.gaps:
        return parts[0]
    rng = np.random.default_rng([*item.seed, 1])
    sr = tts.SAMPLE_RATE
    chunks, phones, t = [], [], 0.0

    def silence(seconds: float, breath: bool = False) -> None:
        nonlocal t
        n = int(round(seconds * sr))
        if n <= 0:
            return
        quiet = np.zeros(n, np.float32)
        if breath:  # an inhalation: band-passed noise, 0.25-0.45 s, ending 50 ms before speech
            m = min(n, int(sr * rng.uniform(0.25, 0.45)))
            burst = _band_noise(rng, m, 300.0, 2500.0) * np.hanning(m) * 0.03
            end = max(0, n - int(0.05 * sr))
            quiet[max(0, end - m):end] += burst[: end - max(0, end - m)]
        chunks.append(quiet)
        phones.append((ph.SILENCE, round(t, 4), round(t + n / sr, 4)))
        t += n / sr

    silence(item.gaps[0])
    for k, part in enumerate(parts):
        chunks.append(part.audio.astype(np.float32))
        phones.extend((name, round(a + t, 4), round(b + t, 4)) for name, a, b in part.phones)
        t += len(part.audio) / sr
        silence(item.gaps[k + 1], breath=k < len(item.breaths) and item.breaths[k])
    audio = np.concatenate(chunks)
    return tts.Speech(audio, _merge_silences(phones), item.voice, item.prosody)


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """(n,) white noise band-limited to [lo, hi] Hz, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / tts.SAMPLE_RATE)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return (x / max(float(np.sqrt(np.mean(x ** 2))), 1e-9)).astype(np.float32)


def _merge_silences(phones: list) -> list:
    out: list = []
    for name, a, b in phones:
        if out and name == ph.SILENCE and out[-1][0] == ph.SILENCE:
            out[-1] = (ph.SILENCE, out[-1][1], b)
        else:
            out.append((name, a, b))
    return out


def render(item: Item, rig: _Rig, cfg: CorpusConfig) -> tuple[tts.Speech, np.ndarray]:
    """Speech (level set, noise floor added) and (T, 52) ARKit weights of one item."""
    speech = speak(item)
    peak = float(np.abs(speech.audio).max())
    if peak <= 0:
        raise ImitatorError(f"{item.voice.id} produced silence for {item.text!r}.")
    speech.audio = (speech.audio * (10 ** (item.level_db / 20) / peak)).astype(np.float32)
    if item.noise_db is not None:
        rng = np.random.default_rng([*item.seed, 2])
        noise = _band_noise(rng, len(speech.audio), 60.0, 7000.0) * np.float32(10 ** (item.noise_db / 20))
        speech.audio = np.clip(speech.audio + noise, -1, 1).astype(np.float32)
    weights = arkit_weights(speech.phones, speech.duration, subject_style(cfg, item.subject_index),
                            rig.contact, np.random.default_rng(list(item.seed)), cfg.motion)
    return speech, weights


def generate(item: Item, rig: _Rig, cfg: CorpusConfig, out: Path) -> dict:
    """Render one item, write its wav / arkit / vertices files under ``out``; its json record."""
    import soundfile as sf

    speech, weights = render(item, rig, cfg)
    sf.write(out / "wav" / f"{item.name}.wav", speech.audio, tts.SAMPLE_RATE, subtype="PCM_16")
    np.save(out / "arkit" / f"{item.name}.npy", weights)
    if cfg.vertices:
        verts = (rig.template.reshape(1, -1) + weights @ rig.basis).astype(np.float32)  # (T, 3V)
        np.save(out / "vertices_npy" / f"{item.name}.npy", verts)
    closed = bilabial_frames(speech.phones, len(weights), cfg.motion.fps)
    gap = rig.contact.gap(weights)[closed]
    return {
        "name": item.name, "subject": item.subject, "sentence": item.sentence.id,
        "text": item.text, "voice": item.voice.id, "rate": item.prosody.rate,
        "pitch": item.prosody.pitch, "level_db": item.level_db,
        "duration": round(speech.duration, 6), "frames": int(len(weights)),
        "closure_gap_max_mm": round(float(gap.max(initial=0.0)) * 1000, 4),
        "phones": [[p, s, e] for p, s, e in speech.phones],
    }


def _generate_in_worker(item: Item) -> dict:
    return generate(item, _WORKER["rig"], _WORKER["cfg"], _WORKER["out"])


# ---------------------------------------------------------------------------------------------
# Style distances


MAX_STYLE_PARTNERS = 15  # subjects each one is compared with when measuring style distances


def style_partners(n: int, seed: int, k: int = MAX_STYLE_PARTNERS) -> list[list[int]]:
    """For each of n subjects, the others it is compared with: all of them, or a seeded sample of k."""
    rng = np.random.default_rng([seed, 8])
    others = [[j for j in range(n) if j != i] for i in range(n)]
    if n <= k + 1:
        return others
    return [sorted(int(j) for j in rng.choice(o, k, replace=False)) for o in others]


def style_distances(rig: _Rig, lips: np.ndarray, cfg: CorpusConfig,
                    sentences: list[Sentence]) -> dict:
    """Lip vertex error (mm) between subjects vs between two renditions of one subject.

    Each of ``cfg.style_sentences`` test sentences is spoken in two renditions (STYLE_RENDITIONS:
    another accent, voice, rate and pitch). ``within``: a subject's rendition 1 vs its rendition
    2 (DTW-aligned); ``between``: subject i's rendition 1 vs subject j's rendition 2 (DTW), and
    ``between_same_audio``: both on rendition 1, frame by frame. With more than
    ``MAX_STYLE_PARTNERS + 1`` subjects each is compared with a seeded sample of that many others
    (all pairs would be quadratic: minutes of DTW for 100 subjects).
    """
    n = cfg.subjects
    partners = style_partners(n, cfg.seed)
    pool = split_sentences(sentences)["test"]
    pick = np.random.default_rng([cfg.seed, 6]).choice(len(pool), min(cfg.style_sentences,
                                                                      len(pool)), replace=False)
    chosen = [pool[i] for i in pick]
    k_ = len(ARKIT_SHAPE_NAMES)
    basis = rig.basis.reshape(k_, -1, 3)[:, lips].reshape(k_, -1)  # (52, L*3)
    template = rig.template[lips]  # (L, 3)
    within, between, same = [], [], []
    for k, sentence in enumerate(chosen):
        tracks = []  # [rendition][subject] -> (T, L, 3) lip vertices in mm
        for r, (voice, prosody) in enumerate(STYLE_RENDITIONS):
            speech = tts.synthesize(sentence.text, voice, prosody)
            per_subject = []
            for i in range(n):
                w = arkit_weights(speech.phones, speech.duration, subject_style(cfg, i),
                                  rig.contact, np.random.default_rng([cfg.seed, 7, k, r, i]),
                                  cfg.motion)  # (T, 52)
                per_subject.append(1000 * (template + (w @ basis).reshape(len(w), -1, 3)))
            tracks.append(per_subject)
        for i in range(n):
            within.append(dtw_lip_vertex_error(tracks[0][i], tracks[1][i]))
            for j in partners[i]:
                between.append(dtw_lip_vertex_error(tracks[0][i], tracks[1][j]))
                same.append(lip_vertex_error(tracks[0][i], tracks[0][j]))

    def mean(values: list[float]) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    return {
        "lve_within_subject_mm": mean(within),
        "lve_between_subjects_mm": mean(between),
        "lve_between_subjects_same_audio_mm": mean(same),
        "sentences": [s.id for s in chosen],
        "renditions": [{"voice": v.id, "rate": p.rate, "pitch": p.pitch}
                       for v, p in STYLE_RENDITIONS],
        "method": "lip vertex error: per-frame max L2 over the head's lip vertices, mean over "
                  "frames; DTW-aligned between renditions of different timing; mm",
    }


# ---------------------------------------------------------------------------------------------
# The corpus


def closure_detection_scores(folder: Path, records: list[dict], cfg: CorpusConfig) -> dict:
    """Precision/recall of m/b/p closure frames found by forced alignment (core.bilabial, with
    the transcript) against the engines' own phone timings, on a seeded sample of utterances."""
    from .. import bilabial

    rng = np.random.default_rng(cfg.seed + 7)
    chosen = sorted(rng.permutation(len(records))[: cfg.detection_sample].tolist())
    scores: dict[str, list] = {}
    for k in chosen:
        r = records[k]
        found = bilabial.detect_closures(folder / "wav" / f"{r['name']}.wav", r["text"])
        truth = [bilabial.Interval(a, b, phone) for phone, a, b in r["phones"]
                 if phone in bilabial.BILABIALS]
        for fps, tolerance in ((30, 0), (100, 0), (100, 1)):
            n = int(np.ceil(r["duration"] * fps))
            pair = (bilabial.closure_frames(found, fps, n), bilabial.closure_frames(truth, fps, n))
            scores.setdefault(f"{fps}fps_tol{tolerance}", []).append(pair)
    result: dict = {"utterances": len(chosen)}
    for key, pairs in scores.items():
        pred = np.concatenate([p for p, _ in pairs])
        true = np.concatenate([t for _, t in pairs])
        tol = int(key.rsplit("tol", 1)[1])
        precision, recall = bilabial.precision_recall(pred, true, tolerance=tol)
        result[key] = {"precision": round(precision, 3), "recall": round(recall, 3)}
    return result


def lip_vertices(head: Head) -> np.ndarray:
    """(L,) indices of the head's lip vertices."""
    r = head.regions
    if "lips" in r:
        return np.asarray(r["lips"])
    if "upper_lip" in r and "lower_lip" in r:
        return np.union1d(r["upper_lip"], r["lower_lip"])
    raise ImitatorError(f"Head '{head.name}' has no lip region; the corpus needs one.")


def check_engines(voices: set[tts.Voice]) -> None:
    """One clear error before any work if an engine or a voice package is missing."""
    for engine in sorted({v.engine for v in voices}):
        if not tts.engine_available(engine):
            package = tts.ESPEAK_PACKAGE if engine == "espeak" else tts.FESTIVAL_PACKAGE
            raise ImitatorError(f"TTS engine {engine} is not installed: install the Debian "
                                f"package `{package}`, or leave it out with --engines.")
    for name in sorted({v.name for v in voices if v.engine == "festival"}):
        if not tts.festival_voice_installed(name):
            raise ImitatorError(f"Festival voice {name} is not installed: install the Debian "
                                f"package `{tts.FESTIVAL_VOICES[name][0]}`, or leave festival "
                                f"out with --engines.")


def build_corpus(out: Path, cfg: CorpusConfig, head: Head, jobs: int = 2,
                 overwrite: bool = False, progress: bool = True) -> dict:
    """Generate the corpus into ``out``; returns the dataset.json content.

    Everything is written into a temp folder beside ``out`` and renamed at the end, so a failed
    or interrupted run never leaves a complete-looking folder.
    """
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and not overwrite:
        raise ImitatorError(f"{out} exists; choose a new folder or pass --overwrite.")
    sentences = load_sentences()
    items = plan(cfg, sentences)
    if cfg.real_styles:
        items += plan_recordings(cfg, split_subjects(cfg)["train"], align_recordings())
    check_engines({it.voice for it in items if it.recording is None} | {v for v, _ in STYLE_RENDITIONS})
    rig = _Rig.from_head(head)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("wav", "arkit") + (("vertices_npy",) if cfg.vertices else ()):
        (tmp / sub).mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        records: list[dict] = [{}] * len(items)
        with tqdm(total=len(items), unit="utt", desc="synth", disable=not progress) as bar:
            if jobs <= 1:
                for k, item in enumerate(items):
                    records[k] = generate(item, rig, cfg, tmp)
                    bar.update()
            else:
                with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"),
                                         initializer=_init_worker,
                                         initargs=(head, cfg, tmp)) as pool:
                    futures = {pool.submit(_generate_in_worker, it): k
                               for k, it in enumerate(items)}
                    try:
                        for fut in as_completed(futures):
                            records[futures[fut]] = fut.result()
                            bar.update()
                    except BaseException:
                        pool.shutdown(wait=True, cancel_futures=True)  # don't finish the rest
                        raise
        seconds = time.perf_counter() - t0
        distances = style_distances(rig, lip_vertices(head), cfg, sentences)
        detection = closure_detection_scores(tmp, records, cfg)
        np.save(tmp / SHAPE_KEYS, rig.basis.reshape(len(ARKIT_SHAPE_NAMES), -1, 3).astype(np.float32))
        with open(tmp / "templates.pkl", "wb") as f:
            pickle.dump({s: rig.template.copy() for s in subject_ids(cfg.subjects)}, f,
                        protocol=4)
        meta = _dataset_json(cfg, head, sentences, items, records, distances, seconds, jobs)
        meta["summary"]["closure_detection"] = detection
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _dataset_json(cfg: CorpusConfig, head: Head, sentences: list[Sentence], items: list[Item],
                  records: list[dict], distances: dict, seconds: float, jobs: int) -> dict:
    split_of = {s: k for k, v in split_subjects(cfg).items() for s in v}
    used = {r["sentence"] for r in records}
    sentence_split = {k: [s.id for s in v if s.id in used]
                      for k, v in split_sentences(sentences).items()}
    audio_s = sum(r["duration"] for r in records)
    config = asdict(cfg)
    config["engines"] = list(cfg.engines)
    return {
        "format": FORMAT, "version": FORMAT_VERSION,
        "fps": cfg.motion.fps, "sample_rate": tts.SAMPLE_RATE, "units": "m",
        "topology": head.topology,
        "head": {"name": head.name, "topology": head.topology, "num_vertices": head.num_vertices},
        "arkit_names": list(ARKIT_SHAPE_NAMES),
        "phone_set": list(ph.PHONES),
        "text_source": SOURCE,
        "config": config,
        "splits": splits_json(cfg, sentences, items),
        "sentence_splits": sentence_split,
        "subjects": {s: {"split": split_of[s], "style": subject_style(cfg, i).to_dict()}
                     for i, s in enumerate(subject_ids(cfg.subjects))},
        "utterances": records,
        "summary": {
            "subjects": cfg.subjects, "utterances": len(records),
            "hours": round(audio_s / 3600, 4), "frames": sum(r["frames"] for r in records),
            "closure_gap_max_mm": max(r["closure_gap_max_mm"] for r in records),
            "bilabial_phones": sum(p[0] in ph.BILABIALS for r in records for p in r["phones"]),
            "voices": len({r["voice"] for r in records}),
            "real_recordings": sum(r["voice"].startswith("real:") for r in records),
            "style_distance": distances,
        },
        "timing": {"seconds": round(seconds, 2), "jobs": jobs,
                   "utterances_per_minute": round(60 * len(records) / max(seconds, 1e-9), 1)},
    }
