"""Generation of any length, audio consumed as a stream, memory bounded by one window.

The reference decodes one sequence of at most ``max_seq_len`` frames (600 = 20 s; its causal mask
is built for that size). Two ways past it, chosen by ``config.long_audio``:

* ``rolling`` (default): one continuous decode. The KV cache holds ``window`` frames; beyond that
  it keeps frame 0 (the start token's frame, present in every training sequence) and the latest
  ``window - 1`` frames, so every frame attends at most as many keys as the last frame of a training
  window. With the reference's positional encoding the decoder has no absolute position signal,
  so a frame after 10 minutes sees the same kind of context as frame 599 of a training clip.
  Output up to ``window`` frames equals the reference exactly; there are no windows, so no seams.
* ``crossfade``: windows of ``window`` frames overlapping by ``overlap``; each is decoded from the
  zero start token like a training clip; in the overlap the first half of the new window is
  dropped (its warm-up) and the second half is crossfaded in with a raised-cosine ramp.
  Blending happens on the motion basis weights, i.e. exactly on the vertex offsets (the last
  layer is linear).

Audio comes in as blocks (an array is cut into blocks, a file is streamed with
``core.audio.stream_audio``); features are computed per window from its audio plus ``context``
seconds either side, so memory is one window plus the (T, 64) output weights.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from typing import NamedTuple
from pathlib import Path

import numpy as np
import torch

from ..animation import Animation
from ..errors import ImitatorError
from ..style.profile import StyleProfile
from .config import LONG_AUDIO_METHODS
from .encoders import num_frames_for, prepare_audio
from .closure import close_lips, transcript_contact
from .imitator import MEAN_STYLE, Imitator
from .rest import VoiceLevels, rest_pose_weights, rest_strength, speech_mask


class Decoded(NamedTuple):
    weights: np.ndarray  # (T, d) motion basis weights
    contact: np.ndarray | None  # (T,) closed-lip probability, None without a contact head
    levels: np.ndarray | None = None  # (N,) band-limited audio level per 10 ms hop (rest.VoiceLevels)


Progress = Callable[[int, int | None], None]  # (frames done, frames in total or None if unknown)
Style = int | str | torch.Tensor | StyleProfile | None  # a model style, a vector, a profile; None: MEAN_STYLE


def crossfade_ramp(overlap: int) -> np.ndarray:
    """(overlap,) weight of the new window: 0 over the first half (warm-up), then a raised cosine."""
    warm = overlap // 2
    fade = overlap - warm
    ramp = np.zeros(overlap, dtype=np.float32)
    if fade:
        x = (np.arange(fade, dtype=np.float64) + 1) / (fade + 1)
        ramp[warm:] = 0.5 - 0.5 * np.cos(np.pi * x)
    return ramp


class _Stream:
    """Audio received so far (only what later windows need is kept) and features of frame ranges."""

    def __init__(self, model: Imitator, style: torch.Tensor, window: int, context_frames: int,
                 device: torch.device):
        self.model, self.style, self.device = model, style, device
        self.window, self.context = window, context_frames
        self.sr, self.fps = model.config.sample_rate, model.config.fps
        self.buffer = np.zeros(0, dtype=np.float32)  # samples from self.buffer_start on
        self.buffer_start = 0
        self.received = 0
        self.start = 0  # first frame not decoded yet
        self.done: list[np.ndarray] = []  # finished (n, d) weight blocks
        self.frames_done = 0

    def sample_at(self, frame: int) -> int:
        return int(round(frame * self.sr / self.fps))

    def available(self) -> int:
        return num_frames_for(self.received, self.sr, self.fps)

    def feed(self, block: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, block])
        self.received += block.size
        available = self.available()
        while self.start + self.window + self.context < available:  # right context has arrived
            self.decode(self.start, self.start + self.window, available, final=False)

    def finish(self) -> np.ndarray:
        if self.received == 0:
            raise ImitatorError("audio holds no samples; choose a recording with speech")
        total = self.available()
        while self.frames_done < total:
            end = min(self.start + self.window, total)
            self.decode(self.start, end, total, final=end == total)
        return np.concatenate(self.done)[:total]

    def features(self, s: int, e: int, available: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(1, e - s, d) audio features of frames [s, e), computed with ``context`` frames either side,
        and the audio contact net's (1, e - s) closed-lip probability (None without one)."""
        c = self.context
        fs, fe = max(0, s - c), min(available, e + c)
        fs -= fs % self.model.audio_encoder.frame_step  # on the encoder's grid: same features as the whole file
        a = self.sample_at(fs) - self.buffer_start
        b = min(self.sample_at(fe), self.received) - self.buffer_start
        audio = torch.from_numpy(self.buffer[a:b]).to(self.device)[None]  # (1, N)
        contact = self.model.audio_contact(audio, fe - fs)
        return (self.model.audio_features(audio, fe - fs)[:, s - fs: e - fs],
                None if contact is None else contact[:, s - fs: e - fs])

    def forget_before(self, frame: int) -> None:
        first = max(0, frame - self.context)
        first -= first % self.model.audio_encoder.frame_step  # what ``features`` will ask for
        drop = max(0, self.sample_at(first) - self.buffer_start)
        if drop:
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop

    def outputs(self, feats: torch.Tensor, visemes: torch.Tensor, audio_contact: torch.Tensor | None) -> np.ndarray:
        """(n, d) motion weights, with the contact probability as an extra last column when the
        model has a contact head (so windows blend both alike)."""
        out = self.model.motion_weights(visemes, self.style)[0]
        contact = self.model.contact(visemes, feats, audio_contact)
        if contact is not None:
            out = torch.cat([out, contact[0, :, None]], 1)
        return out.float().cpu().numpy()

    def decode(self, s: int, e: int, available: int, final: bool) -> None:
        raise NotImplementedError


class _Rolling(_Stream):
    """One continuous decode; the KV cache rolls past ``window`` frames."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache = None

    @torch.no_grad()
    def decode(self, s: int, e: int, available: int, final: bool) -> None:
        feats, audio_contact = self.features(s, e, available)  # (1, e-s, d), (1, e-s)
        if self.cache is None:
            self.cache = self.model.viseme_decoder.new_cache(1, feats, self.window)
        visemes = self.model.viseme_decoder.decode(feats, self.cache)
        self.done.append(self.outputs(feats, visemes, audio_contact))
        self.start = self.frames_done = e
        self.forget_before(e)


class _Crossfade(_Stream):
    """Windows restarted from the start token, overlapping by ``overlap`` frames, crossfaded."""

    def __init__(self, *args, overlap: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.overlap = overlap
        self.ramp = crossfade_ramp(overlap)
        self.tail: np.ndarray | None = None  # last `overlap` frames of the previous window

    @torch.no_grad()
    def decode(self, s: int, e: int, available: int, final: bool) -> None:
        feats, audio_contact = self.features(s, e, available)
        visemes = self.model.viseme_features(feats)  # fresh start token
        w = self.outputs(feats, visemes, audio_contact)  # (e-s, d [+ 1])
        O = self.overlap
        if self.tail is not None:
            k = min(O, len(w))
            r = self.ramp[:k, None]
            w[:k] = (1 - r) * self.tail[:k] + r * w[:k]
        keep = 0 if final or O == 0 else min(O, len(w))
        self.done.append(w[: len(w) - keep])
        self.tail = w[len(w) - keep:] if keep else None
        self.frames_done = s + len(w) - keep if not final else e
        self.start = e - O if not final else e
        self.forget_before(self.start)


def generate_stream(model: Imitator, blocks: Iterable[np.ndarray], style: Style = None,
                    *, method: str | None = None, window: int | None = None, overlap: int | None = None,
                    context: float = 1.0, progress: Progress | None = None,
                    total_frames: int | None = None) -> Decoded:
    """(T, d) motion weights (and the contact probability when the model has a contact head) for
    mono float32 blocks at the model's sample rate (a ``StyleProfile`` gives its style vector; its
    adapted basis is applied by ``to_animation``)."""
    cfg = model.config
    method = method or cfg.long_audio
    window = int(window or cfg.window)
    overlap = int(cfg.overlap if overlap is None else overlap)
    if method not in LONG_AUDIO_METHODS:
        raise ImitatorError(f"unknown long-audio method {method!r}; use one of {', '.join(LONG_AUDIO_METHODS)}")
    if window < 2 or not 0 <= overlap < window:
        raise ImitatorError(f"window {window} and overlap {overlap}: need window >= 2 and "
                            f"0 <= overlap < window")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        if isinstance(style, StyleProfile):
            style.check_shapes(model)
            style = style.style_tensor(model.style_embedding.weight)
        with torch.no_grad():
            style_vec = model.style_vector(MEAN_STYLE if style is None else style).to(device)
        # at least the encoder's own reach (its dilated context) plus the mel convolutions' (3 frames)
        reach = getattr(model.audio_encoder, "context_frames", 0) + 3
        args = (model, style_vec, window, max(int(math.ceil(context * cfg.fps)), reach), device)
        state = _Rolling(*args) if method == "rolling" else _Crossfade(*args, overlap=overlap)
        voice = VoiceLevels(cfg.sample_rate)
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            state.feed(block)
            voice.feed(block)
            if progress is not None:
                progress(state.frames_done, total_frames)
        out = state.finish()
        if progress is not None:
            progress(len(out), len(out))
        if model.closure is not None:
            return Decoded(out[:, :-1], out[:, -1], voice.levels())
        return Decoded(out, None, voice.levels())
    finally:
        model.train(was_training)


def to_animation(model: Imitator, weights: np.ndarray, template: np.ndarray | None = None,
                 fps: float | None = None, profile: StyleProfile | None = None,
                 contact: np.ndarray | None = None, levels: np.ndarray | None = None,
                 closures: list | None = None) -> Animation:
    """Exact ``Animation``: basis = the motion decoder's last layer (a profile's adapted one when it
    has one), lips closed where ``contact`` says so (closure-aware decoding; ``closures``, m/b/p
    intervals aligned with a transcript, pin it), at rest where the audio ``levels`` (``Decoded``)
    say nobody speaks (``rest.py``), optionally resampled to ``fps``."""
    V = model.config.num_vertices
    if profile is not None:
        basis, bias = profile.basis(model)  # (d, 3V), (3V,)
    else:
        basis, bias = (t.detach().float().cpu().numpy() for t in model.basis())
    template = model.template.detach().cpu().numpy() if template is None else np.asarray(template)
    if template.shape != (V, 3):
        raise ImitatorError(f"template has shape {template.shape}; this model animates a head with "
                            f"{V} vertices")
    basis = basis.reshape(-1, V, 3)
    if levels is not None and model.closure is not None:  # the lip centres are the closure's
        strength = rest_strength(speech_mask(levels), model.config.fps, len(weights))
        weights = rest_pose_weights(weights, strength, basis, bias.reshape(V, 3), template,
                                    model.closure.covariance.detach().cpu().numpy(),
                                    tuple(model.closure.options["centres"]))
    if contact is not None and model.closure is not None:  # after rest: a closure out of a pause wins
        if closures is not None:
            contact = transcript_contact(contact, closures, model.config.fps)
        weights = close_lips(weights, contact, basis, bias.reshape(V, 3), template,
                             model.closure.covariance.detach().cpu().numpy(), model.closure.options)
    anim = Animation(template=template.astype(np.float32), basis=basis,
                     weights=weights.astype(np.float32), bias=bias.reshape(V, 3), fps=model.config.fps)
    if fps is not None and abs(fps - anim.fps) > 1e-9:
        n = max(1, int(math.floor(anim.duration * fps + 1e-6)))
        anim = Animation(anim.template, anim.basis, anim.weights_at(np.arange(n) / fps).astype(np.float32),
                         anim.bias, float(fps))
    return anim


def generate(model: Imitator, audio: np.ndarray, sample_rate: int, style: Style = None,
             *, template: np.ndarray | None = None, fps: float | None = None, method: str | None = None,
             window: int | None = None, overlap: int | None = None, progress: Progress | None = None,
             block_seconds: float = 30.0, lip_closure: bool = True, rest: bool = True,
             closures: list | None = None) -> Animation:
    """Audio array (any rate, (N,) or (N, C)) -> Animation on the model's (or the given) template;
    ``lip_closure=False`` skips closure-aware decoding (the raw model output), ``rest=False`` the
    rest pose in silence; ``closures``: m/b/p intervals from a transcript (``core.transcript``)."""
    samples = prepare_audio(audio, sample_rate, model.config.sample_rate)
    sr = model.config.sample_rate
    step = max(1, int(block_seconds * sr))
    blocks = (samples[i: i + step] for i in range(0, max(len(samples), 1), step))
    total = num_frames_for(len(samples), sr, model.config.fps)
    decoded = generate_stream(model, blocks, style, method=method, window=window, overlap=overlap,
                              progress=progress, total_frames=total)
    return _finish(model, decoded, template, fps, style, lip_closure, rest, closures)


def generate_file(model: Imitator, path: str | os.PathLike, style: Style = None,
                  *, template: np.ndarray | None = None, fps: float | None = None, method: str | None = None,
                  window: int | None = None, overlap: int | None = None,
                  progress: Progress | None = None, lip_closure: bool = True, rest: bool = True,
                  closures: list | None = None) -> Animation:
    """An audio file of any length, streamed (memory: one window, whatever the duration)."""
    from ..audio import audio_info, stream_audio

    info = audio_info(path)
    sr = model.config.sample_rate
    total = num_frames_for(int(info.duration * sr), sr, model.config.fps)
    decoded = generate_stream(model, stream_audio(Path(path), sr), style, method=method, window=window,
                              overlap=overlap, progress=progress, total_frames=total)
    return _finish(model, decoded, template, fps, style, lip_closure, rest, closures)


def _finish(model: Imitator, decoded: Decoded, template, fps, style: Style, lip_closure: bool,
            rest: bool, closures: list | None) -> Animation:
    return to_animation(model, decoded.weights, template, fps, _profile(style),
                        decoded.contact if lip_closure else None, decoded.levels if rest else None,
                        closures if lip_closure else None)


def _profile(style: Style) -> StyleProfile | None:
    return style if isinstance(style, StyleProfile) else None
