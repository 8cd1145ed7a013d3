"""The real-speech benchmark's per-utterance scores on a hand-made alignment, and the lip-sync plot."""

from __future__ import annotations

import numpy as np
import pytest

from bench.real_speech_bench import pooled, utterance_scores
from core.bilabial import Alignment, Interval
from core.errors import ImitatorError

FPS = 10.0  # one frame per 100 ms keeps the hand counts readable
REST = 1.4e-3


def alignment() -> Alignment:
    # 0-1 s silence, "ma" 1.0-1.6 s (M 1.0-1.2), 1.6-2.4 s pause, "pa" 2.4-3.0 (P 2.4-2.6), 3.0-3.2 s SIL
    phones = [("SIL", 0.0, 1.0), ("M", 1.0, 1.2), ("AA", 1.2, 1.6), ("SIL", 1.6, 2.4),
              ("P", 2.4, 2.6), ("AA", 2.6, 3.0), ("SIL", 3.0, 3.2)]
    return Alignment(phones, [Interval(1.0, 1.2, "M"), Interval(2.4, 2.6, "P")])


def test_scores_count_closures_false_closures_and_rest():
    gap = np.full(32, 8e-3)
    gap[:10] = REST  # leading silence at rest
    gap[10] = 0.0  # the M closes
    gap[14] = 0.5e-3  # a closure at 1.4 s: 200 ms from the M, so a false one
    gap[18:24] = REST + 0.5e-3  # the pause: at rest from 1.8 s (0.2 s in) except ...
    gap[21] = REST + 2e-3  # ... one frame
    gap[28] = 0.0  # 200 ms after the P's end: too late for the closure (+-2 frames), a false one
    s = utterance_scores(gap, FPS, alignment(), REST)
    assert (s["closures"], s["closed"], s["closed_tol"]) == (2, 1, 1)
    # speech frames more than 100 ms from m/b/p: 13..15 and 27..29
    assert s["false_frames"] == 2 and s["far_frames"] == 6
    # pauses >= 0.5 s: 0-1.0 s (frames 2..9) and 1.6-2.4 s (frames 18..23); 3.0-3.2 s is too short
    assert (s["pause_frames"], s["rest_frames"]) == (14, 13)
    total = pooled([s, s])
    assert total["closures"] == "2/4" and total["closure_rate"] == 0.5
    assert total["rest_in_pauses"] == pytest.approx(13 / 14)
    assert total["false_closures"] == pytest.approx(2 / 6)


def test_a_pause_next_to_an_unknown_word_is_not_scored():
    # the aligner gives an unknown word ([SPEECH] -> +SPN+) 50 ms and calls the rest silence
    phones = [("AA", 0.0, 0.5), ("+SPN+", 0.5, 0.55), ("SIL", 0.55, 1.5), ("AA", 1.5, 2.0)]
    s = utterance_scores(np.full(20, 8e-3), FPS, Alignment(phones, []), REST)
    assert s["pause_frames"] == 0
    phones[1] = ("N", 0.5, 0.55)
    assert utterance_scores(np.full(20, 8e-3), FPS, Alignment(phones, []), REST)["pause_frames"] == 7  # 0.8-1.4 s


def test_pauses_merge_adjacent_silences_and_keep_long_ones():
    a = Alignment([("SIL", 0.0, 0.3), ("SIL", 0.3, 0.7), ("AA", 0.7, 1.0), ("SIL", 1.0, 1.2)], [])
    assert a.pauses(0.5) == [(0.0, 0.7)]
    assert a.pauses() == [(0.0, 0.7), (1.0, 1.2)]


def test_plot_writes_a_png_and_refuses_other_names(tmp_path):
    from core.plot import plot_lip_sync

    gap = np.abs(np.sin(np.linspace(0, 6, 90))) * 10
    out = plot_lip_sync(tmp_path / "p.png", gap, 30.0, levels_db=np.linspace(-80, -10, 300),
                        speech=np.arange(300) > 100, closures=[Interval(1.0, 1.1, "M")],
                        pauses=[(0.0, 0.5)], rest_gap_mm=1.4, title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 600 and height >= 400
    with pytest.raises(ImitatorError, match="ending in .png"):
        plot_lip_sync(tmp_path / "p.jpg", gap, 30.0)
    assert not (tmp_path / "p.jpg").exists()


def test_animation_lip_opening_equals_the_vertex_gap():
    from core.animation import Animation
    from core.evaluate.metrics import animation_lip_opening, lip_opening

    rng = np.random.default_rng(0)
    anim = Animation(template=rng.normal(size=(30, 3)).astype(np.float32),
                     basis=rng.normal(size=(5, 30, 3)).astype(np.float32),
                     weights=rng.normal(size=(12, 5)).astype(np.float32),
                     bias=rng.normal(size=(30, 3)).astype(np.float32), fps=30.0)
    np.testing.assert_allclose(animation_lip_opening(anim, (3, 7)), lip_opening(anim.vertices(), (3, 7)),
                               rtol=1e-5)
