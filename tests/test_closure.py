"""Closure-aware decoding (core.model.closure): the lip-closing correction, the contact head's fit
on a corpus, its checkpoint round trip, and generation with and without it."""

import numpy as np
import pytest
import torch

from core.errors import ImitatorError
from core.evaluate.metrics import lip_opening
from core.model.closure import close_lips, closing_strength, closure_options
from core.model.config import ImitatorConfig
from core.model.generate import generate
from core.model.imitator import Imitator
from tiny_corpus import SR, TINY_MODEL, cli_main, tiny_corpus_and_model
from tiny_corpus import one_thread  # noqa: F401  (autouse fixture)

OPTIONS = closure_options({"centres": [0, 1], "low": 0.3, "high": 0.6, "smooth": 0.0})


def random_motion(seed: int = 0, d: int = 6, v: int = 10, T: int = 8):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(d, v, 3)) * 1e-3
    bias = rng.normal(size=(v, 3)) * 1e-3
    template = rng.normal(size=(v, 3)) * 1e-2
    L = rng.normal(size=(d, d))
    return rng.normal(size=(T, d)), basis, bias, template, L @ L.T + 0.1 * np.eye(d)


def gap(weights, basis, bias, template):
    return lip_opening(template + bias + np.einsum("td,dvc->tvc", weights, basis), (0, 1))


def test_lips_meet_where_the_contact_says_closed_and_nothing_moves_elsewhere():
    w, basis, bias, template, S = random_motion()
    contact = np.array([0.0, 0.1, 0.9, 0.6, 0.45, 0.3, 1.0, 0.2])
    closed = close_lips(w, contact, basis, bias, template, S, OPTIONS)
    g0, g1 = gap(w, basis, bias, template), gap(closed, basis, bias, template)
    assert g0.min() > 1e-3  # open everywhere before
    assert np.all(g1[[2, 3, 6]] < 1e-8)  # p >= high: the centres meet (to 0.00001 mm)
    np.testing.assert_array_equal(closed[[0, 1, 5, 7]], w[[0, 1, 5, 7]])  # p <= low: untouched
    # p = 0.45 is half way: the gap vector is halved (the correction is linear in the strength)
    assert g1[4] == pytest.approx(0.5 * g0[4], rel=1e-6)
    # the move is the most likely one under N(., S): the KKT solution of
    # min dw' S^-1 dw  s.t.  A (w + dw) + g0 = 0, solved here as one linear system
    A = (basis[:, 0] - basis[:, 1]).T
    c = template[0] + bias[0] - template[1] - bias[1]
    kkt = np.block([[2 * np.linalg.inv(S), A.T], [A, np.zeros((3, 3))]])
    dw = np.linalg.solve(kkt, np.concatenate([np.zeros(6), -(A @ w[2] + c)]))[:6]
    np.testing.assert_allclose(closed[2] - w[2], dw, rtol=1e-5, atol=1e-12)


def test_closing_strength_ramps_and_keeps_short_closures_full():
    s = closing_strength(np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), 0.3, 0.6, smooth=1.0)
    assert s[3] == 1.0  # a one-frame closure still closes fully
    assert 0 < s[2] < 1 and s[2] == pytest.approx(s[4]) and s[0] < s[1] < s[2]  # eased in and out
    with pytest.raises(ImitatorError, match="centres"):
        closure_options({"centres": [3]})
    with pytest.raises(ImitatorError, match="low < high"):
        closure_options({"centres": [0, 1], "low": 0.7, "high": 0.6})
    with pytest.raises(ImitatorError, match="do not exist on a head of 50 vertices"):
        Imitator(ImitatorConfig(**TINY_MODEL, styles=["a"], num_vertices=50,
                                lip_closure={"centres": [3, 50]}))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root, folder = tiny_corpus_and_model(tmp_path_factory)
    out = tmp_path_factory.mktemp("fitted")
    assert cli_main(["fit-closure", "--model", folder, "--data", root, "--out", out,
                     "--lip-centres", "0,1", "--steps", "300"]) == 0
    return root, folder, out


def test_fit_closure_learns_the_corpus_closures_and_round_trips(fitted):
    from core.data.closure_labels import closure_mask, corpus_closures
    from core.data.vocaset import open_corpus

    root, base, out = fitted
    model = Imitator.from_pretrained(out)
    assert model.closure is not None and model.config.lip_closure["centres"] == [0, 1]
    assert torch.count_nonzero(model.closure.covariance - torch.eye(16)) > 0  # fitted, not the init
    corpus = open_corpus(root)
    closures = corpus_closures(corpus, corpus.splits["train"], None)
    on, off = [], []
    with torch.no_grad():
        for utt in corpus.splits["train"]:
            feats = model.audio_features(torch.from_numpy(corpus.read_audio(utt))[None])
            p = model.contact(model.viseme_features(feats), feats)[0].numpy()
            mask = closure_mask(closures[utt.key], model.config.fps, len(p))
            on.append(p[mask]), off.append(p[~mask])
    assert np.concatenate(on).mean() > np.concatenate(off).mean() + 0.2
    # the rest of the model is the base model, bit for bit
    base_state = Imitator.from_pretrained(base).state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("closure."):
            assert torch.equal(value, base_state[key]), key


def test_generation_closes_the_lips_only_with_closure_aware_decoding(fitted):
    _, base, out = fitted
    model = Imitator.from_pretrained(out)
    audio = (0.3 * np.sin(2 * np.pi * 180 * np.arange(SR) / SR)).astype(np.float32)
    raw = generate(Imitator.from_pretrained(base), audio, SR, "anna").vertices()  # no closure, no rest
    with torch.no_grad():
        model.closure.head[-1].weight.zero_()
        model.closure.head[-1].bias.fill_(-20.0)  # never closed: the raw output, exactly
    # rest=False: a steady tone is no speech, the rest correction would hold the face at rest
    np.testing.assert_array_equal(generate(model, audio, SR, "anna", rest=False).vertices(), raw)
    with torch.no_grad():
        model.closure.head[-1].bias.fill_(20.0)  # always closed
    closed = generate(model, audio, SR, "anna", rest=False).vertices()
    assert lip_opening(raw, (0, 1)).min() > 1e-3 and lip_opening(closed, (0, 1)).max() < 1e-6
    np.testing.assert_array_equal(generate(model, audio, SR, "anna", lip_closure=False, rest=False).vertices(),
                                  raw)


def test_audio_contact_net_is_fitted_and_streams_like_the_whole_file(fitted):
    """The audio contact net joins the head (maximum); generation cuts audio into windows with
    context, and the contact (and so the lips) equals a decode of the whole file at once."""
    from core.model.generate import to_animation

    _, _, out = fitted
    model = Imitator.from_pretrained(out)
    assert model.closure.audio_net is not None and model.config.lip_closure["audio_net"]
    rng = np.random.default_rng(1)
    audio = (0.3 * np.sin(2 * np.pi * 180 * np.arange(6 * SR) / SR) * (rng.random(6 * SR) > 0.3)).astype(np.float32)
    with torch.no_grad():
        a = torch.from_numpy(audio)[None]
        feats = model.audio_features(a)
        dec = model.viseme_decoder
        visemes = dec.decode(feats, dec.new_cache(1, feats, model.config.window))
        head = model.contact(visemes, feats)
        heard = model.audio_contact(a, feats.shape[1])
        contact = model.contact(visemes, feats, heard)
        weights = model.motion_weights(visemes, model.style_vector("anna"))[0].numpy()
    assert torch.equal(contact, torch.maximum(head, heard)) and not torch.equal(contact, head)
    whole = to_animation(model, weights, contact=contact[0].numpy()).vertices()
    streamed = generate(model, audio, SR, "anna", method="rolling", block_seconds=1.0, rest=False)
    assert feats.shape[1] > 2 * model.config.window  # really several windows
    np.testing.assert_allclose(streamed.vertices(), whole, atol=1e-5)
