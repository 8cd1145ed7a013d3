"""The real-speech prompt list and its fixed split, on a tiny fake Asterisk folder."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from core.data.real_speech import list_prompts, split_of, spoken_text
from core.errors import ImitatorError

LINES = """; Core Asterisk Sounds in English

activated: Activated.
vm-login: Comedian Mail.  Mailbox?
digits/40: forty
beep: [this is a simple beep tone]
confbridge-join: <beep ascending>
silence/1: (1 second of silence)
demo-enterkeywords: Please enter one or more keywords separated by * and then press the pound key.
agent-pass: Please enter your password followed by # (tone plays)
no-recording: This prompt has no wav file.
"""


def fake_folder(tmp: Path, gz: bool = True) -> tuple[Path, Path]:
    sounds = tmp / "sounds"
    for name in ("activated", "vm-login", "digits/40", "beep", "confbridge-join", "silence/1",
                 "demo-enterkeywords", "agent-pass"):
        (sounds / f"{name}.wav").parent.mkdir(parents=True, exist_ok=True)
        (sounds / f"{name}.wav").write_bytes(b"RIFF")  # listing never opens the audio
    text = tmp / ("core-sounds-en.txt.gz" if gz else "core-sounds-en.txt")
    if gz:
        with gzip.open(text, "wt", encoding="utf-8") as f:
            f.write(LINES)
    else:
        text.write_text(LINES, encoding="utf-8")
    return sounds, text


@pytest.mark.parametrize("gz", [True, False])
def test_lists_spoken_prompts_with_wavs_only(tmp_path, gz):
    sounds, text = fake_folder(tmp_path, gz)
    prompts = list_prompts(sounds_dir=sounds, transcripts=text)
    assert [p.name for p in prompts] == ["activated", "agent-pass", "demo-enterkeywords",
                                         "digits/40", "vm-login"]
    by_name = {p.name: p for p in prompts}
    assert by_name["digits/40"].wav == sounds / "digits" / "40.wav"
    assert by_name["vm-login"].text == "Comedian Mail. Mailbox?"
    assert by_name["agent-pass"].text == "Please enter your password followed by pound"
    assert "star" in by_name["demo-enterkeywords"].text.split()
    assert all(p.split == split_of(p.name) for p in prompts)


def test_split_filter_partitions_the_list(tmp_path):
    sounds, text = fake_folder(tmp_path)
    every = list_prompts(sounds_dir=sounds, transcripts=text)
    parts = [list_prompts(s, sounds, text) for s in ("train", "val", "test")]
    assert sorted(p.name for part in parts for p in part) == [p.name for p in every]


def test_split_is_fixed_by_name():
    # Pinned: if these move, the benchmark's test split has leaked into training data.
    assert {n: split_of(n) for n in ("activated", "vm-login", "digits/40", "auth-thankyou")} == {
        "activated": "test", "vm-login": "train", "digits/40": "test", "auth-thankyou": "test"}
    shares = Counter(split_of(f"prompt-{i}") for i in range(4000))
    assert abs(shares["test"] / 4000 - 0.35) < 0.03
    assert abs(shares["val"] / 4000 - 0.10) < 0.02


def test_spoken_text_drops_non_speech():
    assert spoken_text("[ascending tones]") is None
    assert spoken_text("(10 seconds of silence)") is None
    assert spoken_text(" (tone) Thank you. ") == "Thank you."


def test_missing_package_is_a_one_line_error(tmp_path):
    with pytest.raises(ImitatorError, match="apt-get install asterisk-core-sounds-en"):
        list_prompts(sounds_dir=tmp_path, transcripts=tmp_path / "missing.txt.gz")
    sounds, text = fake_folder(tmp_path)
    with pytest.raises(ImitatorError, match="split"):
        list_prompts("dev", sounds, text)


@pytest.mark.skipif(not Path("/usr/share/doc/asterisk-core-sounds-en").is_dir(),
                    reason="Debian asterisk-core-sounds-en not installed")
def test_installed_prompts_have_a_test_split_of_150():
    assert len(list_prompts("test")) >= 150
