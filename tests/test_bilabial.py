"""Bilabial closure detection on an eSpeak NG utterance, the frame helpers, and bad audio files.

eSpeak NG (Debian package espeak-ng, installed by ./dev setup) is required: without it these tests
fail, they do not skip.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from core.bilabial import (BILABIALS, Interval, _bilabials, closure_frames, closures_from_audio,
                           closures_from_transcript, detect_closures, precision_recall,
                           transcript_words)
from core.audio import resample_audio
from core.data import tts
from core.errors import ImitatorError

TEXT = "Bob made a map of the moon. Happy people bump into maps."
TOLERANCE_S = 0.05


@pytest.fixture(scope="module")
def utterance():
    """eSpeak NG audio of TEXT (16 kHz) and its B/M/P phones as the engine timed them."""
    speech = tts.synthesize(TEXT, tts.Voice("espeak", "en-us"))
    truth = [Interval(a, b, p) for p, a, b in speech.phones if p in BILABIALS]
    assert [iv.phone for iv in truth] == list("BBMMPMPPPBMPMP"), speech.phones
    return speech.audio, tts.SAMPLE_RATE, truth


def test_transcript_alignment_finds_every_closure_near_espeak_time(utterance):
    audio, sr, truth = utterance
    found = closures_from_transcript(audio, sr, TEXT)
    assert [iv.phone for iv in found] == [t.phone for t in truth]
    for iv, t in zip(found, truth):
        assert abs(iv.start_s - t.start_s) < TOLERANCE_S, (iv, t)
        assert abs(iv.end_s - t.end_s) < TOLERANCE_S, (iv, t)
    frames = int(np.ceil(len(audio) / sr * 100))
    p, r = precision_recall(closure_frames(found, 100, frames),
                            closure_frames(truth, 100, frames), 1)
    assert p >= 0.9 and r >= 0.9, (p, r)


def test_recognition_without_transcript_finds_closures(utterance):
    audio, sr, truth = utterance
    found = closures_from_audio(audio, sr)
    frames = int(np.ceil(len(audio) / sr * 100))
    p, r = precision_recall(closure_frames(found, 100, frames),
                            closure_frames(truth, 100, frames), 1)
    assert p >= 0.5 and r >= 0.3, (p, r, found)


def test_detect_closures_reads_a_file_at_another_rate(tmp_path, utterance):
    audio, sr, truth = utterance
    path = tmp_path / "speech.wav"
    sf.write(path, resample_audio(audio, sr, 8000), 8000)  # a phone line's rate
    found = detect_closures(path, TEXT)
    assert len(found) == len(truth)
    assert max(abs(a.start_s - b.start_s) for a, b in zip(found, truth)) < TOLERANCE_S


def test_transcript_words_spell_numbers_and_mark_unknown_words():
    vocab = {"press", "one", "twenty", "three", "to", "mute", "the", "a"}
    lookup = lambda w: "X" if w in vocab else None  # noqa: E731
    assert transcript_words("Press 1 to mute, 23 the zorblax-frob!", lookup) == \
        ["press", "one", "to", "mute", "twenty", "three", "the", "[SPEECH]"]


def test_stop_after_silence_gets_its_closure():
    # ('SIL', 0, 30 frames), then P for 4 frames: the P starts 50 ms earlier, not before the SIL
    phones = [("SIL", 0, 30), ("P", 30, 4), ("L", 34, 5), ("M", 39, 6)]
    p, m = _bilabials(phones)
    assert p.phone == "P" and p.start_s == pytest.approx(0.30 + 0.0078 - 0.05, abs=1e-3)
    assert p.end_s == pytest.approx(0.34 + 0.0078, abs=1e-3)
    assert m.start_s == pytest.approx(0.39 + 0.0078, abs=1e-3)  # nasals are not extended


def test_closure_frames_half_open_intervals():
    ivs = [Interval(0.10, 0.13, "M"), Interval(0.25, 0.255, "P")]
    mask = closure_frames(ivs, 100, 30)
    assert np.flatnonzero(mask).tolist() == [10, 11, 12, 25]
    assert np.flatnonzero(closure_frames(ivs, 30, 10)).tolist() == [3]  # 0.1 s at 30 fps
    assert not closure_frames([], 60, 5).any()
    with pytest.raises(ValueError):
        closure_frames(ivs, 0, 5)


def test_closure_frames_matches_a_per_frame_check():
    rng = np.random.default_rng(0)
    starts = np.round(rng.uniform(0, 3, 40), 3)
    ivs = [Interval(a, a + d, "B") for a, d in zip(starts, np.round(rng.uniform(0, 0.2, 40), 3))]
    t = np.arange(200) / 60.0
    expected = np.array([any(iv.start_s <= x < iv.end_s for iv in ivs) for x in t])
    assert (closure_frames(ivs, 60, 200) == expected).all()


def test_precision_recall_exact_and_with_tolerance():
    true = np.zeros(20, bool)
    true[5:9] = True
    pred = np.zeros(20, bool)
    pred[6:10] = True  # shifted by one frame
    assert precision_recall(pred, true) == (0.75, 0.75)
    assert precision_recall(pred, true, tolerance=1) == (1.0, 1.0)
    pred[15] = True  # a false alarm far away stays wrong with tolerance
    p, r = precision_recall(pred, true, tolerance=1)
    assert p == pytest.approx(0.8) and r == 1.0
    p, r = precision_recall(np.zeros(20, bool), true)
    assert np.isnan(p) and r == 0.0
    with pytest.raises(ValueError):
        precision_recall(pred[:10], true)


def _one_line_naming(exc: pytest.ExceptionInfo, path) -> None:
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg, msg


def test_missing_file_is_one_line_error(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(ImitatorError) as exc:
        detect_closures(path, "hello")
    _one_line_naming(exc, path)


def test_non_audio_file_is_one_line_error(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(ImitatorError) as exc:
        detect_closures(path)
    _one_line_naming(exc, path)


def test_silent_file_is_one_line_error(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    with pytest.raises(ImitatorError) as exc:
        detect_closures(path, "hello")
    _one_line_naming(exc, path)


def test_transcript_without_known_words_falls_back_to_recognition(utterance, caplog):
    audio, sr, _ = utterance
    with caplog.at_level("WARNING", logger="core.bilabial"):
        found = closures_from_transcript(audio, sr, "zorblax qwfp")
    assert found == closures_from_audio(audio, sr)
    assert "could not be aligned" in caplog.text
