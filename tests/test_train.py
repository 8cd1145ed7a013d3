"""Trainer, resume after a hard kill, DDP on gloo, ARKit targets, closure labels, generate CLI.

Everything runs on the tiny corpus and model of ``tiny_corpus.py``; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.animation import Animation
from core.bilabial import Interval
from core.errors import ImitatorError
from core.model import Imitator
from core.train import TrainConfig, load_checkpoint_state, read_config_file, train, warm_start
from tiny_corpus import PHONES, PYTHON, TINY_MODEL, V, cli_main, entry_script, write_tiny_corpus
from tiny_corpus import one_thread  # noqa: F401  (autouse fixture)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_tiny_corpus(root)


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def config_file(folder: Path, **model) -> Path:
    path = folder / "tiny.json"
    path.write_text(json.dumps({"model": {**TINY_MODEL, **model}, "train": {"lr": 1e-3}}))
    return path


# --- training ---------------------------------------------------------------------------------------
def test_two_epochs_write_best_model_metrics_and_checkpoint(corpus, tmp_path):
    root, _ = corpus
    run = tmp_path / "run"
    summary = train(root, run, model_settings=TINY_MODEL, train_config=TrainConfig(epochs=2, lr=1e-3, seed=1),
                    progress=False)
    assert summary["epochs"] == 2 and summary["steps"] == 8 and summary["best_epoch"] in (1, 2)
    log = lines(run)
    assert [x["epoch"] for x in log] == [1, 2]
    for x in log:
        assert set(x["train"]) == set(x["val"]) == {"total", "reconstruction", "velocity", "lip_contact"}
        assert x["train"]["lip_contact"] > 0 and x["val"]["lip_contact"] > 0  # closures from dataset.json
        t = x["train"]
        assert t["total"] == pytest.approx(t["reconstruction"] + 10 * t["velocity"] + t["lip_contact"])
    model = Imitator.from_pretrained(run)
    assert model.config.styles == ["anna", "bert"] and model.config.num_vertices == V
    assert model.config.encoder == "logmel" and model.motion_decoder.final.weight.abs().max() > 0
    best = min(x["val"]["total"] for x in log)
    assert summary["best_loss"] == pytest.approx(best)
    state = load_checkpoint_state(run)
    assert state["epoch"] == 2 and state["finished"] and state["targets"] == "vertices"

    # a kill between the two renames of a checkpoint swap leaves .last.old: it is used
    os.replace(run / "last", run / ".last.old")
    assert load_checkpoint_state(run)["epoch"] == 2
    # a finished run resumes to nothing; more epochs continue it; a second run needs --resume
    assert train(root, run, resume=True, progress=False)["epochs"] == 2 and len(lines(run)) == 2
    assert train(root, run, resume=True, epochs=3, progress=False)["epochs"] == 3
    assert [x["epoch"] for x in lines(run)] == [1, 2, 3] and load_checkpoint_state(run)["epoch"] == 3
    with pytest.raises(ImitatorError, match="--resume"):
        train(root, run, model_settings=TINY_MODEL, progress=False)


def test_lip_loss_ablation_and_arkit_targets(corpus, tmp_path):
    root, basis = corpus
    cfg = TrainConfig(epochs=1, lr=1e-3, seed=2)
    train(root, tmp_path / "verts", model_settings=TINY_MODEL, train_config=cfg, progress=False)
    # ARKit weights expanded on the device give the same targets, hence the same run
    train(root, tmp_path / "arkit", model_settings=TINY_MODEL, train_config=cfg, progress=False, arkit_basis=basis)
    assert load_checkpoint_state(tmp_path / "arkit")["targets"] == "arkit"
    a, b = lines(tmp_path / "verts")[0], lines(tmp_path / "arkit")[0]
    for split in ("train", "val"):
        for k in a[split]:
            assert b[split][k] == pytest.approx(a[split][k], rel=1e-4)
    # without the lip contact loss the term is 0 and the total is rec + 10 vel
    train(root, tmp_path / "nolip", model_settings=TINY_MODEL, progress=False,
          train_config=TrainConfig(epochs=1, lr=1e-3, seed=2, lip_loss=False))
    c = lines(tmp_path / "nolip")[0]["train"]
    assert c["lip_contact"] == 0 and c["total"] == pytest.approx(c["reconstruction"] + 10 * c["velocity"])


def test_phone_head_adds_its_loss_to_the_gradient_not_to_the_motion_total(corpus, tmp_path):
    root, _ = corpus
    cfg = TrainConfig(epochs=3, lr=3e-3, seed=2)
    train(root, tmp_path / "plain", model_settings=TINY_MODEL, train_config=cfg, progress=False)
    train(root, tmp_path / "phones", model_settings={**TINY_MODEL, "phone_loss_weight": 1.0},
          train_config=cfg, progress=False)
    plain, phones = lines(tmp_path / "plain"), lines(tmp_path / "phones")
    for x in phones:
        assert set(x["train"]) == set(x["val"]) == {"total", "reconstruction", "velocity", "lip_contact",
                                                     "phones"}
        t = x["train"]  # "total" stays the motion loss; the phone term is logged beside it
        assert t["total"] == pytest.approx(t["reconstruction"] + 10 * t["velocity"] + t["lip_contact"])
    # the phone term changes the encoder's gradient, and the head learns the corpus's phones
    assert phones[0]["train"]["total"] != pytest.approx(plain[0]["train"]["total"], rel=1e-6)
    assert phones[-1]["train"]["phones"] < 0.8 * phones[0]["train"]["phones"]
    model = Imitator.from_pretrained(tmp_path / "phones")
    assert model.phone_head is not None and model.config.phones[0] == "SIL"
    # a batch without phone timings adds 0, with the head still in the graph (DDP needs every weight)
    from core.train.step import phone_loss

    zero = phone_loss(1.0, model.phone_head(torch.randn(2, 5, model.config.feature_dim)), None)
    zero.backward()
    assert float(zero.detach()) == 0 and model.phone_head.weight.grad is not None
    assert Imitator.from_pretrained(tmp_path / "plain").phone_head is None


def test_frame_phones_labels_each_frame_by_the_phone_at_its_time():
    from core.train.loop import frame_phones

    labels = frame_phones([["SIL", 0.0, 0.1], ["M", 0.1, 0.2], ["XX", 0.2, 0.25]], ["SIL", "M"], 20.0, 6)
    assert labels.tolist() == [0, 0, 1, 1, -1, -1]  # 0.25 s on: no phone; XX: not a class
    assert frame_phones(None, ["SIL"], 30.0, 4) is None and frame_phones([], ["SIL"], 30.0, 4) is None


def test_early_stopping_after_patience_epochs_without_improvement(corpus, tmp_path):
    root, _ = corpus
    cfg = TrainConfig(epochs=5, lr=1e-3, patience=1, min_delta=1.0)  # nothing improves by 1.0
    summary = train(root, tmp_path / "run", model_settings=TINY_MODEL, train_config=cfg, progress=False)
    assert summary["stopped_early"] and summary["epochs"] == 2 and summary["best_epoch"] == 1
    state = load_checkpoint_state(tmp_path / "run")
    assert state["finished"] and state["stopped_early"] and len(lines(tmp_path / "run")) == 2
    assert train(root, tmp_path / "run", resume=True, progress=False)["epochs"] == 2  # stays stopped


def test_long_sequences_are_cropped_with_their_audio_and_closures():
    from core.train.loop import _crop, _Item

    T, sr, fps = 30, 16000, 30.0
    item = _Item("k", np.arange(sr, dtype=np.float32), np.arange(T, dtype=np.float32)[:, None],
                 np.zeros((1, 3), np.float32), 0, np.arange(T) % 7 == 0)
    got = _crop(item, 10, np.random.default_rng(0), sr, fps)
    s = int(got.target[0, 0])
    assert got.target[:, 0].tolist() == list(range(s, s + 10))
    assert got.audio[0] == round(s * sr / fps) and len(got.audio) == round(10 * sr / fps)
    assert got.closures.tolist() == [(s + i) % 7 == 0 for i in range(10)]
    assert _crop(item, 30, np.random.default_rng(0), sr, fps) is item


def test_config_file_sections_or_flat(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"feature_dim": 32}, "train": {"lr": 3e-4}}))
    assert read_config_file(path) == ({"feature_dim": 32}, {"lr": 3e-4})
    path.write_text(json.dumps({"feature_dim": 32, "epochs": 5}))
    assert read_config_file(path) == ({"feature_dim": 32}, {"epochs": 5})
    path.write_text(json.dumps({"feature_dim": 32, "learning_rate": 5}))
    with pytest.raises(ImitatorError, match="learning_rate"):
        read_config_file(path)


# --- resume after a hard kill ---------------------------------------------------------------------------
def test_resume_after_sigkill_equals_uninterrupted_run(corpus, tmp_path):
    """A run killed (SIGKILL) right after its first checkpoint, then resumed, ends with the epoch count
    and the weights of an uninterrupted run with the same seed, bit for bit (CPU, 1 thread)."""
    root, _ = corpus
    epochs, seed = 5, 3
    cmd = [PYTHON, entry_script(tmp_path), "train", "--data", root, "--config", config_file(tmp_path),
           "--epochs", epochs, "--seed", seed, "--checkpoint-every", 1, "--threads", 1, "--quiet"]
    cmd = [str(c) for c in cmd]
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = run / "last" / "state.json"
    deadline = time.monotonic() + 60
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = load_checkpoint_state(run)
    assert state is not None and not state["finished"], proc.stderr.read().decode()[-2000:]
    assert state["epoch"] < epochs
    done = subprocess.run(cmd + ["--out", str(run), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {run} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}" in done.stderr

    reference = tmp_path / "reference"
    model, train_cfg = read_config_file(tmp_path / "tiny.json")
    train(root, reference, model_settings=model, progress=False,
          train_config=TrainConfig(**train_cfg, epochs=epochs, seed=seed, checkpoint_every=1))
    assert [x["epoch"] for x in lines(run)] == list(range(1, epochs + 1))
    assert load_checkpoint_state(run)["epoch"] == epochs and load_checkpoint_state(run)["finished"]
    for a, b in zip(lines(run), lines(reference)):
        assert a["train"] == b["train"] and a["val"] == b["val"]
    for name in ("model.safetensors", "last/checkpoint.safetensors"):
        got, want = weights(run / name), weights(reference / name)
        assert got.keys() == want.keys()
        for k in want:
            if not k.startswith("rng."):
                assert torch.equal(got[k], want[k]), (name, k)


# --- data parallel ------------------------------------------------------------------------------------
def test_torchrun_two_gloo_processes_equal_one_process_with_batch_two(corpus, tmp_path):
    """DDP averages the gradients of the two processes' sequences: the same step as one process with
    both sequences in its batch (dropout off so both runs see the same network)."""
    root, _ = corpus
    cfg = config_file(tmp_path, dropout=0.0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           entry_script(tmp_path), "train", "--data", root, "--out", tmp_path / "ddp", "--config", cfg,
           "--epochs", 2, "--device", "cpu", "--quiet"]
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint_state(tmp_path / "ddp")["world_size"] == 2

    model, train_cfg = read_config_file(cfg)
    train(root, tmp_path / "single", model_settings=model, progress=False,
          train_config=TrainConfig(**train_cfg, epochs=2, batch_size=2))
    got, want = weights(tmp_path / "ddp" / "model.safetensors"), weights(tmp_path / "single" / "model.safetensors")
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    for a, b in zip(lines(tmp_path / "ddp"), lines(tmp_path / "single")):
        assert a["train"]["total"] == pytest.approx(b["train"]["total"], rel=1e-5)
        assert a["val"]["total"] == pytest.approx(b["val"]["total"], rel=1e-5)


# --- closure labels ---------------------------------------------------------------------------------------
def test_closures_from_phones_or_detected_once_and_cached(tmp_path, monkeypatch):
    from core.data import closure_labels
    from core.data.closure_labels import closure_mask, corpus_closures, phone_intervals
    from core.data.vocaset import open_corpus

    assert phone_intervals(PHONES) == [Interval(0.2, 0.3, "M"), Interval(0.6, 0.65, "P")]
    assert phone_intervals([{"phone": "b", "start": 0.1, "end": 0.2}, ["AH0", 0, 1]]) == [Interval(0.1, 0.2, "B")]
    mask = closure_mask([Interval(0.2, 0.3, "M"), Interval(0.41, 0.43, "P"), Interval(5, 6, "B")], 10, 8)
    assert np.flatnonzero(mask).tolist() == [2, 4]  # [0.2, 0.3) holds frame 2; the short P the nearest

    root = tmp_path / "data"
    write_tiny_corpus(root, phones=False)
    corpus = open_corpus(root)
    calls = []

    def fake_detect(path, transcript=None):
        calls.append((Path(path).name, transcript))
        return [Interval(0.5, 0.6, "B")]

    monkeypatch.setattr("core.bilabial.detect_closures", fake_detect)
    cache = tmp_path / "closures.json"
    first = corpus_closures(corpus, corpus.utterances, cache)
    assert len(calls) == 6 and all(t == "mama papa" for _, t in calls)  # aligned to the transcript
    assert first == {u.key: [Interval(0.5, 0.6, "B")] for u in corpus.utterances}
    assert corpus_closures(corpus, corpus.utterances, cache) == first and len(calls) == 6  # cached
    os.utime(corpus.utterances[0].wav, ns=(1, 1))  # a changed wav is detected again
    corpus_closures(corpus, corpus.utterances, cache)
    assert len(calls) == 7
    assert json.loads(cache.read_text())["utterances"][corpus.utterances[1].key]["source"] == "aligned"
    assert closure_labels.CACHE_VERSION == json.loads(cache.read_text())["version"]


# --- generate CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(corpus, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    train(corpus[0], folder, model_settings=TINY_MODEL, train_config=TrainConfig(epochs=1, lr=1e-3),
          progress=False)
    return folder


def test_generate_cli_writes_animation_obj_frames_and_errors(corpus, tiny_model, tmp_path, capsys):
    root, _ = corpus
    audio = root / "wav" / "carl_s2.wav"
    out = tmp_path / "anim.npz"
    assert cli_main(["generate", "--audio", audio, "--model", tiny_model, "--style", "bert", "--fps", 24,
                     "--device", "cpu", "--out", out, "--obj-dir", tmp_path / "frames"]) == 0
    anim = Animation.load(out)
    assert anim.fps == 24 and anim.num_frames == 24 and anim.num_vertices == V
    model = Imitator.from_pretrained(tiny_model)
    assert anim.basis.shape[0] == model.config.feature_dim
    objs = sorted((tmp_path / "frames").glob("frame_*.obj"))
    assert len(objs) == 24 and (tmp_path / "frames" / "audio.wav").is_file()
    first = np.array([[float(x) for x in line.split()[1:]] for line in objs[0].read_text().splitlines()
                      if line.startswith("v ")])
    np.testing.assert_allclose(first, anim.vertices(slice(0, 1))[0], atol=1e-6)
    # style by index = by name; without --style the mean of the training styles
    assert cli_main(["generate", "--audio", audio, "--model", tiny_model, "--style", "1", "--fps", 24,
                     "--out", tmp_path / "b.npz"]) == 0
    np.testing.assert_allclose(Animation.load(tmp_path / "b.npz").weights, anim.weights, atol=1e-6)
    for name, style in (("plain", []), ("mean", ["--style", "mean"])):
        assert cli_main(["generate", "--audio", audio, "--model", tiny_model, *style, "--fps", 24,
                         "--out", tmp_path / f"{name}.npz"]) == 0
    np.testing.assert_array_equal(Animation.load(tmp_path / "plain.npz").weights,
                                  Animation.load(tmp_path / "mean.npz").weights)
    capsys.readouterr()
    assert cli_main(["generate", "--audio", audio, "--model", tiny_model, "--style", "zed", "--out",
                     tmp_path / "c.npz"]) == 1
    assert "unknown style 'zed'" in capsys.readouterr().err and not (tmp_path / "c.npz").exists()
    assert cli_main(["generate", "--audio", tmp_path / "missing.wav", "--model", tiny_model, "--out",
                     tmp_path / "d.npz"]) == 1
    assert "missing.wav" in capsys.readouterr().err


def test_arkit_fit_recovers_weights_on_a_head_with_arkit_keys():
    from core.arkit_fit import fit_arkit_weights
    from core.faces.default_head import ARKIT_SHAPE_NAMES
    from core.faces.head import Head

    rng = np.random.default_rng(0)
    Vh = 60  # 180 coordinates > 52 keys: independent keys, a unique solution
    keys = {n: rng.normal(size=(Vh, 3)).astype(np.float32) * 1e-2 for n in ARKIT_SHAPE_NAMES}
    head = Head("fake", rng.normal(size=(Vh, 3)).astype(np.float32), np.array([3], np.int32),
                np.array([0, 1, 2], np.int32), keys)
    w = rng.uniform(0, 1, size=(7, 52)).astype(np.float32)
    w[0, :5] = 0.0  # on the bounds
    w[1, :5] = 1.0
    basis = np.stack([keys[n] for n in ARKIT_SHAPE_NAMES])
    verts = head.vertices + np.einsum("tk,kvc->tvc", w, basis)
    got, err = fit_arkit_weights(verts, head)
    np.testing.assert_allclose(got, w, atol=1e-4)
    assert err < 1e-5
    # out-of-range motion is clipped to [0, 1] and the error says how far off it is
    got, err = fit_arkit_weights(head.vertices + 3 * basis[:1], head)
    assert got[0, 0] == pytest.approx(1.0) and err > 1e-3
    with pytest.raises(ImitatorError, match="vertices"):
        fit_arkit_weights(verts[:, :10], head)
    assert sys.modules["core.arkit_fit"]  # imported lazily by generate --arkit-csv


def test_cosine_schedule_goes_from_lr_down_to_the_floor():
    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine", min_lr_ratio=0.1)
    rates = [cfg.lr_at(step, 11) for step in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates[5] == pytest.approx(0.55e-3) and all(a > b for a, b in zip(rates, rates[1:]))
    assert TrainConfig(lr=1e-3).lr_at(7, 11) == 1e-3  # constant: the reference
    with pytest.raises(ImitatorError, match="lr_schedule 'step'"):
        TrainConfig(lr_schedule="step").validate()


def test_init_starts_a_new_run_from_a_trained_model(corpus, tiny_model, tmp_path):
    """--init: every weight comes from the given model (a vanishing lr keeps them), styles included
    when they are the same subjects; a model of another head is refused."""
    run = tmp_path / "warm"
    train(corpus[0], run, model_settings=TINY_MODEL, train_config=TrainConfig(epochs=1, lr=1e-12),
          progress=False, init=tiny_model)
    start, warm = Imitator.from_pretrained(tiny_model).state_dict(), Imitator.from_pretrained(run).state_dict()
    for name in ("motion_decoder.final.weight", "style_embedding.weight"):
        assert torch.allclose(warm[name], start[name], atol=1e-6), name
    fresh = tmp_path / "fresh"
    train(corpus[0], fresh, model_settings=TINY_MODEL, train_config=TrainConfig(epochs=1, lr=1e-12), progress=False)
    assert not torch.allclose(Imitator.from_pretrained(fresh).state_dict()["style_embedding.weight"],
                              start["style_embedding.weight"])
    other = Imitator.from_pretrained(tiny_model)
    other.config.num_vertices += 1
    with pytest.raises(ImitatorError, match=f"--init {tiny_model}: that model animates {V} vertices"):
        warm_start(other, tiny_model)


def test_init_with_a_longer_encoder_context_starts_as_the_same_model(tiny_model):
    """New context blocks start as the identity: the warm-started model gives the base model's
    features, and a training step moves the new blocks."""
    base = Imitator.from_pretrained(tiny_model).eval()
    options = {**base.config.encoder_options, "context_dilations": [*base.config.encoder_options.get(
        "context_dilations", []), 1, 2]}
    model = Imitator(dataclasses.replace(base.config, encoder_options=options)).eval()
    warm_start(model, tiny_model)
    audio = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.audio_features(audio, 30), base.audio_features(audio, 30))
    new = model.audio_encoder.context[-1].conv
    assert not new.weight.any()
    model.audio_features(audio, 30).square().sum().backward()
    assert new.weight.grad.abs().sum() > 0


def test_init_with_a_phone_branch_starts_as_the_same_model_and_the_branch_learns_phones_only(
        corpus, tiny_model, tmp_path):
    """An encoder phone branch added by --init: the feature map's new columns start at zero (the
    same features as the base model), the branch learns the corpus's phones, and nothing the motion
    loss sees sends a gradient into it."""
    branch = {**TINY_MODEL, "phone_loss_weight": 1.0,
              "encoder_options": {**TINY_MODEL["encoder_options"], "phone_branch": {"dim": 8}}}
    run = tmp_path / "branch"
    train(corpus[0], run, model_settings=branch, train_config=TrainConfig(epochs=4, lr=1e-2, seed=2),
          progress=False, init=tiny_model)
    log = lines(run)
    assert log[-1]["train"]["phones"] < 0.8 * log[0]["train"]["phones"] and "phones" in log[-1]["val"]
    trained = Imitator.from_pretrained(run)
    assert trained.audio_encoder.phone_classes == len(trained.config.phones) == 40
    base = Imitator.from_pretrained(tiny_model).eval()
    model = Imitator(trained.config).eval()
    warm_start(model, tiny_model)
    audio = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.audio_features(audio, 30), base.audio_features(audio, 30))
    features, logits = model.map_features(model.audio_encoder(audio, 30))
    features.square().sum().backward()  # anything downstream of the features: visemes, motion
    assert all(p.grad is None or not p.grad.any() for p in model.audio_encoder.phone_branch.parameters())
    assert model.audio_feature_map.weight.grad[:, -40:].abs().sum() > 0  # the posteriors are used
    with pytest.raises(ImitatorError, match="learns from the phone loss only"):
        train(corpus[0], tmp_path / "no_loss", progress=False, train_config=TrainConfig(epochs=1),
              model_settings={**branch, "phone_loss_weight": 0.0})


def test_init_with_other_subjects_starts_every_style_at_the_mean_style(tiny_model):
    base = Imitator.from_pretrained(tiny_model)
    model = Imitator(dataclasses.replace(base.config, styles=["x", "y", "z"]))
    assert warm_start(model, tiny_model) > 10
    mean = base.style_embedding.weight.detach().mean(1)
    assert all(torch.allclose(model.style_embedding.weight[:, i], mean) for i in range(3))
    assert torch.equal(model.motion_decoder.final.weight, base.motion_decoder.final.weight)


def test_style_lr_scale_moves_only_the_style_table_faster(corpus, tiny_model, tmp_path):
    """One step from the same start: Adam moves each weight by about lr, so the style table moves
    ~30x as far with style_lr_scale 30 and every other weight exactly as far as without."""
    moved = {}
    for scale in (1.0, 30.0):
        run = tmp_path / f"s{scale:g}"
        train(corpus[0], run, model_settings=TINY_MODEL, progress=False, init=tiny_model,
              train_config=TrainConfig(epochs=1, lr=1e-5, batch_size=4, style_lr_scale=scale))
        start, end = Imitator.from_pretrained(tiny_model).state_dict(), Imitator.from_pretrained(run).state_dict()
        moved[scale] = {k: (end[k] - start[k]).abs().max().item() for k in ("style_embedding.weight",
                                                                            "motion_decoder.final.weight")}
    ratio = moved[30.0]["style_embedding.weight"] / moved[1.0]["style_embedding.weight"]
    assert 20 < ratio < 40, moved
    assert moved[30.0]["motion_decoder.final.weight"] == pytest.approx(moved[1.0]["motion_decoder.final.weight"],
                                                                      rel=1e-3)
    with pytest.raises(ImitatorError, match="style_lr_scale 0"):
        TrainConfig(style_lr_scale=0).validate()


def test_adam_eps_below_the_gradients_lets_every_weight_move_by_about_lr(corpus, tiny_model, tmp_path):
    """The losses are in m^2, so most gradients are far below torch's eps of 1e-8, which then damps
    their Adam steps; with adam_eps 1e-14 one step moves each weight with a gradient by about lr."""
    moved = {}
    for eps in (1e-8, 1e-14):
        run = tmp_path / f"e{eps:g}"
        train(corpus[0], run, model_settings=TINY_MODEL, progress=False, init=tiny_model,
              train_config=TrainConfig(epochs=1, lr=1e-5, batch_size=64, adam_eps=eps))
        start, end = Imitator.from_pretrained(tiny_model).state_dict(), Imitator.from_pretrained(run).state_dict()
        moved[eps] = (end["audio_encoder.conv1.weight"] - start["audio_encoder.conv1.weight"]).abs()
    assert moved[1e-14].median() == pytest.approx(1e-5, rel=0.05)  # one full Adam step
    assert moved[1e-8].median() < 0.5 * moved[1e-14].median()
    with pytest.raises(ImitatorError, match="adam_eps 0"):
        TrainConfig(adam_eps=0).validate()
