"""The Imitator model (Thambiraja et al., ICCV 2023), read top to bottom in the order data flows:

    audio (B, N) 16 kHz
      -> audio encoder (wav2vec2 or log-mel)                 (B, T, D)    features at the model fps
      -> audio feature map, Linear(D, 64)                     (B, T, 64)
      -> viseme decoder: causal transformer decoder,          (B, T, 64)   style-agnostic visemes
         autoregressive over its own outputs from a zero start token, frame i attends audio frame i
      -> + style embedding, Linear(num_styles, 64, no bias)   (B, T, 64)
      -> motion decoder: 4 x (Linear + LeakyReLU) + Linear    (B, T, 3V)   vertex offsets
      -> + template                                           (B, T, V, 3) vertices
    optional: contact head on visemes + audio features      (B, T)       closed-lip probability,
      used by closure-aware decoding (core.model.closure) to make the lips meet on m/b/p

The maths follows the official code, bala1144/Imitator ``imitator/models/nn_model.py`` (itself after
FaceFormer, EvelynFan/FaceFormer ``faceformer.py``): ``nn.TransformerDecoderLayer`` (post-norm,
ReLU, dropout 0.1), ``enc_dec_mask`` (diagonal memory mask), ``casual_mask`` (plain causal mask;
FaceFormer's ``init_biased_mask`` ALiBi-style temporal bias is an option), the start token of zeros,
``motion_decoder`` with ``init_weight`` (xavier hidden layers, zero biases, zero final layer).

Two facts make generation fast and exact:
* the memory mask lets frame i see only audio frame i, so cross-attention is a softmax over one key
  (weight 1): its output is ``out_proj(v_proj(memory_i))`` for every frame at once, whatever the query;
* self-attention is causal, so keys/values of past frames never change: a KV cache turns the
  reference's full-prefix recomputation (O(T^2) attention per step) into one new row per step.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImitatorError
from .config import ImitatorConfig
from .closure import LipClosure
from .encoders import average_per_frame, build_encoder, num_frames_for

# the style Generate uses without a profile: the mean of the training styles, the best single guess
# for a person the model never saw (on the 16 val subjects its lip error is below every training style's)
MEAN_STYLE = "mean"


def is_mean_style(style, styles: list[str]) -> bool:
    """Whether ``style`` names the mean style (a training style of that name would win)."""
    return isinstance(style, str) and style == MEAN_STYLE and style not in styles


# --- positional encoding ---------------------------------------------------------------------------
def sinusoid_table(length: int, d: int) -> torch.Tensor:
    """(length, d) the transformer sinusoids: sin on even, cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(length, d)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


class PositionalEncoding(nn.Module):
    """Adds a code per frame position, then dropout.

    ``imitator``: the official ``PositionalEncoding`` is built for (T, B, d) tensors but receives
    batch-first (1, T, d) ones, so ``pe[:x.size(0)]`` is position 0's code added to every frame.
    ``periodic``: FaceFormer's PPE, the code of ``position % period``. ``none``: nothing added.
    """

    def __init__(self, config: ImitatorConfig):
        super().__init__()
        d = config.feature_dim
        mode = config.positional_encoding
        table = (sinusoid_table(config.period, d) if mode == "periodic"
                 else sinusoid_table(1, d) if mode == "imitator" else torch.zeros(1, d))
        self.register_buffer("table", table, persistent=False)  # (P, d), position p -> table[p % P]
        self.dropout = nn.Dropout(config.dropout)

    def code(self, position: int) -> torch.Tensor:  # (d,)
        return self.table[position % self.table.shape[0]]

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        positions = torch.arange(start, start + x.shape[1], device=x.device) % self.table.shape[0]
        return self.dropout(x + self.table[positions])


# --- masks and biases ------------------------------------------------------------------------------
def alibi_slopes(num_heads: int) -> torch.Tensor:
    """FaceFormer's per-head slopes (ALiBi, Press et al.): 1/4, 1/16, ... for 4 heads."""
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return torch.tensor(power_of_2(num_heads))
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = alibi_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.cat([torch.tensor(power_of_2(closest)), extra])


def distance_bias(config: ImitatorConfig, length: int) -> torch.Tensor | None:
    """(H, length): bias for a key ``k`` frames in the past, -slope_h * floor(k / period)."""
    if not config.temporal_bias:
        return None
    k = torch.arange(length)
    return -alibi_slopes(config.num_heads)[:, None] * torch.div(k, config.period, rounding_mode="floor")


def self_attention_mask(config: ImitatorConfig, T: int, context: int | None = None) -> torch.Tensor:
    """(H, T, T) additive mask: -inf above the diagonal, plus the temporal bias when enabled.

    ``context`` C: frame i sees frame 0 and its latest C - 1 frames only (a rolling KV cache).
    """
    i = torch.arange(T)
    hidden = i[None, :] > i[:, None]
    if context is not None:
        hidden |= (i[None, :] > 0) & (i[None, :] < i[:, None] - context + 2)
    mask = torch.zeros(config.num_heads, T, T).masked_fill(hidden, float("-inf"))
    bias = distance_bias(config, T)
    if bias is not None:
        dist = (i[:, None] - i[None, :]).clamp(min=0)  # (T, T) frames into the past
        mask = mask + bias[:, dist]
    return mask


def memory_mask(T: int, S: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, S) boolean, True = masked: frame i attends audio frame i only (vocaset ``enc_dec_mask``)."""
    return ~torch.eye(T, S, dtype=torch.bool, device=device)


# --- KV cache --------------------------------------------------------------------------------------
class KVCache:
    """Self-attention keys/values of the frames decoded so far, per layer, and the decoder's state.

    Without autograd, keys/values live in preallocated (L, B, H, capacity, dh) tensors filled in
    place. When more frames than ``capacity`` are decoded (streaming), the cache rolls: slot 0 keeps
    frame 0 (the start token's frame, which every training frame could see) and the other slots
    hold the latest ``capacity - 1`` frames. With autograd (training) each step concatenates, so
    views saved for backward stay valid; nothing rolls.
    """

    def __init__(self, num_layers: int, batch: int, heads: int, capacity: int, head_dim: int,
                 like: torch.Tensor, grad: bool):
        if capacity < 2:
            raise ImitatorError(f"KV cache capacity {capacity} is too small; use at least 2 frames")
        self.grad, self.capacity = grad, capacity
        self.position = 0  # frames decoded so far
        self.token = like.new_zeros(batch, heads * head_dim)  # next input: the zero start token
        self.slot_positions = torch.zeros(capacity, dtype=torch.long)  # frame held by each slot
        if grad:
            empty = like.new_zeros(batch, heads, 0, head_dim)
            self.keys = [empty] * num_layers
            self.values = [empty] * num_layers
        else:
            shape = (num_layers, batch, heads, capacity, head_dim)
            self.keys, self.values = like.new_empty(shape), like.new_empty(shape)

    def slot(self, p: int) -> int:
        """Where frame p goes: p while there is room, then the oldest slot after slot 0."""
        return p if self.grad or p < self.capacity else 1 + (p - 1) % (self.capacity - 1)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store frame p's (B, H, dh) key/value; return the keys/values it attends (B, H, n, dh)."""
        if self.grad:
            self.keys[layer] = torch.cat([self.keys[layer], k.unsqueeze(2)], 2)
            self.values[layer] = torch.cat([self.values[layer], v.unsqueeze(2)], 2)
            return self.keys[layer], self.values[layer]
        slot = self.slot(p)
        self.keys[layer, :, :, slot] = k
        self.values[layer, :, :, slot] = v
        n = min(p + 1, self.capacity)
        return self.keys[layer, :, :, :n], self.values[layer, :, :, :n]

    def key_positions(self, p: int) -> torch.Tensor:
        """Frame numbers of the keys frame p attends, in cache order (for the temporal bias)."""
        if self.grad:
            return torch.arange(p + 1)
        self.slot_positions[self.slot(p)] = p
        return self.slot_positions[: min(p + 1, self.capacity)]


# --- viseme decoder --------------------------------------------------------------------------------
class VisemeDecoder(nn.Module):
    """Causal transformer decoder, autoregressive over its own 64-d outputs (the viseme features).

    Input at frame 0 is a zero start token, at frame i the output of frame i - 1; each input gets
    the positional code. ``layers`` are ``nn.TransformerDecoderLayer`` so parameter names match the
    reference; ``forward`` runs them one frame at a time with a KV cache, ``full_prefix`` runs them
    the reference way (whole prefix every step) and exists to check and benchmark the cache.
    ``decode`` continues a ``KVCache`` state chunk by chunk (streaming).
    """

    def __init__(self, config: ImitatorConfig):
        super().__init__()
        self.config = config
        d, H = config.feature_dim, config.num_heads
        self.num_heads, self.head_dim = H, d // H
        self.positional_encoding = PositionalEncoding(config)
        layer = nn.TransformerDecoderLayer(d, H, dim_feedforward=config.ff_dim, dropout=config.dropout,
                                           batch_first=True)  # post-norm, ReLU: the reference layer
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(config.num_layers))
        slopes = alibi_slopes(H) if config.temporal_bias else torch.zeros(H)
        self.register_buffer("slopes", slopes, persistent=False)  # (H,)

    # the reference: recompute the whole prefix at every step (official ``predict``) ----------------
    def full_prefix(self, memory: torch.Tensor, context: int | None = None) -> torch.Tensor:
        """(B, T, d) audio memory -> (B, T, d) visemes, O(T^2) work per step, as the official code
        (``context``: the attention window of a rolling cache, see ``self_attention_mask``)."""
        B, T, d = memory.shape
        mem_mask = memory_mask(T, T, memory.device)
        attn_mask = self_attention_mask(self.config, T, context).to(memory)  # (H, T, T)
        tokens = memory.new_zeros(B, 1, d)  # start token
        for i in range(T):
            x = self.positional_encoding(tokens)  # (B, i+1, d)
            tgt_mask = attn_mask[:, : i + 1, : i + 1].repeat(B, 1, 1)  # (B*H, i+1, i+1)
            for layer in self.layers:
                x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=mem_mask[: i + 1])
            tokens = torch.cat([tokens, x[:, -1:]], 1)
        return x

    # ours: one new row per step ---------------------------------------------------------------------
    def cross_attention(self, layer: nn.TransformerDecoderLayer, memory: torch.Tensor) -> torch.Tensor:
        """(B, T, d): the diagonal memory attention of every frame at once (softmax over one key)."""
        attn = layer.multihead_attn
        d = memory.shape[-1]
        v = F.linear(memory, attn.in_proj_weight[2 * d:], attn.in_proj_bias[2 * d:])  # (B, T, d)
        if self.training and attn.dropout > 0:  # dropout on the single attention weight, per head
            B, T, _ = v.shape
            keep = F.dropout(v.new_ones(B, T, self.num_heads, 1), attn.dropout, True)
            v = (v.view(B, T, self.num_heads, self.head_dim) * keep).view(B, T, d)
        return attn.out_proj(v)

    def self_attention_step(self, layer: nn.TransformerDecoderLayer, x: torch.Tensor, cache: KVCache,
                            index: int, p: int, bias: torch.Tensor | None) -> torch.Tensor:
        """(B, d) frame p -> (B, d): attends its own and the cached keys (the causal mask's row p)."""
        attn = layer.self_attn
        B, d = x.shape
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(
            B, 3, self.num_heads, self.head_dim).unbind(1)  # 3 x (B, H, dh)
        keys, values = cache.append(index, k, v, p)  # (B, H, n, dh)
        out = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, attn_mask=bias,
                                             dropout_p=attn.dropout if self.training else 0.0)
        return F.linear(out.view(B, d), attn.out_proj.weight, attn.out_proj.bias)

    def layer_step(self, layer: nn.TransformerDecoderLayer, x: torch.Tensor, cross: torch.Tensor,
                   cache: KVCache, index: int, p: int, bias: torch.Tensor | None) -> torch.Tensor:
        """One post-norm decoder layer for one (B, d) frame, as ``nn.TransformerDecoderLayer.forward``
        (functional calls: module-call overhead dominates at this size)."""
        return self.after_self_attention(layer, x, self.self_attention_step(layer, x, cache, index, p, bias),
                                         cross)

    def after_self_attention(self, layer: nn.TransformerDecoderLayer, x: torch.Tensor, sa: torch.Tensor,
                             cross: torch.Tensor) -> torch.Tensor:
        """The rest of a post-norm decoder layer once self-attention ``sa`` is known (any leading shape)."""
        drop = _dropout if self.training else _identity
        d = (x.shape[-1],)
        x = F.layer_norm(x + drop(sa, layer.dropout1.p), d, layer.norm1.weight, layer.norm1.bias,
                         layer.norm1.eps)
        x = F.layer_norm(x + drop(cross, layer.dropout2.p), d, layer.norm2.weight, layer.norm2.bias,
                         layer.norm2.eps)
        h = drop(layer.activation(F.linear(x, layer.linear1.weight, layer.linear1.bias)), layer.dropout.p)
        ff = F.linear(h, layer.linear2.weight, layer.linear2.bias)
        return F.layer_norm(x + drop(ff, layer.dropout3.p), d, layer.norm3.weight, layer.norm3.bias,
                            layer.norm3.eps)

    def bias_row(self, cache: KVCache, p: int) -> torch.Tensor | None:
        """(H, 1, n) temporal bias of frame p's keys: -slope_h * floor(frames back / period)."""
        if not self.config.temporal_bias:
            return None
        back = (p - cache.key_positions(p)).to(self.slopes.device)
        return (-self.slopes[:, None] * torch.div(back, self.config.period, rounding_mode="floor"))[:, None]

    def new_cache(self, batch: int, like: torch.Tensor, capacity: int) -> KVCache:
        """An empty state; ``capacity`` frames of context (more frames roll the cache)."""
        return KVCache(len(self.layers), batch, self.num_heads, capacity, self.head_dim, like,
                       grad=torch.is_grad_enabled())

    def decode(self, memory: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """(B, t, d) audio memory of the next t frames -> (B, t, d) visemes; advances ``cache``."""
        B, t, d = memory.shape
        cross = [self.cross_attention(layer, memory) for layer in self.layers]  # L x (B, t, d)
        pe = self.positional_encoding
        positions = torch.arange(cache.position, cache.position + t, device=memory.device)
        codes = pe.table[positions % pe.table.shape[0]]  # (t, d)
        drop = _dropout if self.training else _identity
        token, outputs = cache.token, []
        with _single_thread():
            for i in range(t):
                p = cache.position + i
                bias = self.bias_row(cache, p)
                x = drop(token + codes[i], pe.dropout.p)  # (B, d)
                for index, layer in enumerate(self.layers):
                    x = self.layer_step(layer, x, cross[index][:, i], cache, index, p, bias)
                outputs.append(x)
                token = x
        cache.token, cache.position = token, cache.position + t
        return torch.stack(outputs, 1)  # (B, t, d)

    # training: every frame at once, on given inputs ---------------------------------------------
    def teacher_forced(self, memory: torch.Tensor, tokens: torch.Tensor,
                       cross: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(B, T, d) audio memory + (B, T, d) decoder inputs -> (B, T, d): one parallel causal pass.
        With ``tokens`` = [start token, own outputs of frames 0 .. T-2] this is exactly ``decode``.
        ``cross``: the layers' cross-attention outputs when already computed (they ignore tokens)."""
        B, T, d = memory.shape
        H, dh = self.num_heads, self.head_dim
        mask = self_attention_mask(self.config, T).to(memory)  # (H, T, T)
        if cross is None:
            cross = [self.cross_attention(layer, memory) for layer in self.layers]
        x = self.positional_encoding(tokens)
        for layer, layer_cross in zip(self.layers, cross):
            attn = layer.self_attn
            q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(
                B, T, 3, H, dh).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=attn.dropout if self.training else 0.0)
            sa = F.linear(out.transpose(1, 2).reshape(B, T, d), attn.out_proj.weight, attn.out_proj.bias)
            x = self.after_self_attention(layer, x, sa, layer_cross)
        return x

    def parallel(self, memory: torch.Tensor, passes: int, grad_passes: int = 1) -> torch.Tensor:
        """(B, T, d) -> (B, T, d) visemes by ``passes`` parallel passes, each fed the previous pass's
        outputs shifted by one frame (the first: start tokens only). After k passes the first k
        frames equal the autoregressive ``decode`` exactly; with passes >= T every frame does and,
        when all passes keep their gradients (``grad_passes`` >= passes), so do the gradients.
        Only the last ``grad_passes`` passes record gradients and use dropout (cheap training); the
        earlier ones only make the inputs."""
        tokens = memory.new_zeros(memory.shape)
        out, training, cross = tokens, self.training, None
        for i in range(passes):
            recorded = i >= passes - grad_passes
            if not recorded:
                self.eval()
            with torch.set_grad_enabled(torch.is_grad_enabled() and recorded):
                if recorded and cross is None:
                    cross = [self.cross_attention(layer, memory) for layer in self.layers]
                out = self.teacher_forced(memory, tokens, cross if recorded else None)
            self.train(training)
            tokens = F.pad(out[:, :-1], (0, 0, 1, 0))  # frame i's input: frame i-1's output
        return out

    def forward(self, memory: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        """(B, T, d) audio memory -> (B, T, d) viseme features (full context, like the reference)."""
        if not use_cache:
            return self.full_prefix(memory)
        return self.decode(memory, self.new_cache(memory.shape[0], memory, max(2, memory.shape[1])))


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.dropout(x, p, True) if p > 0 else x


def _identity(x: torch.Tensor, p: float) -> torch.Tensor:
    return x


class _single_thread:
    """One intra-op thread while decoding frame by frame: for (B, 64) tensors waking a thread pool
    costs more than the work (measured: 2 threads are 5-10x slower than 1 on a 2-core machine)."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        if self.threads > 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.threads > 1:
            torch.set_num_threads(self.threads)


# --- motion decoder --------------------------------------------------------------------------------
class MotionDecoder(nn.Module):
    """Styled visemes -> vertex offsets: ``motion_layers`` x (Linear(d, d) + LeakyReLU) + Linear(d, 3V).

    The last layer is linear and zero-initialised (official ``init_weight``), so every output is
    ``weights @ basis + bias`` with the (T, d) ``hidden`` activations as weights.
    """

    def __init__(self, config: ImitatorConfig):
        super().__init__()
        d = config.feature_dim
        self.slope = config.leaky_relu_slope
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(config.motion_layers))
        self.final = nn.Linear(d, config.vertex_dim)
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), self.slope)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, 3V)
        return self.final(self.hidden(x))

    def basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(d, 3V) basis and (3V,) bias: offsets = hidden(x) @ basis + bias exactly."""
        return self.final.weight.t(), self.final.bias


# --- the whole model -------------------------------------------------------------------------------
class Imitator(nn.Module):
    """Speech audio -> vertex animation; see the module docstring for the data flow."""

    def __init__(self, config: ImitatorConfig, pretrained_encoder: bool = True):
        super().__init__()
        d = config.feature_dim
        # 1. audio encoder and feature map ("audio feature map" Linear(768, 64) in the reference)
        self.audio_encoder = build_encoder(config.encoder, config.encoder_options, config.fps,
                                           pretrained=pretrained_encoder)
        self.config = dataclasses.replace(config, encoder_options=self.audio_encoder.export_options())
        self.audio_feature_map = nn.Linear(self.audio_encoder.dim, d)
        # 2. viseme decoder
        self.viseme_decoder = VisemeDecoder(self.config)
        # 3. style embedding: column s of the weight is style s's vector
        self.style_embedding = nn.Linear(config.num_styles, d, bias=False)
        # 4. motion decoder
        self.motion_decoder = MotionDecoder(self.config)
        self.register_buffer("template", torch.zeros(config.num_vertices, 3))  # rest positions (V, 3)
        # training only: per-frame phone classes from the audio features (phone_loss_weight), unless
        # the encoder has a phone branch of its own
        branch = getattr(self.audio_encoder, "phone_classes", 0)
        if branch and branch != len(config.phones):
            raise ImitatorError(f"model config: the encoder's phone_branch has {branch} classes, phones "
                                f"lists {len(config.phones)}; give the same classes to both")
        self.phone_head = nn.Linear(d, len(config.phones)) if config.phones and not branch else None
        # 5. optional contact head for closure-aware decoding (fitted after training)
        self.closure = (LipClosure(config.lip_closure, d, getattr(self.audio_encoder, "log_mel_dim", None))
                        if config.lip_closure else None)
        if self.closure is not None and max(self.closure.options["centres"]) >= config.num_vertices:
            raise ImitatorError(f"lip_closure: lip centre vertices {self.closure.options['centres']} do not "
                                f"exist on a head of {config.num_vertices} vertices")

    # 1 ----------------------------------------------------------------------------------------------
    def audio_features(self, audio: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """(B, N) 16 kHz samples -> (B, T, d) audio features at the model fps."""
        if num_frames is None:
            num_frames = num_frames_for(audio.shape[1], self.config.sample_rate, self.config.fps)
        return self.map_features(self.audio_encoder(audio, num_frames))[0]

    def map_features(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder output (B, T, D) -> ((B, T, d) audio features, (B, T, phones) phone logits or
        None). A phone branch's logits enter the feature map as posteriors, without a gradient: the
        branch learns from the phone loss only."""
        classes = getattr(self.audio_encoder, "phone_classes", 0)
        if classes:
            logits = encoded[..., -classes:]
            encoded = torch.cat([encoded[..., :-classes], logits.detach().softmax(-1)], -1)
            return self.audio_feature_map(encoded), logits
        features = self.audio_feature_map(encoded)
        return features, (None if self.phone_head is None else self.phone_head(features))

    @property
    def scores_phones(self) -> bool:
        """Whether the model has phone logits to train (a phone head or an encoder phone branch)."""
        return self.phone_head is not None or bool(getattr(self.audio_encoder, "phone_classes", 0))

    # 2 ----------------------------------------------------------------------------------------------
    def viseme_features(self, audio_features: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        """(B, T, d) -> (B, T, d) style-agnostic viseme features."""
        return self.viseme_decoder(audio_features, use_cache=use_cache)

    # 3 ----------------------------------------------------------------------------------------------
    def style_index(self, name: str) -> int:
        try:
            return self.config.styles.index(name)
        except ValueError:
            raise ImitatorError(f"unknown style {name!r}; this model knows "
                                f"{', '.join(self.config.styles)}") from None

    def style_vector(self, style: int | str | torch.Tensor, batch: int = 1) -> torch.Tensor:
        """(B, d) from a style name (``MEAN_STYLE``: the mean of the training styles), an index, a
        (B,) tensor of indices or a (d,)/(B, d) vector."""
        table = self.style_embedding.weight.t()  # (S, d)
        if is_mean_style(style, self.config.styles):
            return table.mean(0, keepdim=True).expand(batch, -1)
        if isinstance(style, str):
            style = self.style_index(style)
        if isinstance(style, int):
            if not 0 <= style < len(table):
                raise ImitatorError(f"style index {style} is out of range; this model has "
                                    f"{len(table)} styles")
            return table[style].expand(batch, -1)
        style = torch.as_tensor(style, device=table.device)
        if style.is_floating_point():  # vectors: (d,) or (B, d)
            if style.shape[-1] != table.shape[1]:
                raise ImitatorError(f"style vector has {style.shape[-1]} values; this model's style "
                                    f"vectors have {table.shape[1]}")
            vectors = style.reshape(-1, table.shape[1]).to(table.dtype)
        else:  # indices: () or (B,)
            vectors = table[style.reshape(-1)]
        return vectors.expand(batch, -1) if len(vectors) == 1 else vectors

    # 4 ----------------------------------------------------------------------------------------------
    def motion_weights(self, visemes: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """(B, T, d) visemes + (B, d) style -> (B, T, d) coefficients of the motion basis."""
        return self.motion_decoder.hidden(visemes + style[:, None, :])

    def offsets(self, visemes: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """(B, T, d) visemes + (B, d) style -> (B, T, V, 3) vertex offsets."""
        flat = self.motion_decoder(visemes + style[:, None, :])  # (B, T, 3V)
        return flat.view(*flat.shape[:2], self.config.num_vertices, 3)

    def basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(d, 3V) basis and (3V,) bias of the motion decoder's final, linear layer."""
        return self.motion_decoder.basis()

    # 5 ----------------------------------------------------------------------------------------------
    def audio_contact(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor | None:
        """(B, T) closed-lip probability of the audio contact net for (B, N) audio, or None."""
        if self.closure is None or self.closure.audio_net is None:
            return None
        return self.audio_contact_from_log_mel(self.audio_encoder.log_mel_frames(audio), num_frames)

    def audio_contact_from_log_mel(self, mel: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T) audio contact net probability from (B, K, n_mels + 1) log-mel frames at 100 Hz."""
        logits = self.closure.audio_net(mel)  # (B, K)
        return average_per_frame(torch.sigmoid(logits)[..., None], self.audio_encoder.rate, self.config.fps,
                                 num_frames)[..., 0]

    def contact(self, visemes: torch.Tensor, audio_features: torch.Tensor,
                audio_contact: torch.Tensor | None = None) -> torch.Tensor | None:
        """(B, T) probability of closed lips per frame (the contact head, or the audio contact net
        where that is higher), or None without a contact head."""
        if self.closure is None:
            return None
        p = self.closure.contact(visemes, audio_features)
        return p if audio_contact is None else torch.maximum(p, audio_contact)

    # checkpoints ----------------------------------------------------------------------------------
    def save_pretrained(self, folder) -> None:
        """``folder/config.json`` + ``folder/model.safetensors`` (see core.model.checkpoint)."""
        from .checkpoint import save_pretrained

        save_pretrained(self, folder)

    @classmethod
    def from_pretrained(cls, folder, device: str | torch.device = "cpu", topology: str | None = None) -> "Imitator":
        from .checkpoint import from_pretrained

        return from_pretrained(folder, device, topology)

    def forward(self, audio: torch.Tensor, style: int | str | torch.Tensor, num_frames: int | None = None,
                template: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
        """(B, N) 16 kHz audio -> (B, T, V, 3) vertices (offsets + template)."""
        visemes = self.viseme_features(self.audio_features(audio, num_frames), use_cache)
        offsets = self.offsets(visemes, self.style_vector(style, audio.shape[0]))  # (B, T, V, 3)
        template = self.template if template is None else template  # (V, 3) or (B, V, 3)
        return offsets + (template[:, None] if template.ndim == 3 else template)
