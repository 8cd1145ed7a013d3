"""Official checkpoint converter: a checkpoint fabricated here in the official format (key names,
shapes, Lightning layout, transformers-4.17 weight-norm names) converts to our model, whose forward
pass equals an independent implementation of the official forward (written below from
bala1144/Imitator imitator/models/nn_model.py and wav2vec.py)."""

from __future__ import annotations

import argparse
import collections
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ImitatorError
from core.model import Imitator
from core.model.convert import add_commands, read_official_state

SR = 16000
D, V, STYLES = 16, 10, 8


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_wav2vec2_config():
    from transformers import Wav2Vec2Config

    # strides multiply to 320: 50 feature frames per second, as wav2vec2-base
    return Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                          conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
                          num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)


# --- the official model, written out (batch size 1, vocaset, eval) ---------------------------------
class OfficialPositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_len: int = 600):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[: x.size(0)]  # x is batch-first: size(0) is the batch


class OfficialMotionDecoder(nn.Module):
    def __init__(self, d: int, out: int, num_dec_layers: int = 5):
        super().__init__()
        layers = [nn.Linear(d, d), nn.LeakyReLU(0.01, True)]
        for _ in range(2, num_dec_layers):
            layers += [nn.Linear(d, d), nn.LeakyReLU(0.01, True)]
        self.decoder = nn.Sequential(*layers)
        self.decoder.add_module("final_out_layer", nn.Linear(d, out))

    def forward(self, x, style):
        return self.decoder(x + style)


class OfficialImitator(nn.Module):
    def __init__(self, w2v_config):
        super().__init__()
        from transformers import Wav2Vec2Model

        self.audio_encoder = Wav2Vec2Model(w2v_config)
        self.audio_feature_map = nn.Linear(w2v_config.hidden_size, D)
        self.PPE = OfficialPositionalEncoding(D, max_len=600)
        mask = (torch.triu(torch.ones(600, 600)) == 1).transpose(0, 1)
        mask = mask.float().masked_fill(mask == 0, float("-inf")).masked_fill(mask == 1, 0.0)
        self.causal_mh_mask = mask.unsqueeze(0).repeat(4, 1, 1)
        layer = nn.TransformerDecoderLayer(d_model=D, nhead=4, dim_feedforward=2 * D, batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, num_layers=1)
        self.obj_vector = nn.Linear(STYLES, D, bias=False)
        self.vertice_map_r = OfficialMotionDecoder(D, 3 * V)

    def encode(self, audio):
        """Their Wav2Vec2Model.forward for vocaset at test time (no frame_num)."""
        enc = self.audio_encoder
        h = enc.feature_extractor(audio).transpose(1, 2)
        out_len = int(h.shape[1] / 50.0 * 30)
        h = F.interpolate(h.transpose(1, 2), size=out_len, align_corners=True, mode="linear").transpose(1, 2)
        h = enc.feature_projection(h)[0]
        return enc.encoder(h).last_hidden_state

    @torch.no_grad()
    def predict(self, audio, template, one_hot):
        template = template.unsqueeze(1)
        obj_embedding = self.obj_vector(one_hot)
        hidden_states = self.encode(audio)
        frame_num = hidden_states.shape[1]
        hidden_states = self.audio_feature_map(hidden_states)
        for i in range(frame_num):
            if i == 0:
                style_emb = obj_embedding.unsqueeze(1)
                start_token = torch.zeros_like(style_emb)
                vertice_input = self.PPE(start_token)
                vertice_emb = start_token
            else:
                vertice_input = self.PPE(vertice_emb)
            n = vertice_input.shape[1]
            tgt_mask = self.causal_mh_mask[:, :n, :n]
            memory_mask = torch.ones(n, hidden_states.shape[1])
            for j in range(n):
                memory_mask[j, j] = 0
            out = self.transformer_decoder(vertice_input, hidden_states, tgt_mask=tgt_mask,
                                           memory_mask=memory_mask == 1)
            vertice_emb = torch.cat((vertice_emb, out[:, -1, :].unsqueeze(1)), 1)
        return self.vertice_map_r(out, style_emb) + template, frame_num


class ModelCheckpoint:  # stands for pytorch_lightning's callback class, pickled by reference
    pass


def fabricate_checkpoint(path: Path) -> OfficialImitator:
    """A Lightning-style checkpoint of a random official model, saved with torch.save."""
    torch.manual_seed(0)
    ref = OfficialImitator(tiny_wav2vec2_config()).eval()
    nn.init.normal_(ref.vertice_map_r.decoder.final_out_layer.weight, std=0.1)
    state = collections.OrderedDict()
    for key, value in ref.state_dict().items():  # transformers 4.17 names the weight norm g/v
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        state["nn_model." + key] = value
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    assert not any(n in sys.modules for n in names)
    for name in names:  # a fake package, only while saving
        sys.modules[name] = types.ModuleType(name)
    ModelCheckpoint.__module__ = names[-1]
    sys.modules[names[-1]].ModelCheckpoint = ModelCheckpoint
    try:
        torch.save({"epoch": 99, "global_step": 1234, "pytorch-lightning_version": "1.0.8",
                    "state_dict": state,
                    "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5),
                                                    "best_model_path": "logs/epoch=99.ckpt"}},
                    "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}},
                                          "param_groups": [{"lr": 1e-4, "params": [0]}]}],
                    "lr_schedulers": [{"best": float("inf"), "mode": "min"}]}, path)
    finally:
        for name in names:
            del sys.modules[name]  # the converter must not need it
    return ref


def test_converted_checkpoint_matches_the_official_forward(tmp_path):
    ckpt = tmp_path / "epoch=99.ckpt"
    ref = fabricate_checkpoint(ckpt)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    (tmp_path / "w2v.json").write_text(tiny_wav2vec2_config().to_json_string())
    args = parser.parse_args(["convert-official", str(ckpt), "--out", str(tmp_path / "model"),
                              "--wav2vec2-config", str(tmp_path / "w2v.json")])
    assert args.func(args) == 0
    ours = Imitator.from_pretrained(tmp_path / "model")
    assert ours.config.styles[2] == "FaceTalk_170725_00137_TA" and ours.config.num_vertices == V
    assert ours.config.motion_layers == 4 and ours.config.num_heads == 4

    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(int(1.5 * SR))).astype(np.float32)
    normalized = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)  # their Wav2Vec2Processor
    template = torch.from_numpy(rng.standard_normal(3 * V).astype(np.float32))[None]
    one_hot = torch.eye(STYLES)[[2]]
    expected, frames = ref.predict(torch.from_numpy(normalized)[None], template, one_hot)
    with torch.no_grad():
        got = ours(torch.from_numpy(audio)[None], 2, num_frames=frames, template=template.view(V, 3))
    assert frames == 44 and got.shape == (1, frames, V, 3)
    assert (got.reshape(1, frames, 3 * V) - expected).abs().max() <= 1e-5


def test_inferred_wav2vec2_settings_when_no_config_is_given(tmp_path):
    ckpt = tmp_path / "a.ckpt"
    fabricate_checkpoint(ckpt)
    from core.model.convert import infer_wav2vec2_config

    cfg = infer_wav2vec2_config(read_official_state(ckpt))
    expected = tiny_wav2vec2_config()
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "conv_kernel", "conv_bias",
                "feat_extract_norm", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups"):
        assert cfg[key] == (list(getattr(expected, key)) if isinstance(getattr(expected, key), tuple)
                            else getattr(expected, key)), key


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_marker",))


def test_malicious_and_broken_checkpoints_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"nn_model.audio_feature_map.weight": torch.zeros(2, 2)}, "x": _Evil()}, evil)
    with pytest.raises(ImitatorError, match="refused to load.*os.system|refused to load.*posix.system"):
        read_official_state(evil)
    assert not (tmp_path / "pwned_marker").exists()

    good = tmp_path / "good.ckpt"
    fabricate_checkpoint(good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for bad, message in [(truncated, "not a PyTorch checkpoint|truncated|corrupt"),
                         (tmp_path / "missing.ckpt", "checkpoint not found")]:
        with pytest.raises(ImitatorError, match=message) as info:
            read_official_state(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, plain)
    with pytest.raises(ImitatorError, match="not an Imitator checkpoint"):
        read_official_state(plain)
