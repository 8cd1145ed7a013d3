"""Optional transcript: reading it, aligning it (or refusing text that does not fit), and
``generate --text/--text-file/AUDIO.txt/--plot`` with the shipped model on eSpeak NG speech."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from core.animation import Animation
from core.data import tts
from core.errors import ImitatorError
from core.transcript import check_transcript, read_transcript, transcript_closures
from tiny_corpus import cli_main

TEXT = "Bob made a map of the moon. Happy people bump into maps."
OTHER = "Seven silly sheep tried to catch the yellow rat in the kitchen."
SR = tts.SAMPLE_RATE


@pytest.fixture(scope="module")
def speech():
    s = tts.synthesize(TEXT, tts.Voice("espeak", "en-us"))
    audio = np.concatenate([np.zeros(SR // 2), s.audio, np.zeros(SR // 2)]).astype(np.float32)
    return audio + np.random.default_rng(0).normal(0, 1e-3, audio.size).astype(np.float32)


def test_read_transcript_accepts_text_and_refuses_binary(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffBob  made\n a map.\n".encode("utf-8"))
    assert read_transcript(tmp_path / "a.txt") == "Bob made a map."
    (tmp_path / "b.txt").write_bytes("caf\xe9 map".encode("latin-1"))
    assert read_transcript(tmp_path / "b.txt") == "café map"
    (tmp_path / "c.txt").write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    with pytest.raises(ImitatorError, match=r"c\.txt: not a text file"):
        read_transcript(tmp_path / "c.txt")
    with pytest.raises(ImitatorError, match=r"missing\.txt: cannot read"):
        read_transcript(tmp_path / "missing.txt")
    with pytest.raises(ImitatorError, match="--text is empty"):
        check_transcript("  .. ", "--text")


def test_aligned_closures_or_a_warning_when_the_text_does_not_fit(speech, caplog):
    found = transcript_closures(speech, TEXT, SR)
    assert [iv.phone for iv in found] == list("BBMMPMPPPBMPMP")
    assert 0.4 < found[0].start_s < 0.7  # after the half second of silence
    with caplog.at_level(logging.WARNING):
        assert transcript_closures(speech, OTHER, SR) is None
    assert "does not fit the audio" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert transcript_closures(speech, "Боб сделал карту луны.", SR) is None
    assert "does not look like English" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert transcript_closures(speech, "Zorblax qwfp vlimmer grunf.", SR) is None
    assert "not English dictionary words" in caplog.text


def test_generate_with_transcript_closes_every_mbp_and_plots(speech, tmp_path, capsys):
    from core.evaluate.metrics import closures_reached

    wav = tmp_path / "take.wav"
    sf.write(wav, speech, SR)
    found = transcript_closures(speech, TEXT, SR)
    args = ["generate", "--audio", wav, "--threads", 1]
    assert cli_main(args + ["--out", tmp_path / "plain.npz", "--plot", tmp_path / "plain.png"]) == 0
    (tmp_path / "take.txt").write_text(TEXT)  # picked up automatically from now on
    assert cli_main(args + ["--out", tmp_path / "beside.npz"]) == 0
    assert "take.txt: 14 m/b/p aligned" in capsys.readouterr().out
    assert cli_main(args + ["--out", tmp_path / "other.npz", "--text", OTHER]) == 0  # does not fit: ...
    assert cli_main(args + ["--out", tmp_path / "text.npz", "--text", TEXT]) == 0
    centres = (520, 540)  # the shipped model's lip centres (config lip_closure.centres)
    for name in ("beside", "text"):
        anim = Animation.load(tmp_path / f"{name}.npz")
        assert closures_reached(anim.vertices(), found, centres, anim.fps).all(), name
    assert (tmp_path / "plain.png").read_bytes()[:4] == b"\x89PNG"
    plain = Animation.load(tmp_path / "plain.npz").weights
    assert np.abs(Animation.load(tmp_path / "text.npz").weights - plain).max() > 1e-3  # the text acted
    np.testing.assert_array_equal(Animation.load(tmp_path / "other.npz").weights, plain)  # ... audio alone
    # a stray binary .txt beside the audio is ignored with a warning, an explicit one refused
    (tmp_path / "take.txt").write_bytes(b"\0\1\2")
    assert cli_main(args + ["--out", tmp_path / "stray.npz"]) == 0
    assert cli_main(args + ["--out", tmp_path / "bad.npz", "--text-file", tmp_path / "take.txt"]) == 1
    assert "take.txt: not a text file" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()
    assert cli_main(args + ["--out", tmp_path / "empty.npz", "--text", " "]) == 1
    assert "--text is empty" in capsys.readouterr().err
    assert cli_main(args + ["--out", tmp_path / "x.npz", "--plot", tmp_path / "x.jpg"]) == 1
    assert "must end in .png" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()
