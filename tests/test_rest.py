"""Rest in silence: the streamed voice-activity measure, the rest strength, the correction in the
motion basis, and the shipped model on eSpeak NG speech with a pause (Debian espeak-ng required)."""

from __future__ import annotations

import numpy as np
import pytest

from core.data import tts
from core.model.rest import (HOP_S, VoiceLevels, rest_pose_weights, rest_strength, speech_mask)

SR = 16000
RNG = np.random.default_rng(0)


def noise(seconds: float, dbfs: float = -60.0) -> np.ndarray:
    return RNG.normal(0, 10 ** (dbfs / 20), int(seconds * SR)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_with_pause():
    """0.8 s silence, a sentence, 1.2 s silence, a sentence, 0.8 s silence; the silences' spans (s)."""
    a = tts.synthesize("Please enter your password.", tts.Voice("espeak", "en-us")).audio
    b = tts.synthesize("Bob made a map of the moon.", tts.Voice("espeak", "en-us")).audio
    parts = [noise(0.8), a, noise(1.2), b, noise(0.8)]
    audio = np.concatenate(parts) + noise(sum(len(p) for p in parts) / SR)
    t = np.cumsum([0] + [len(p) / SR for p in parts])
    return audio.astype(np.float32), [(t[0], t[1]), (t[2], t[3]), (t[4], t[5])]


def levels_of(audio: np.ndarray, block: int) -> np.ndarray:
    v = VoiceLevels(SR)
    for i in range(0, len(audio), block):
        v.feed(audio[i:i + block])
    return v.levels()


def test_levels_stream_like_the_whole_file(speech_with_pause):
    audio, _ = speech_with_pause
    whole = levels_of(audio, len(audio))
    np.testing.assert_allclose(levels_of(audio, 4321), whole, atol=1e-6)
    assert len(whole) == int(np.ceil(len(audio) / (SR * HOP_S)))


def test_speech_mask_finds_the_pauses_and_no_speech_in_silence_or_noise(speech_with_pause):
    audio, silences = speech_with_pause
    mask = speech_mask(levels_of(audio, SR))
    t = np.arange(len(mask)) * HOP_S
    for a, b in silences:  # inside every silence (80 ms margins) nobody speaks
        assert not mask[(t > a + 0.08) & (t < b - 0.08)].any(), (a, b)
    speaking = (t > silences[0][1] + 0.1) & (t < silences[1][0] - 0.1)
    assert mask[speaking].mean() > 0.9  # short gaps inside the sentence count as speech
    assert not speech_mask(levels_of(np.zeros(3 * SR, np.float32), SR)).any()
    assert not speech_mask(levels_of(noise(3, -20), SR)).any()  # steady noise, however loud
    hum = 0.3 * np.sin(2 * np.pi * 180 * np.arange(3 * SR) / SR)
    assert not speech_mask(levels_of(hum.astype(np.float32), SR)).any()


def test_rest_strength_holds_silence_ramps_smoothly_and_leaves_speech():
    mask = np.zeros(400, dtype=bool)  # 4 s: silent 0-1 s, speech 1-2 s, pause 2-3 s, speech 3-4 s
    mask[100:200] = mask[300:400] = True
    fps = 30.0
    r = rest_strength(mask, fps, 120)
    t = np.arange(120) / fps
    assert (r[t < 0.8] == 1).all()  # leading silence at rest from the first frame
    assert (r[(t > 1.1) & (t < 2.0)] == 0).all()  # speech untouched
    assert (r[(t > 2.25) & (t < 2.8)] == 1).all()  # at rest 0.2 s into the pause
    assert (r[(t > 3.1)] == 0).all()
    assert np.abs(np.diff(r)).max() < 0.5  # eased over 4 frames or more, no snap
    assert r[int(3.0 * fps) - 1] > 0.2  # still leaving rest just before the onset


def test_rest_pose_weights_bring_the_mouth_region_to_rest_and_keep_the_rest():
    d, V = 8, 40
    template = np.zeros((V, 3))
    template[:, 1] = np.linspace(0, 0.2, V)  # a column of vertices 5 mm apart
    centres = (10, 11)  # mouth at y ~ 0.053; the region reaches 6 cm around it
    basis = RNG.normal(0, 1e-3, (d, V, 3))
    far = template[:, 1] > 0.053 + 0.07
    basis[-1] = 0
    basis[-1, far] = 1e-3  # one direction that only moves vertices far from the mouth ("a blink")
    basis[:-1, far] = 0
    bias = RNG.normal(0, 1e-3, (V, 3))
    weights = RNG.normal(0, 1, (5, d)).astype(np.float32)
    strength = np.array([0, 0.5, 1, 1, 0])
    out = rest_pose_weights(weights, strength, basis, bias, template, None, centres)
    np.testing.assert_array_equal(out[[0, 4]], weights[[0, 4]])
    offsets = np.einsum("td,dvc->tvc", out.astype(np.float64), basis) + bias
    before = np.einsum("td,dvc->tvc", weights.astype(np.float64), basis) + bias
    near = ~far & (np.abs(template[:, 1] - 0.053) < 0.06)
    best = np.linalg.lstsq(basis[:, near].reshape(d, -1).T, -bias[near].reshape(-1), rcond=None)[0]
    floor = np.abs(np.einsum("d,dvc->vc", best, basis[:, near]) + bias[near]).max()
    assert np.abs(offsets[2:4][:, near]).max() < floor + 1e-6
    assert np.abs(offsets[2:4][:, near]).max() < 0.5 * np.abs(before[2:4][:, near]).max()
    np.testing.assert_allclose(out[2:4, -1], weights[2:4, -1], atol=1e-4)  # the blink stays


def test_shipped_model_rests_in_the_pause_and_streams_alike(speech_with_pause):
    from core.evaluate.metrics import lip_opening
    from core.model.checkpoint import from_pretrained
    from core.model.generate import generate

    audio, silences = speech_with_pause
    model = from_pretrained("models/default")
    centres = tuple(model.config.lip_closure["centres"])
    rest_gap = float(np.linalg.norm(model.template[centres[0]] - model.template[centres[1]]))
    on = generate(model, audio, SR)
    off = generate(model, audio, SR, rest=False)
    streamed = generate(model, audio, SR, block_seconds=0.7)
    np.testing.assert_allclose(streamed.weights, on.weights, atol=1e-4)
    t = np.arange(on.num_frames) / on.fps
    gap_on, gap_off = lip_opening(on.vertices(), centres), lip_opening(off.vertices(), centres)
    for a, b in silences:
        inside = (t > a + 0.2) & (t < b - 0.1)
        assert (gap_on[inside] <= rest_gap + 1e-3).all(), (a, b, gap_on[inside].max())
    speaking = (t > silences[0][1] + 0.1) & (t < silences[1][0] - 0.1)
    np.testing.assert_array_equal(gap_on[speaking], gap_off[speaking])
    assert (gap_off[(t > silences[1][0] + 0.2) & (t < silences[1][1] - 0.1)] > rest_gap + 1e-3).any()
    # "Bob ..." after the pause: the closure of its B, silent and so inside what rests, still wins
    onset = silences[1][1]
    assert gap_on[(t > onset - 0.1) & (t < onset + 0.1)].min() < 1e-3
