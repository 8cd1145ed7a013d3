"""Processed-VOCASET layout reader and the PyTorch dataset, on tiny datasets written here."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core.audio import save_wav
from core.data.dataset import TalkingHeadDataset, collate
from core.data.livelink import write_arkit_csv
from core.data.vocaset import VOCASET_SUBJECTS, open_corpus
from core.errors import ImitatorError

SR, V = 16000, 12


def write_corpus(root, subjects, sentences, *, fps=60.0, seconds=0.5, info=None, arkit=False,
                 protocol=2):
    """wav/, vertices_npy/ (T, 3V), templates.pkl (plain pickle: test data only), dataset.json.

    Vertex x of frame i is i / fps (seconds), plus a per-subject identity offset, so readers can
    check timing exactly; the template is the identity offset.
    """
    (root / "wav").mkdir(parents=True)
    (root / "vertices_npy").mkdir()
    rng = np.random.default_rng(0)
    templates = {}
    for k, subject in enumerate(subjects):
        templates[subject] = (rng.normal(scale=0.05, size=(V, 3)) + [0, k, 0]).astype(np.float32)
        for sentence in sentences:
            key = f"{subject}_{sentence}"
            T = int(round(seconds * fps))
            verts = np.repeat(templates[subject][None], T, axis=0)
            verts[:, :, 0] += (np.arange(T) / fps)[:, None]
            np.save(root / "vertices_npy" / f"{key}.npy", verts.reshape(T, 3 * V))
            tone = 0.1 * np.sin(2 * np.pi * (200 + 10 * k) * np.arange(int(seconds * SR)) / SR)
            save_wav(root / "wav" / f"{key}.wav", tone, SR)
            if arkit:
                (root / "arkit").mkdir(exist_ok=True)
                weights = np.zeros((T, 52), np.float32)
                weights[:, 17] = np.arange(T) / T
                np.save(root / "arkit" / f"{key}.npy", weights)
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=protocol)
    if info is not None:
        (root / "dataset.json").write_text(json.dumps(info))
    return templates


VOCA = [*VOCASET_SUBJECTS["train"][:3], VOCASET_SUBJECTS["val"][0], VOCASET_SUBJECTS["test"][0]]


@pytest.fixture
def voca(tmp_path):
    write_corpus(tmp_path, VOCA, ["sentence01", "sentence02", "sentence21", "sentence40"])
    return tmp_path


def test_vocaset_layout_defaults(voca):
    corpus = open_corpus(voca)
    assert corpus.fps == 60.0 and corpus.num_vertices == V and corpus.info == {}
    assert len(corpus.utterances) == 20
    u = corpus.utterances[0]
    assert (u.subject, u.sentence) == ("FaceTalk_170725_00137_TA", "sentence01")  # underscores kept
    # FaceFormer/Imitator split: train subjects all 40 sentences, val/test subjects 21..40
    assert corpus.split_subjects("train") == sorted(VOCA[:3])
    assert corpus.split_subjects("val") == [VOCA[3]] and corpus.split_subjects("test") == [VOCA[4]]
    assert len(corpus.splits["train"]) == 12
    assert sorted(u.sentence for u in corpus.splits["test"]) == ["sentence21", "sentence40"]


def test_vertices_resampled_to_model_fps(voca):
    corpus = open_corpus(voca)
    utt = corpus.utterances[0]
    raw = corpus.read_vertices(utt)
    assert raw.shape == (30, V, 3) and raw.dtype == np.float32
    at30 = corpus.read_vertices(utt, 30)
    assert np.array_equal(at30, raw[::2])  # VOCASET's reference [::2]
    at25 = corpus.read_vertices(utt, 25)
    template = corpus.templates[utt.subject]
    assert len(at25) == 13  # 0 .. 0.48 s within the 0 .. 0.483 s of motion
    expected = np.broadcast_to(np.arange(13)[:, None] / 25, (13, V))
    np.testing.assert_allclose(at25[:, :, 0] - template[:, 0], expected, atol=1e-6)


def test_our_corpus_with_dataset_json(tmp_path):
    subjects = ["S01", "S02", "S03", "S04"]
    info = {
        "fps": 50, "units": "mm", "topology": "0123456789abcdef",
        "splits": {"train": {"subjects": ["S01", "S02"]},
                   "val": {"subjects": ["S01"], "sentences": ["u002"]},  # held-out sentence
                   "test": ["S03", "S04_u001"]},
        "utterances": {f"{s}_{u}": {"transcript": f"words of {s} {u}", "phonemes": [["m", 0.0, 0.1]]}
                       for s in subjects for u in ("u001", "u002")},
    }
    write_corpus(tmp_path, subjects, ["u001", "u002"], fps=50, info=info, arkit=True, protocol=4)
    corpus = open_corpus(tmp_path)
    assert corpus.fps == 50 and corpus.scale == 1e-3
    assert corpus.split_subjects("test") == ["S03", "S04"] and len(corpus.splits["test"]) == 3
    assert [u.key for u in corpus.splits["val"]] == ["S01_u002"]
    assert corpus.style_subjects == ["S01", "S02"]
    ds = TalkingHeadDataset(corpus, "train", fps=25)
    assert ds[1]["arkit"].shape == (13, 52) and ds[1]["vertices"].shape == (13, V, 3)
    assert TalkingHeadDataset(corpus, "val", fps=25)[0]["subject"] == 0  # seen subject, new sentence
    utt = corpus.splits["train"][0]
    assert utt.transcript == "words of S01 u001" and utt.phonemes == [["m", 0.0, 0.1]]
    verts = corpus.read_vertices(utt, 25)
    template = corpus.templates["S01"]
    expected = np.broadcast_to(1e-3 * np.arange(len(verts))[:, None] / 25, (len(verts), V))
    np.testing.assert_allclose(verts[:, :, 0] - template[:, 0], expected, atol=1e-7)  # mm -> m
    assert np.abs(template).max() < 1e-3  # templates scaled too
    weights = corpus.read_arkit(utt, 25)
    np.testing.assert_allclose(weights[:, 17], np.arange(0, 25, 2) / 25, atol=1e-6)


def test_arkit_csv_folder(tmp_path):
    write_corpus(tmp_path, ["A", "B"], ["s1"], fps=60, info={"fps": 60})
    (tmp_path / "arkit").mkdir()
    weights = np.zeros((30, 52), np.float32)
    weights[:, 17] = np.linspace(0, 1, 30)
    write_arkit_csv(tmp_path / "arkit" / "A_s1.csv", weights, 60)
    corpus = open_corpus(tmp_path)
    a = next(u for u in corpus.utterances if u.subject == "A")
    np.testing.assert_allclose(corpus.read_arkit(a, 30)[:, 17], weights[::2, 17], atol=1e-7)
    assert corpus.read_arkit(next(u for u in corpus.utterances if u.subject == "B")) is None


def test_fallback_split_disjoint_by_subject(tmp_path):
    subjects = [f"spk{i:02d}" for i in range(10)]
    write_corpus(tmp_path, subjects, ["a", "b"], seconds=0.1)
    corpus = open_corpus(tmp_path)
    parts = {s: set(corpus.split_subjects(s)) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["val"]
    assert not parts["val"] & parts["test"] and set.union(*parts.values()) == set(subjects)
    assert open_corpus(tmp_path).splits == corpus.splits  # deterministic for a seed
    assert open_corpus(tmp_path, seed=1).split_subjects("test") != corpus.split_subjects("test")


def test_dataset_json_test_subject_in_train_refused(tmp_path):
    write_corpus(tmp_path, ["A", "B"], ["s1"], info={"splits": {"train": ["A", "B"], "test": ["B"]}})
    with pytest.raises(ImitatorError, match="subject B is in both train and test"):
        open_corpus(tmp_path)


def test_dataset_items_and_collate(voca):
    ds = TalkingHeadDataset(voca, "train", fps=30)
    assert len(ds) == 12 and ds.style_subjects == list(VOCASET_SUBJECTS["train"])  # reference order
    item = ds[0]
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (8000,)
    assert item["vertices"].shape == (15, V, 3) and item["template"].shape == (V, 3)
    assert item["subject_name"] == "FaceTalk_170725_00137_TA" and item["subject"] == 2
    assert item["sentence"] == "sentence01" and item["arkit"] is None
    test_item = TalkingHeadDataset(voca, "test", fps=30, offsets=True)[0]
    assert test_item["subject"] == -1  # never trained on: no style index
    np.testing.assert_allclose(test_item["vertices"][3, :, 0], 3 / 30, atol=1e-6)  # offsets

    short = dict(item, audio=item["audio"][:5000], vertices=item["vertices"][:9], key="short")
    batch = collate([item, short])
    assert batch["audio"].shape == (2, 8000) and batch["vertices"].shape == (2, 15, V, 3)
    assert batch["frame_lengths"].tolist() == [15, 9] and batch["audio_lengths"].tolist() == [8000, 5000]
    assert batch["frame_mask"][1].sum() == 9 and not batch["vertices"][1, 9:].any()
    assert batch["audio_mask"][1].sum() == 5000 and batch["subject"].tolist() == [2, 2]
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate)
    assert sum(len(b["key"]) for b in loader) == 12


def test_dataset_is_lazy(voca):
    ds = TalkingHeadDataset(voca, "train", fps=30)
    victim = ds.items[5].vertices
    victim.unlink()  # opening did not read it; reading that item names it
    assert ds[0]["vertices"].shape[0] == 15
    with pytest.raises(ImitatorError, match=f"{victim}: vertex file missing"):
        ds[5]


def test_malicious_templates_refused(voca, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with open(voca / "templates.pkl", "wb") as f:
        pickle.dump({"FaceTalk_170725_00137_TA": Exploit()}, f)
    with pytest.raises(ImitatorError, match=r"templates\.pkl: refused to load.*system"):
        open_corpus(voca)
    assert not marker.exists()


def test_bad_layouts(tmp_path, voca):
    with pytest.raises(ImitatorError, match="dataset folder not found"):
        open_corpus(tmp_path / "nope")
    (voca / "vertices_npy").rename(voca / "verts")
    with pytest.raises(ImitatorError, match="lacks 'vertices_npy'"):
        open_corpus(voca)
    (voca / "verts").rename(voca / "vertices_npy")
    utt = open_corpus(voca).utterances[1]
    np.save(utt.vertices, np.zeros((10, 3 * V + 3), np.float32))
    with pytest.raises(ImitatorError, match=rf"{utt.key}\.npy: vertices have shape \(10, {3 * V + 3}\)"):
        open_corpus(voca).read_vertices(utt)
    bad = np.zeros((10, 3 * V), np.float32)
    bad[4, 2] = np.nan
    np.save(utt.vertices, bad)
    with pytest.raises(ImitatorError, match="frame 4 holds NaN"):
        open_corpus(voca).read_vertices(utt)


def test_listed_utterance_missing(tmp_path):
    info = {"utterances": {"A_s1": {}, "A_s2": {}}}
    write_corpus(tmp_path, ["A", "B"], ["s1", "s2"], info=info)
    (tmp_path / "wav" / "A_s2.wav").unlink()
    with pytest.raises(ImitatorError, match=r"A_s2\.wav: listed in dataset\.json but missing"):
        open_corpus(tmp_path)
