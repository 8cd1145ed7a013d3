"""core.audio: any sample format, rate and channel count in; mono float32 out; one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from core.audio import audio_info, load_audio, resample_audio, save_wav, stream_audio
from core.errors import ImitatorError


def tone(seconds: float, sr: int, hz: float = 440.0, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(round(seconds * sr)) / sr)


@pytest.mark.parametrize("sr, channels, subtype", [(44100, 6, "PCM_U8"), (192000, 2, "FLOAT"),
                                                   (8000, 1, "PCM_16"), (16000, 1, "PCM_24")])
def test_formats_to_mono_16k(tmp_path, sr, channels, subtype):
    x = np.repeat(tone(1.5, sr)[:, None], channels, axis=1)
    sf.write(tmp_path / "a.wav", x, sr, subtype=subtype)
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == 24000
    # 8-bit audio is only good to ~1e-2
    np.testing.assert_allclose(y[200:-200], tone(1.5, 16000)[200:-200], atol=2e-2 if sr == 44100 else 2e-3)


def test_stream_blocks_equal_whole(tmp_path):
    sf.write(tmp_path / "a.flac", tone(7.3, 48000) * np.linspace(0.1, 1, round(7.3 * 48000)), 48000)
    blocks = list(stream_audio(tmp_path / "a.flac", 16000, block_seconds=2.0))
    assert len(blocks) >= 4 and max(len(b) for b in blocks) <= 2 * 16000 + 512  # bounded memory
    whole = load_audio(tmp_path / "a.flac")
    assert np.array_equal(np.concatenate(blocks), whole) and len(whole) == round(7.3 * 16000)
    assert audio_info(tmp_path / "a.flac").duration == pytest.approx(7.3)


def test_resample_and_save_round_trip(tmp_path):
    x = tone(1.0, 22050).astype(np.float32)
    save_wav(tmp_path / "x.wav", x, 22050)
    assert np.array_equal(load_audio(tmp_path / "x.wav", 22050), x)
    y = resample_audio(x, 22050, 16000)
    assert len(y) == 16000
    np.testing.assert_allclose(y[100:-100], tone(1.0, 16000)[100:-100], atol=2e-3)


def test_bad_audio_files(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    sf.write(tmp_path / "quiet.wav", np.full(16000, 3e-5), 16000, subtype="FLOAT")
    sf.write(tmp_path / "none.wav", np.zeros(0), 16000)
    nan = tone(1.0, 16000).astype(np.float32)
    nan[8000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all\n" * 20)
    cases = {
        "silent.wav": "audio is silent (all samples are zero)",
        "quiet.wav": "audio is silent (peak -90 dBFS)",
        "none.wav": "holds no samples",
        "nan.wav": "NaN or Inf samples (first at 0.50 s)",
        "empty.wav": "empty (0 bytes)",
        "text.wav": "not a readable audio file",
        "missing.wav": "audio file not found",
    }
    for name, message in cases.items():
        with pytest.raises(ImitatorError) as err:
            load_audio(tmp_path / name)
        text = str(err.value)
        assert text.startswith(str(tmp_path / name)) and message in text and "\n" not in text
    assert load_audio(tmp_path / "silent.wav", allow_silent=True).shape == (16000,)
