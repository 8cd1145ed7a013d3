"""Metrics on hand-made arrays with known answers, against the papers' own formulas, and the
``evaluate`` command on a tiny corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.bilabial import Interval
from core.errors import ImitatorError
from core.evaluate.metrics import (FaceRegions, MetricSums, closures_reached, dtw, evaluate, fdd, lip_max_distance,
                          lip_max_squared_distance, lip_opening, mean_vertex_distance, predict_vertices,
                          upper_face_dynamics)
from core.model import Imitator, ImitatorConfig
from core.model.generate import generate
from tiny_corpus import TINY_MODEL, cli_main, tiny_corpus_and_model
from tiny_corpus import one_thread  # noqa: F401  (autouse fixture)


def test_lip_vertex_error_max_over_lips_mean_over_frames_in_both_conventions():
    gt = np.zeros((2, 5, 3))
    pred = gt.copy()
    pred[0, 1] = [0.003, 0, 0]  # lip vertex 1: 3 mm at frame 0
    pred[0, 2] = [0, 0.002, 0]  # lip vertex 2: 2 mm, not the max
    pred[1, 2] = [0, 0, -0.004]  # 4 mm at frame 1
    pred[:, 4] = [0.05, 0, 0]  # vertex 4 is not a lip vertex: ignored
    lips = np.array([1, 2, 3])
    np.testing.assert_allclose(lip_max_distance(pred, gt, lips), [0.003, 0.004])
    np.testing.assert_allclose(lip_max_squared_distance(pred, gt, lips), [9e-6, 16e-6])
    np.testing.assert_allclose(mean_vertex_distance(pred, gt), [(0.003 + 0.002 + 0.05) / 5, (0.004 + 0.05) / 5])
    sums = MetricSums(FaceRegions(lips), fps=30)
    sums.add(pred, gt, np.zeros((5, 3)))
    r = sums.result()
    assert r["lip_vertex_error_mm"] == pytest.approx(3.5)
    assert r["lip_vertex_error_sq_x1e-5"] == pytest.approx(1.25)  # (9 + 16) / 2 x 1e-6 m^2
    assert r["fdd_x1e-7"] is None and r["lip_sync_dtw_mm"] is None  # no upper face, no lip centres


def test_lve_matches_faceformer_codetalker_loop_and_pools_frames_across_sequences():
    rng = np.random.default_rng(0)
    lips = np.array([0, 3, 7, 8])
    seqs = [(rng.normal(size=(T, 10, 3)) * 1e-3, rng.normal(size=(T, 10, 3)) * 1e-3) for T in (4, 9)]
    sums = MetricSums(FaceRegions(lips), fps=30)
    for pred, gt in seqs:
        sums.add(pred, gt, np.zeros((10, 3)))
    # CodeTalker cal_metric.py: vertices of all sequences concatenated, then
    # np.max(np.sum(np.square(gt[:, v] - pred[:, v]) for v in mouth_map, axis=2), axis=1).mean()
    gt_all = np.concatenate([g for _, g in seqs])
    pred_all = np.concatenate([p for p, _ in seqs])
    L2 = np.array([np.square(gt_all[:, v, :] - pred_all[:, v, :]) for v in lips])
    L2 = np.max(np.sum(np.transpose(L2, (1, 0, 2)), axis=2), axis=1)
    assert sums.result()["lip_vertex_error_sq_x1e-5"] == pytest.approx(np.mean(L2) / 1e-5)
    assert sums.result()["frames"] == 13
    # one frame of rounding between prediction and ground truth is cut off
    assert len(lip_max_distance(seqs[1][0], seqs[1][1][:8], lips)) == 8


def test_dtw_absorbs_timing_and_matches_a_plain_loop():
    a = np.array([0, 0, 1, 2, 1, 0.0])
    assert dtw(a, a) == (0.0, 6)
    assert dtw(a, np.array([0, 1, 2, 1, 0, 0.0]))[0] == 0.0  # shifted by a frame: no cost
    assert dtw(np.ones(3), np.zeros(3)) == (3.0, 3)
    assert dtw(np.ones(1), np.zeros(4)) == (4.0, 4)
    rng = np.random.default_rng(1)
    for n, m in ((7, 5), (3, 11), (20, 20)):
        x, y = rng.normal(size=n), rng.normal(size=m)
        acc = np.full((n + 1, m + 1), np.inf)
        acc[0, 0] = 0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                acc[i, j] = abs(x[i - 1] - y[j - 1]) + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
        total, steps = dtw(x, y)
        assert total == pytest.approx(acc[n, m]) and max(n, m) <= steps <= n + m - 1


def test_fdd_is_gt_minus_pred_std_of_squared_displacement_over_upper_face():
    template = np.zeros((3, 3))
    gt = np.zeros((4, 3, 3))
    gt[:, 0, 0] = [0, 1, 0, 1]  # squared displacement 0 1 0 1: std 0.5
    gt[:, 1, 1] = [2, 2, 2, 2]  # constant: std 0
    gt[:, 2, 2] = [0, 3, 0, 3]  # vertex 2 is not upper face
    pred = np.zeros_like(gt)
    upper = np.array([0, 1])
    assert upper_face_dynamics(gt, template, upper) == pytest.approx(0.25)
    assert fdd(pred, gt, template, upper) == pytest.approx(0.25)
    assert fdd(gt, pred, template, upper) == pytest.approx(-0.25)  # signed, as CodeTalker reports it
    # against CodeTalker's loop on random data with a non-zero template
    rng = np.random.default_rng(2)
    template = rng.normal(size=(6, 3))
    gt, pred = template + rng.normal(size=(2, 9, 6, 3)) * 0.1
    upper = [1, 2, 5]

    def dyn(v):
        motion = v - template
        L2 = np.array([np.square(motion[:, i, :]) for i in upper])
        return np.mean(np.std(np.sum(np.transpose(L2, (1, 0, 2)), axis=2), axis=0))

    assert fdd(pred, gt, template, np.array(upper)) == pytest.approx(dyn(gt) - dyn(pred))


def test_bilabial_closure_rate_counts_intervals_where_lips_meet_within_1mm():
    fps = 10.0
    gap_mm = np.array([5, 5, 0.5, 5, 5, 5, 2, 5])
    verts = np.zeros((8, 3, 3))
    verts[:, 0, 1] = gap_mm / 1000  # upper lip centre above the lower one
    np.testing.assert_allclose(lip_opening(verts, (0, 1)), gap_mm / 1000)
    intervals = [Interval(0.2, 0.3, "M"),  # frame 2: 0.5 mm, closed
                 Interval(0.55, 0.75, "B"),  # frame 6: 2 mm, open
                 Interval(0.41, 0.43, "P"),  # no frame inside: nearest to the middle is 4 (5 mm)
                 Interval(2.0, 2.1, "M")]  # after the clip: left out
    assert closures_reached(verts, intervals, (0, 1), fps).tolist() == [True, False, False]
    sums = MetricSums(FaceRegions(np.array([0, 1]), None, (0, 1)), fps)
    gt = verts.copy()
    gt[:, 0, 1] = 0.0002  # ground truth closed all along
    sums.add(verts, gt, np.zeros((3, 3)), intervals)
    r = sums.result()
    assert r["bilabial_intervals"] == 3 and r["bilabial_closure_rate"] == pytest.approx(1 / 3)
    assert r["gt_bilabial_closure_rate"] == 1.0
    assert r["false_closure_rate"] is None  # the ground truth is never apart here
    open_gt = gt.copy()
    open_gt[:, 0, 1] = 0.003  # 3 mm apart all along: frame 2 (0.5 mm) is a false closure
    sums.add(verts, open_gt, np.zeros((3, 3)))
    assert sums.result()["false_closure_rate"] == pytest.approx(1 / 8)
    # lip-sync: DTW of the opening curves in mm (ground truth constant 0.2 mm)
    assert r["lip_sync_dtw_mm"] == pytest.approx(np.abs(gap_mm - 0.2).sum())


def test_regions_from_head_names_and_checks():
    regions = {"lips": np.array([3, 4]), "brow_left": np.array([7]), "eyelid_right": np.array([8, 9]),
               "forehead": np.array([10]), "upper_lip_centre": np.array([3]), "lower_lip_centre": np.array([4])}
    r = FaceRegions.from_regions(regions)
    assert r.lips.tolist() == [3, 4] and r.upper_face.tolist() == [7, 8, 9, 10] and r.lip_centres == (3, 4)
    with pytest.raises(ImitatorError, match="out of range"):
        r.check(10)
    with pytest.raises(ImitatorError, match="lip"):
        FaceRegions.from_regions({"nose": np.array([1])})


# --- evaluate on a tiny corpus ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_corpus_and_model(tmp_path_factory)


def test_evaluate_command_table_and_json(setup, tmp_path, capsys):
    root, folder = setup
    (tmp_path / "lips.txt").write_text("0 1 2 3 4 5 6 7 8 9")
    (tmp_path / "upper.json").write_text(json.dumps(list(range(20, 30))))
    out = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--model", folder, "--data", root, "--lip-mask", tmp_path / "lips.txt",
                     "--upper-mask", tmp_path / "upper.json", "--lip-centres", "0,1", "--device", "cpu",
                     "--cache-dir", tmp_path / "cache", "--out", out]) == 0
    table = capsys.readouterr().out
    assert "lip vertex error (mm" in table and "bilabial closure rate" in table
    data = json.loads(out.read_text())
    m = data["metrics"]
    assert m["sequences"] == 4  # carl is never trained on: 2 utterances x both styles
    assert m["frames"] == 4 * 30 and m["bilabial_intervals"] == 8
    assert {r["style"] for r in data["utterances"]} == {"anna", "bert"}
    for key in ("lip_vertex_error_mm", "mean_vertex_error_mm", "lip_sync_dtw_mm", "fdd_x1e-7"):
        assert np.isfinite(m[key])

    # the same numbers from the functions, one sequence at a time
    from core.data.vocaset import open_corpus

    model = Imitator.from_pretrained(folder)
    corpus = open_corpus(root)
    lips = np.arange(10)
    per_frame = []
    for utt in corpus.splits["test"]:
        gt = corpus.read_vertices(utt, 30.0)
        preds = predict_vertices(model, corpus.read_audio(utt), [0, 1], len(gt), corpus.templates[utt.subject])
        per_frame += [lip_max_distance(p, gt, lips) for p in preds]
    assert m["lip_vertex_error_mm"] == pytest.approx(1e3 * np.concatenate(per_frame).mean(), rel=1e-6)

    # one style for everyone; a model of another mesh is refused
    result, records = evaluate(model, corpus, "test", FaceRegions(lips), style="bert")
    assert result["sequences"] == 2 and {r["style"] for r in records} == {"bert"}
    assert result["lip_sync_dtw_mm"] is None  # no lip centres given
    # the mean style, as Generate speaks without a profile: its vertices are generate's
    result, records = evaluate(model, corpus, "test", FaceRegions(lips), style="mean")
    assert result["sequences"] == 2 and {r["style"] for r in records} == {"mean"}
    utt = corpus.splits["test"][0]
    gt = corpus.read_vertices(utt, 30.0)
    mean = predict_vertices(model, corpus.read_audio(utt), ["mean"], len(gt), corpus.templates[utt.subject])[0]
    made = generate(model, corpus.read_audio(utt), 16000, None, template=corpus.templates[utt.subject], rest=False)
    np.testing.assert_allclose(mean, made.vertices()[: len(gt)], atol=1e-5)
    with pytest.raises(ImitatorError, match="vertices"):
        evaluate(Imitator(ImitatorConfig(**TINY_MODEL, styles=["anna"], num_vertices=7)), corpus, "test",
                 FaceRegions(lips))
    # --strangers: only subjects never trained on, --limit spread over the split
    from core.evaluate.metrics import split_utterances

    assert [u.subject for u in split_utterances(corpus, "test", strangers_of=model)] == ["carl"] * 2
    picked = split_utterances(corpus, "test", 1, strangers_of=model)
    assert [u.key for u in picked] == [corpus.splits["test"][0].key]
    assert split_utterances(corpus, "train", strangers_of=model) == []
    with pytest.raises(ImitatorError, match="never trained on"):
        evaluate(model, corpus, "train", FaceRegions(lips), strangers=True)


def test_unseen_subjects_in_at_most_max_styles_evenly_spread_styles():
    from types import SimpleNamespace

    from core.evaluate.metrics import _styles_for

    model = SimpleNamespace(config=SimpleNamespace(styles=[f"s{i}" for i in range(64)]))
    assert _styles_for(model, "new", None) == list(range(64))
    assert _styles_for(model, "new", None, max_styles=8) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert _styles_for(model, "s5", None, max_styles=8) == [5]  # a training subject: its own style
    assert _styles_for(model, "new", "mean") == ["mean"]  # as Generate without a profile


def test_motion_probe_finds_a_known_latency():
    """bench.motion_probe's shift rows: an output 2 frames late scores 0 when moved 2 frames earlier."""
    from bench.motion_probe import SHIFTS, shifted_error

    rng = np.random.default_rng(0)
    target = np.cumsum(rng.normal(size=(60, 4, 3)), axis=0) * 1e-3  # (T, lips, 3), smooth-ish tracks
    late = np.concatenate([target[:2], target[:-2]])  # late[t] = target[t - 2]
    errors = {k: shifted_error(late, target, k) for k in SHIFTS}
    assert errors[-2] == pytest.approx(0.0, abs=1e-12)
    assert min(errors, key=errors.get) == -2 and errors[0] > 1e-4
