"""Style adaptation and style profiles, on tiny random models and clips they generate themselves.

A "person" is a target style vector (and, for stage 2, a perturbed final layer) of a tiny model; their
clip is what that model generates on random speech-like audio. Adaptation starts from the model's
training styles and must get closer to that person on *other* audio than the generic model.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.style.adapt import (GAIN_MAX, AdaptCancelled, AdaptSettings, _Fit, _Reduced, _motion_gain, _run_stage,
                        adapt, align_clip, fit_loss_terms, prepare_clip, rigid_transform)
from core.data.clips import Clip, save_clip_npz
from core.errors import ImitatorError
from core.model import Imitator, ImitatorConfig
from core.model.generate import generate
from core.model.losses import imitator_loss
from core.style.profile import SUFFIX, load_style_profile, model_hash, read_profile_info
from tiny_corpus import cli_main
from tiny_corpus import one_thread  # noqa: F401  (autouse fixture)

SR = 16000
V = 40
FAST = dict(closures=None)  # no pocketsphinx on noise: the lip term is tested with given closures


def tiny_model(seed: int = 0, **changes) -> Imitator:
    torch.manual_seed(seed)
    config = ImitatorConfig(**{**dict(encoder="logmel", encoder_options={"dim": 24, "n_mels": 20},
                                      feature_dim=16, ff_dim=32, num_vertices=V, styles=["ann", "bob", "cat"],
                                      window=400, overlap=20, topology="tiny-grid"), **changes})
    model = Imitator(config).eval()
    torch.nn.init.normal_(model.motion_decoder.final.weight, std=0.002)
    torch.nn.init.normal_(model.motion_decoder.final.bias, std=0.0005)
    with torch.no_grad():
        model.template.normal_(std=0.05)
    return model


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Noise with a syllable-rate envelope: features that change like speech's."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6))
    return (0.3 * envelope * rng.normal(size=t.size)).astype(np.float32)


def person(model: Imitator, seed: int = 5, final: float = 0.0) -> tuple[torch.Tensor, Imitator]:
    """A target style off the model's styles, and a model whose final layer is perturbed by ``final``."""
    g = torch.Generator().manual_seed(seed)
    table = model.style_embedding.weight.detach().t()
    style = table[0] + 0.8 * table.std() * torch.randn(table.shape[1], generator=g)
    target = copy.deepcopy(model)
    with torch.no_grad():
        W = target.motion_decoder.final.weight
        W += final * W.std() * torch.randn(W.shape, generator=g)
    return style, target


def clip_of(model: Imitator, style, seconds: float = 4.0, seed: int = 1) -> Clip:
    audio = speech_like(seconds, seed)
    anim = generate(model, audio, SR, style)
    return Clip(anim.vertices().astype(np.float32), anim.fps, audio, SR, Path("person.npz"))


def rms_error(model: Imitator, style, target_model: Imitator, target_style, seed: int = 7) -> float:
    """RMS vertex distance (m) to the person on audio the adaptation never saw."""
    audio = speech_like(3.0, seed)
    gt = generate(target_model, audio, SR, target_style).vertices()
    pred = generate(model, audio, SR, style).vertices()
    return float(np.sqrt(((pred - gt) ** 2).sum(-1).mean()))


def mean_style(model: Imitator) -> torch.Tensor:
    return model.style_embedding.weight.detach().t().mean(0)


# --- the reduced fit is exact ---------------------------------------------------------------------
def test_reduced_losses_equal_the_model_losses_on_vertices():
    model = tiny_model()
    rng = np.random.default_rng(0)
    T, d = 50, model.config.feature_dim
    visemes = torch.from_numpy(rng.normal(size=(T, d)).astype(np.float32))
    targets = rng.normal(scale=1e-3, size=(T, 3 * V)).astype(np.float32)
    closures = np.zeros(T, bool)
    closures[[10, 11, 30]] = True
    weight_t, bias = (t.detach().numpy() for t in model.basis())
    reduced = _Reduced(weight_t, bias, targets)
    fit = _Fit(model, visemes, reduced, closures, split=T)
    style = torch.from_numpy(rng.normal(size=d).astype(np.float32))
    A = fit.A0 + torch.from_numpy(rng.normal(scale=0.3 * float(fit.A0.std()), size=fit.A0.shape).astype(np.float32))
    with torch.no_grad():
        ours = fit.train(fit.predict(style, A))
        w_tilde = torch.from_numpy(reduced.expand(A.numpy()))  # (d + 1, 3V)
        h = model.motion_decoder.hidden((visemes + style)[None])[0]
        pred = (torch.cat([h, torch.ones(T, 1)], 1) @ w_tilde).reshape(1, T, V, 3)
        full = imitator_loss(pred, torch.from_numpy(targets).reshape(1, T, V, 3), model.config, closures)
    for key in ("total", "reconstruction", "velocity", "lip_contact"):
        assert float(ours[key]) == pytest.approx(float(getattr(full, key)), rel=1e-4), key
    assert float(full.lip_contact) > 0
    assert np.allclose(reduced.expand(reduced.A0), np.concatenate([weight_t, bias[None]]), atol=1e-7)
    scaled = fit_loss_terms(pred.reshape(T, -1), torch.from_numpy(targets), model.config, None)
    assert float(scaled["reconstruction"]) == pytest.approx(float(full.reconstruction), rel=1e-5)


# --- adaptation ------------------------------------------------------------------------------------
def test_stage1_recovers_a_style_better_than_the_generic_model():
    model = tiny_model()
    style, same = person(model)
    profile = adapt(model, clip_of(model, style), name="ann-like", settings=AdaptSettings(
        steps1=300, steps2=0, align="none"), **FAST)
    losses = profile.meta["losses"]
    assert profile.meta["stages"] == 1 and not profile.has_final_layer
    assert losses["initial"]["style"] in model.config.styles  # nearest training style
    assert losses["stage1"]["held_out"]["total"] < 0.05 * losses["initial"]["held_out"]["total"]
    adapted = rms_error(model, profile, same, style)
    generic = rms_error(model, mean_style(model), same, style)
    nearest = rms_error(model, losses["initial"]["style"], same, style)
    assert adapted < 0.3 * generic and adapted < 0.3 * nearest, (adapted, generic, nearest)
    # generation with the profile is generation with its vector (no final layer to swap)
    audio = speech_like(2.0, 3)
    assert np.allclose(generate(model, audio, SR, profile).vertices(),
                       generate(model, audio, SR, torch.from_numpy(profile.style)).vertices(), atol=1e-6)


def test_stage2_improves_on_stage1_when_the_person_differs_beyond_the_style():
    model = tiny_model()
    style, target = person(model, final=0.5)
    clip = clip_of(target, style, seconds=5.0)
    only1 = adapt(model, clip, settings=AdaptSettings(steps1=300, steps2=0, align="none"), **FAST)
    both = adapt(model, clip, settings=AdaptSettings(steps1=300, steps2=300, align="none"), **FAST)
    l1, l2 = both.meta["losses"]["stage1"], both.meta["losses"]["stage2"]
    assert l2["held_out"]["total"] <= l1["held_out"]["total"]
    assert l2["held_out"]["total"] < 0.1 * l1["held_out"]["total"]
    assert both.has_final_layer and both.final_weight.shape == (3 * V, model.config.feature_dim)
    e1, e2 = rms_error(model, only1, target, style), rms_error(model, both, target, style)
    generic = rms_error(model, mean_style(model), target, style)
    assert e2 < 0.5 * e1 and e1 < generic, (e2, e1, generic)
    assert np.array_equal(model.motion_decoder.final.weight.detach().numpy(),
                          tiny_model().motion_decoder.final.weight.detach().numpy())  # model untouched


def test_motion_gain_after_stage1():
    """A person who moves 1.3x as much as the model's prediction: the gain finds 1.3; 1.004x is
    left at 1 (no final layer for that), 3x is clamped to GAIN_MAX."""
    model = tiny_model()
    rng = np.random.default_rng(0)
    T, d = 60, model.config.feature_dim
    visemes = torch.from_numpy(rng.normal(size=(T, d)).astype(np.float32))
    style = torch.from_numpy(rng.normal(size=d).astype(np.float32))
    weight_t, bias = (t.detach().numpy() for t in model.basis())
    with torch.no_grad():
        h = model.motion_decoder.hidden((visemes + style)[None])[0].numpy()
    motion = h @ weight_t + bias  # (T, 3V) the model's offsets in that style
    for scale, expected in ((1.3, 1.3), (1.004, 1.0), (3.0, GAIN_MAX)):
        fit = _Fit(model, visemes, _Reduced(weight_t, bias, (scale * motion).astype(np.float32)), None, split=48)
        with torch.no_grad():
            gain, info = _motion_gain(fit, style)
        assert gain == pytest.approx(expected, rel=1e-4), info
        assert info["held_out_after"] <= info["held_out_before"] + 1e-18


def test_a_stage_step_is_the_learning_rate_although_the_losses_are_tiny():
    """The clip losses are in m^2 (their gradients ~1e-12 on a real head): Adam's first step still
    moves every coordinate by the stage's lr, not by lr x gradient / eps."""
    model = tiny_model()
    rng = np.random.default_rng(0)
    T, d = 60, model.config.feature_dim
    visemes = torch.from_numpy(rng.normal(size=(T, d)).astype(np.float32))
    weight_t, bias = (1e-4 * t.detach().numpy() for t in model.basis())  # offsets of ~0.1 mm
    with torch.no_grad():
        other = model.motion_decoder.hidden((visemes + torch.randn(d))[None])[0].numpy()
    target = (other @ weight_t + bias).astype(np.float32)  # the motion in another style
    fit = _Fit(model, visemes, _Reduced(weight_t, bias, target), None, split=T)  # no held-out tail
    delta = torch.zeros(d, requires_grad=True)
    pred = fit.predict(delta, fit.A0)
    fit.train(pred)["total"].backward()
    assert 0 < delta.grad.abs().max() < 1e-8  # below torch's default eps
    delta.grad = None
    result = _run_stage(1, fit, {"style": delta}, {"style": 0.1}, lambda p: fit.predict(p["style"], fit.A0),
                        1, AdaptSettings(patience=10), None, None)
    assert result["best_step"] == 1, result  # the step lowered the loss and was kept
    assert torch.allclose(delta.detach().abs(), torch.full((d,), 0.1), rtol=1e-3)


def test_early_stopping_keeps_the_best_held_out_step():
    model = tiny_model()
    style, target = person(model, final=0.5)
    clip = clip_of(target, style, seconds=3.0)
    noise = np.random.default_rng(0).normal(scale=5e-4, size=clip.vertices.shape)  # tracking noise
    clip.vertices = (clip.vertices + noise).astype(np.float32)  # to overfit
    profile = adapt(model, clip, settings=AdaptSettings(steps1=50, steps2=400, lr2=0.05, patience=15,
                                                        align="none"), **FAST)
    stage2 = profile.meta["losses"]["stage2"]
    assert stage2["stopped_early"] and stage2["steps"] == stage2["best_step"] + 15 < 400
    assert profile.meta["held_out_frames"] == round(0.2 * 90) and profile.meta["fit_frames"] == 90 - 18


def test_lip_contact_term_uses_closures():
    model = tiny_model()
    style, _ = person(model)
    clip = clip_of(model, style)
    from core.bilabial import Interval

    profile = adapt(model, clip, settings=AdaptSettings(steps1=20, steps2=0, align="none"),
                    closures=[Interval(0.5, 0.6, "M"), Interval(1.2, 1.25, "P")])
    assert profile.meta["closures"] == {"source": "given", "frames": 5}  # 15-17, 36-37
    assert profile.meta["losses"]["initial"]["train"]["lip_contact"] > 0


def test_cancel_flag_stops_cleanly_and_nothing_is_written(tmp_path):
    model = tiny_model()
    style, _ = person(model)
    clip = clip_of(model, style)
    cancel = threading.Event()
    steps = []

    def progress(stage, step, total, loss):
        steps.append((stage, step, total, loss))
        if step == 5:
            cancel.set()

    with pytest.raises(AdaptCancelled, match="nothing was written"):
        adapt(model, clip, settings=AdaptSettings(steps1=300), progress=progress, cancel=cancel, **FAST)
    assert steps[-1][:3] == (1, 5, 300) and len(steps) == 5

    outcome = {}  # from another thread, as the Blender job does: the CLI writes only on success

    def worker():
        try:
            adapt(model, clip, cancel=cancel, **FAST).save(tmp_path / f"x{SUFFIX}")
        except AdaptCancelled as e:
            outcome["cancelled"] = str(e)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert outcome["cancelled"] and list(tmp_path.iterdir()) == []


# --- profiles --------------------------------------------------------------------------------------
def test_profile_round_trip_and_generation_with_it(tmp_path):
    model = tiny_model()
    style, target = person(model, final=0.3)
    profile = adapt(model, clip_of(target, style), name="Alex", settings=AdaptSettings(
        steps1=100, steps2=100, align="none"), model_name="tiny", **FAST)
    path = profile.save(tmp_path / f"alex{SUFFIX}")
    assert not list(tmp_path.glob(".*"))  # atomic write left no temp file
    info = read_profile_info(path)
    for key in ("base_model", "topology", "fps", "clip_seconds", "losses", "created", "name"):
        assert key in info, key
    assert info["name"] == "Alex" and info["base_model"] == model_hash(model) and info["topology"] == "tiny-grid"
    assert info["clip_seconds"] == pytest.approx(4.0, abs=0.05) and info["fps"] == 30.0
    assert set(info["losses"]) == {"initial", "stage1", "gain", "stage2"}
    loaded = load_style_profile(path, model)
    assert np.array_equal(loaded.style, profile.style)
    assert np.array_equal(loaded.final_weight, profile.final_weight)
    assert np.array_equal(loaded.final_bias, profile.final_bias)
    audio = speech_like(2.0, 4)
    a, b = generate(model, audio, SR, profile).vertices(), generate(model, audio, SR, loaded).vertices()
    assert np.array_equal(a, b)
    manual = copy.deepcopy(model)  # the profile = the model with its final layer replaced
    with torch.no_grad():
        manual.motion_decoder.final.weight.copy_(torch.from_numpy(profile.final_weight))
        manual.motion_decoder.final.bias.copy_(torch.from_numpy(profile.final_bias))
    c = generate(manual, audio, SR, torch.from_numpy(profile.style)).vertices()
    assert np.abs(a - c).max() < 1e-6


def test_profile_for_another_model_or_topology_is_refused(tmp_path):
    model = tiny_model()
    style, _ = person(model)
    path = adapt(model, clip_of(model, style), name="p", settings=AdaptSettings(steps1=10, steps2=0,
                                                                               align="none"),
                 **FAST).save(tmp_path / f"p{SUFFIX}")
    other = tiny_model(seed=1)
    with pytest.raises(ImitatorError) as e:
        load_style_profile(path, other)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert model_hash(model)[:12] in msg and model_hash(other)[:12] in msg

    other_head = tiny_model(topology="other-grid")
    with pytest.raises(ImitatorError, match="tiny-grid.*other-grid") as e:
        load_style_profile(path, other_head)
    bigger = tiny_model(num_vertices=V + 3, topology="")
    with pytest.raises(ImitatorError, match=f"{V} vertices.*{V + 3} vertices"):
        load_style_profile(path, bigger)
    with pytest.raises(ImitatorError, match="vertices"):  # also when generating directly
        generate(bigger, speech_like(1.0, 0), SR, load_style_profile(path))

    broken = tmp_path / f"broken{SUFFIX}"
    broken.write_bytes(path.read_bytes()[:-20])  # into the style vector
    npz = tmp_path / "clip.npz"
    np.savez(npz, a=np.zeros(3))
    for bad, why in ((broken, "truncated"), (npz, "not a style profile"), (tmp_path / "none.imstyle", "not found")):
        with pytest.raises(ImitatorError, match=why) as e:
            load_style_profile(bad, model)
        assert "\n" not in str(e.value) and str(bad) in str(e.value)


# --- the clip --------------------------------------------------------------------------------------
def rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def test_rigid_alignment_undoes_a_rotation_and_translation():
    rng = np.random.default_rng(0)
    template = rng.normal(scale=0.08, size=(200, 3)).astype(np.float32)
    T = 30
    motion = np.zeros((T, 200, 3), np.float32)  # a "jaw": 40 vertices move, the rest is rigid
    motion[:, :40, 1] = -0.01 * np.abs(np.sin(np.linspace(0, 6, T)))[:, None]
    R, t = rotation([1, 2, 0.5], 25), np.array([0.3, -1.2, 0.05])
    clip = ((template + motion) @ R.T + t).astype(np.float32)
    aligned, record = align_clip(clip, template, "clip")
    assert np.abs(aligned - (template + motion)).max() < 1e-5
    assert record["rotation_deg"] == pytest.approx(25, abs=1e-3) and record["steady_rms_mm"] < 1e-2

    # per frame: the head turns over the clip
    moving = np.stack([(template + motion[i]) @ rotation([0, 1, 0], 2 * i).T + [0, 0.01 * i, 0]
                       for i in range(T)]).astype(np.float32)
    aligned, _ = align_clip(moving, template, "frame")
    assert np.abs(aligned - (template + motion)).max() < 1e-5

    s, R2, t2 = rigid_transform(template, 1.3 * template @ R.T + t, scale=True)
    assert s == pytest.approx(1.3) and np.allclose(R2, R, atol=1e-6)
    scaled, record = align_clip((1.3 * clip).astype(np.float32), template, "clip", scale=True)
    assert record["scale"] == pytest.approx(1 / 1.3, rel=1e-5)
    assert np.abs(scaled - (template + motion)).max() < 1e-5


def test_bad_clips_get_one_line_errors_naming_the_clip():
    model = tiny_model()
    style, _ = person(model)
    good = clip_of(model, style, seconds=2.0)
    template = model.template.numpy()
    cases = {
        "0.50 s long": Clip(good.vertices[:15], good.fps, good.audio[:8000], SR, Path("short.npz")),
        "static": Clip(np.repeat(template[None], 60, 0), 30.0, good.audio, SR, Path("still.npz")),
        "NaN": Clip(np.where(np.arange(60)[:, None, None] == 7, np.nan, good.vertices), 30.0, good.audio, SR,
                    Path("nan.npz")),
        "no audio": Clip(good.vertices, 30.0, None, None, Path("mute.npz")),
        "has 40": Clip(good.vertices[:, :30], 30.0, good.audio, SR, Path("other.npz")),
        "shorter than the motion": Clip(good.vertices, 30.0, good.audio[:16000], SR, Path("cut.npz")),
    }
    for why, clip in cases.items():
        with pytest.raises(ImitatorError, match=why) as e:
            prepare_clip(model, clip)
        assert "\n" not in str(e.value) and clip.name in str(e.value), why
    with pytest.raises(ImitatorError, match="topology"):
        adapt(model, good, topology="something-else", **FAST)
    prepared = prepare_clip(model, clip_of(model, style, seconds=2.0), AdaptSettings(align="none"))
    assert prepared.num_frames == 60 and prepared.fps == 30.0


# --- command line ----------------------------------------------------------------------------------
def test_cli_adapt_then_generate_with_the_profile(tmp_path, capsys):
    import core.cli

    if ".style.adapt" not in core.cli.COMMAND_MODULES:
        core.cli.COMMAND_MODULES.append(".style.adapt")
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    style, _ = person(model)
    clip = clip_of(model, style, seconds=3.0)
    save_clip_npz(tmp_path / "take.npz", clip)
    out = tmp_path / f"Sam{SUFFIX}"
    argv = ["adapt", "--model", tmp_path / "model", "--clip", tmp_path / "take.npz", "--no-lip-loss",
            "--steps1", "60", "--steps2", "30", "--align", "none", "--out", out]
    assert cli_main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    profile = load_style_profile(out, Imitator.from_pretrained(tmp_path / "model"))
    assert profile.name == "Sam" and profile.has_final_layer
    assert cli_main(argv) == 1 and "already exists" in capsys.readouterr().err  # never overwrites silently

    from core.audio import save_wav

    save_wav(tmp_path / "speech.wav", speech_like(1.5, 9), SR)
    assert cli_main(["generate", "--audio", tmp_path / "speech.wav", "--model", tmp_path / "model",
                     "--style", out, "--out", tmp_path / "anim.npz"]) == 0
    from core.animation import Animation

    anim = Animation.load(tmp_path / "anim.npz")
    assert np.allclose(anim.basis.reshape(anim.basis.shape[0], -1), profile.final_weight.T, atol=1e-7)

    capsys.readouterr()
    tiny_model(seed=3).save_pretrained(tmp_path / "other")
    assert cli_main(["generate", "--audio", tmp_path / "speech.wav", "--model", tmp_path / "other",
                     "--style", out, "--out", tmp_path / "x.npz"]) == 1
    err = capsys.readouterr().err
    assert "adapt the style again" in err and err.count("\n") == 1
