"""The fast trainer learns the same thing as the reference path: Gram-matrix losses equal the
vertex-space losses, parallel decoder passes equal the autoregressive rollout, a few steps trained
each way end at the same weights, and a fast run resumes bit-exactly after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.model import Imitator
from core.model.config import ImitatorConfig
from core.train import TrainConfig, load_checkpoint_state, train
from core.train.reduced_loss import ReducedTargets, reduced_loss
from core.train.step import StepBatch, TrainStep
from tiny_corpus import PYTHON, TINY_MODEL, entry_script, write_tiny_corpus
from tiny_corpus import one_thread  # noqa: F401  (autouse fixture)

K, V = 52, 120


def random_model(seed: int = 0, **settings) -> Imitator:
    torch.manual_seed(seed)
    model = Imitator(ImitatorConfig(**{**TINY_MODEL, **settings}, styles=["a", "b", "c"], num_vertices=V,
                                    lip_contact_weight=20.0))
    torch.nn.init.normal_(model.motion_decoder.final.weight, std=2e-3)
    torch.nn.init.normal_(model.motion_decoder.final.bias, std=1e-3)
    return model


def random_batch(seed: int, lengths=(31, 17, 24)) -> tuple[StepBatch, torch.Tensor]:
    """A padded batch of ARKit targets, its (K, V, 3) shape keys; the vertex batch is built from them."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    keys = torch.randn(K, V, 3, generator=g) * 3e-3
    weights = torch.rand(B, T, K, generator=g)
    closures = torch.rand(B, T, generator=g) > 0.8
    for i, n in enumerate(lengths):
        closures[i, n:] = False
    audio = torch.randn(B, int(T * 16000 / 30), generator=g) * 0.1
    template = torch.randn(B, V, 3, generator=g) * 0.05
    return StepBatch(audio, weights, template, torch.tensor([0, 2, 1][:B]), list(lengths), closures), keys


def vertex_batch(batch: StepBatch, keys: torch.Tensor) -> StepBatch:
    target = batch.template[:, None] + torch.einsum("btk,kvc->btvc", batch.target, keys)
    return StepBatch(batch.audio, target, batch.template, batch.style, batch.lengths, batch.closures)


def test_gram_matrix_losses_equal_the_vertex_space_losses():
    model = random_model().eval()
    batch, keys = random_batch(1)
    with torch.no_grad():
        reduced = TrainStep(model, reduced=ReducedTargets(keys.numpy()))(batch)
        reference = TrainStep(model)(vertex_batch(batch, keys))
    for k in ("total", "reconstruction", "velocity", "lip_contact"):
        assert reference[k] > 0
        assert float(reduced[k]) == pytest.approx(float(reference[k]), rel=1e-6), k
    # the lip contact term restricted to some vertices (vertex_weights) too
    lips = np.zeros(V)
    lips[:10] = 1.0
    from core.model.losses import contact_weights

    hidden = model.motion_weights(model.viseme_features(model.audio_features(batch.audio, 31)),
                                  model.style_vector(batch.style, 3)).detach()
    final = model.motion_decoder.final
    got = reduced_loss(hidden, final.weight, final.bias, batch.target, batch.frame_mask,
                       ReducedTargets(keys.numpy(), lips), model.config, batch.closures)["lip_contact"]
    pred = (hidden @ final.weight.T + final.bias).detach().view(3, 31, V, 3)
    err = (pred - torch.einsum("btk,kvc->btvc", batch.target, keys)) ** 2
    fw = contact_weights(batch.closures)
    want = sum(float((fw[i, :n, None, None] * err[i, :n] * torch.as_tensor(lips, dtype=torch.float32)[None, :, None])
                     .mean()) for i, n in enumerate(batch.lengths)) / 3 * 20.0
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)


def test_parallel_passes_equal_the_autoregressive_rollout():
    model = random_model(dropout=0.0).eval()
    decoder = model.viseme_decoder
    memory = torch.randn(2, 40, model.config.feature_dim)
    with torch.no_grad():
        rollout = decoder(memory)
        exact = decoder.parallel(memory, passes=40)
        two = decoder.parallel(memory, passes=2)
    torch.testing.assert_close(exact, rollout, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two[:, :2], rollout[:, :2], rtol=1e-5, atol=1e-5)
    assert (two - rollout).abs().max() > 1e-4  # later frames differ after two passes
    # gradients through every pass equal the rollout's
    memory.requires_grad_(True)
    g_roll = torch.autograd.grad(decoder(memory).square().sum(), memory)[0]
    g_par = torch.autograd.grad(decoder.parallel(memory, 40, grad_passes=40).square().sum(), memory)[0]
    torch.testing.assert_close(g_par, g_roll, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_tiny_corpus(root)


def test_steps_trained_each_way_end_at_the_same_weights(corpus, tmp_path):
    """Reference path (rollout, vertex frames) vs fast path (parallel passes with full gradients,
    Gram-matrix losses): 2 epochs of 4 steps, dropout off; the same weights to 1e-4 relative."""
    root, basis = corpus
    settings = {**TINY_MODEL, "dropout": 0.0}
    ref = TrainConfig(epochs=2, lr=1e-3, seed=4, reduced_loss=False)
    fast = TrainConfig(epochs=2, lr=1e-3, seed=4, decoder_passes=60, grad_passes=60)
    train(root, tmp_path / "ref", model_settings=settings, train_config=ref, progress=False, arkit_basis=basis)
    train(root, tmp_path / "fast", model_settings=settings, train_config=fast, progress=False, arkit_basis=basis)
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(tmp_path / "fast" / "model.safetensors"))
    moved = 0
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
    init = Imitator(ImitatorConfig(**settings, styles=["anna", "bert"], num_vertices=basis.shape[1]))
    moved = sum(float((a[k] - v).abs().max()) > 1e-4 for k, v in init.state_dict().items() if k in a and k != "template")
    assert moved >= 10  # the runs trained, they did not just stand still


def test_fast_run_resumes_bit_exactly_after_sigkill(tmp_path):
    """A compact corpus (arkit/ + shape_keys.npy, no vertex files): batches, parallel passes and
    the Gram-matrix losses; killed after its first checkpoint, resumed, equal to a whole run."""
    root = tmp_path / "compact"
    write_tiny_corpus(root, compact=True)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({"model": TINY_MODEL, "train": {"lr": 1e-3, "batch_size": 2, "decoder_passes": 2}}))
    cmd = [str(c) for c in [PYTHON, entry_script(tmp_path), "train", "--data", root, "--config", cfg, "--epochs", 4,
                            "--seed", 5, "--checkpoint-every", 1, "--threads", 1, "--quiet"]]
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (run / "last" / "state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = load_checkpoint_state(run)
    assert state is not None and not state["finished"] and state["epoch"] < 4
    assert state["targets"] == "arkit" and state["train_config"]["decoder_passes"] == 2
    done = subprocess.run(cmd + ["--out", str(run), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    subprocess.run(cmd + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    got, want = load_file(str(run / "model.safetensors")), load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_compact_corpus_reads_the_same_frames_as_the_vertex_layout(tmp_path):
    from core.data.vocaset import open_corpus
    from core.errors import ImitatorError

    write_tiny_corpus(tmp_path / "full")
    write_tiny_corpus(tmp_path / "compact", compact=True)
    full, compact = open_corpus(tmp_path / "full"), open_corpus(tmp_path / "compact")
    assert compact.compact and not full.compact and len(compact.utterances) == len(full.utterances) == 6
    for a, b in zip(full.utterances, compact.utterances):
        assert b.vertices is None and compact.frame_count(b) == full.frame_count(a)
        np.testing.assert_allclose(compact.read_vertices(b, 30.0), full.read_vertices(a, 30.0), atol=1e-6)
    assert not (tmp_path / "compact" / "vertices_npy").exists()
    # bad input: shape keys of another head, a missing ARKit file, no shape keys at all
    np.save(tmp_path / "compact" / "shape_keys.npy", np.zeros((52, 7, 3), np.float32))
    with pytest.raises(ImitatorError, match=r"shape_keys.npy: shape keys have shape \(52, 7, 3\).*regenerate"):
        open_corpus(tmp_path / "compact").read_vertices(compact.utterances[0])
    (tmp_path / "compact" / "arkit" / "anna_s1.npy").unlink()
    write_json = json.loads((tmp_path / "compact" / "dataset.json").read_text())
    assert any(u["name"] == "anna_s1" for u in write_json["utterances"])
    with pytest.raises(ImitatorError, match=r"arkit/anna_s1.npy: listed in dataset.json but missing"):
        open_corpus(tmp_path / "compact")
    (tmp_path / "compact" / "shape_keys.npy").unlink()
    with pytest.raises(ImitatorError, match="lacks 'vertices_npy'.*compact layout"):
        open_corpus(tmp_path / "compact")


def test_augmentation_is_seeded_changes_the_channel_and_keeps_the_clean_share():
    from core.model.encoders import LogMelEncoder
    from core.train.augment import AugmentConfig, Augmenter

    encoder = LogMelEncoder({}, 30.0)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(32000) / 16000
    audio = (0.3 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)))[None].repeat(8, 1)
    audio = audio + 0.01 * torch.randn(audio.shape, generator=g)
    clean = encoder.log_mel(audio)
    augmenter = Augmenter()
    a, b, c = augmenter(audio, encoder, 7), augmenter(audio, encoder, 7), augmenter(audio, encoder, 8)
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.isfinite(a).all()
    assert ((a - clean).abs().amax(dim=(1, 2)) > 1e-2).any()
    assert torch.allclose(Augmenter(AugmentConfig(clean=1.0))(audio, encoder, 7), clean)  # all kept clean
    # the telephone band alone: energy above 3.4 kHz drops by > 30 dB, the band keeps its level
    phone = Augmenter(AugmentConfig(clean=0, gain=0, clipping=0, reverb=0, noise=0, telephone=1, narrowband=0,
                                    eq=0, vtlp=0))
    spec = encoder.power_spectrogram(audio + 0.05 * torch.randn(audio.shape, generator=g))
    f = torch.linspace(0, 8000, spec.shape[1])
    out = phone.spectral(spec, torch.Generator().manual_seed(0), torch.ones(8, dtype=torch.bool))
    high = f > 3600
    drop = 10 * torch.log10(spec[:, high].sum() / out[:, high].sum())
    assert drop > 30 and torch.allclose(out[:, (f > 400) & (f < 3300)], spec[:, (f > 400) & (f < 3300)], rtol=1e-3)


def test_dataset_preview_renders_a_compact_corpus_item(tmp_path):
    from core.data.preview import preview_item
    from core.render import probe_video

    root = tmp_path / "compact"
    write_tiny_corpus(root, compact=True)
    np.save(root / "faces.npy", np.array([[i, i + 1, i + 2] for i in range(0, 48, 3)], np.int32))
    info = probe_video(preview_item(root, "anna_s1", tmp_path / "p.mp4", size=32))
    assert info["frames"] == 60 and info["audio"]


@pytest.mark.parametrize("damage", ["truncated arkit", "truncated wav", "keys of another head"])
def test_a_damaged_compact_corpus_stops_before_the_first_step(tmp_path, damage):
    from core.errors import ImitatorError

    root = tmp_path / "compact"
    write_tiny_corpus(root, compact=True)
    if damage == "truncated arkit":
        path = root / "arkit" / "bert_s2.npy"
        path.write_bytes(path.read_bytes()[:-100])
        match = r"bert_s2.npy: not a readable .npy"
    elif damage == "truncated wav":
        path = root / "wav" / "bert_s2.wav"
        path.write_bytes(path.read_bytes()[:40])
        match = r"bert_s2.wav"
    else:
        np.save(root / "shape_keys.npy", np.zeros((52, 3, 3), np.float32))
        match = r"shape_keys.npy: shape keys have shape \(52, 3, 3\)"
    with pytest.raises(ImitatorError, match=match):
        train(root, tmp_path / "run", model_settings=TINY_MODEL, progress=False,
              train_config=TrainConfig(epochs=1, batch_size=2, decoder_passes=2))
    assert not (tmp_path / "run" / "last").exists() and not (tmp_path / "run" / "model.safetensors").exists()


def test_mu_law_codec_quantizes_to_256_levels_and_keeps_the_signal():
    from core.train.augment import AugmentConfig, Augmenter, mu_law_round_trip
    from core.model.encoders import LogMelEncoder

    t = torch.arange(16000) / 16000
    audio = 0.5 * torch.sin(2 * torch.pi * 180 * t)[None]
    out = mu_law_round_trip(audio)
    assert len(torch.unique(out)) <= 256 and len(torch.unique(audio)) > 1000
    snr = 10 * torch.log10(audio.pow(2).sum() / (out - audio).pow(2).sum())
    assert 30 < snr < 45  # G.711 gives about 38 dB on a loud tone: lossy, and still speech
    only_codec = Augmenter(AugmentConfig(clean=0, gain=0, clipping=0, reverb=0, noise=0, telephone=0,
                                         narrowband=0, eq=0, vtlp=0, codec=1))
    encoder = LogMelEncoder({}, 30.0)
    assert not torch.allclose(only_codec(audio, encoder, 0), encoder.log_mel(audio))
