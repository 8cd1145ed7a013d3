"""Closure-aware decoding: lips that meet on m, b and p.

A regression model trained with squared errors hedges: where the lips should press together it
often leaves them a few millimetres apart (the lip contact loss narrows that, it does not close it).
Two small parts close them without touching the rest of the model:

* a **contact head** on the style-agnostic viseme features and the audio features (closure is
  content, not style): p_t = sigmoid(MLP([viseme_t, audio_t])), fitted on the corpus' m/b/p frames
  with the rest of the model frozen (``python -m core fit-closure``, ``core.train.closure_fit``); optionally joined (maximum)
  by a small **audio contact net** on the log-mel frames (residual dilated convolutions, +-170 ms),
  which hears closures the motion features miss, e.g. a stop after a pause;
* a **lip-closing correction** in the motion basis. Offsets are ``weights @ basis + bias``, so the
  vector between the upper and the lower lip centre is affine in the weights, g(w) = A w + g0.
  Where the contact says "closed", the weights move to the most likely pose with g = 0 under a Gaussian
  fitted to the model's own weights on the corpus (mean-free conditioning):
  w' = w - s_t * S A^T (A S A^T)^-1 g(w), S their covariance, s_t in [0, 1] the closing strength.
  The result stays in the model's motion space, so exact bakes stay exact, and only frames the
  contact marks move.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImitatorError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "centres": None,  # (upper lip centre, lower lip centre) vertex indices
    "hidden": 32,  # contact head width
    "low": 0.3,  # contact probability where closing starts ...
    "high": 0.6,  # ... and where the lips fully meet
    "smooth": 1.0,  # Gaussian sigma (frames) on the closing strength, so lips do not snap
    "audio_net": False,  # also the audio contact net (log-mel encoders only)
    "audio_channels": 64,
}
AUDIO_NET_DILATIONS = (1, 2, 4, 8)


def closure_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in and checked; a one-line error for settings the model cannot use."""
    opts = {**DEFAULTS, **(options or {})}
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise ImitatorError(f"lip_closure: unknown setting(s) {', '.join(unknown)}")
    centres = opts["centres"]
    if not (isinstance(centres, (list, tuple)) and len(centres) == 2 and all(int(c) >= 0 for c in centres)):
        raise ImitatorError("lip_closure: 'centres' must be two vertex indices (upper, lower lip centre)")
    if not 0 <= float(opts["low"]) < float(opts["high"]) <= 1:
        raise ImitatorError(f"lip_closure: need 0 <= low < high <= 1, got {opts['low']}, {opts['high']}")
    opts["centres"] = [int(c) for c in centres]
    return opts


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, K)
        return x + F.gelu(self.conv(self.norm(x)))


class AudioContactNet(nn.Module):
    """(B, K, n_mels + 1) log-mel frames -> (B, K) closed-lip logits, per 10 ms frame."""

    def __init__(self, mel_dim: int, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(mel_dim))  # input standardisation (fitted)
        self.register_buffer("std", torch.ones(mel_dim))
        self.input = nn.Conv1d(mel_dim, channels, 5, padding=2)
        self.blocks = nn.ModuleList(_Residual(channels, d) for d in AUDIO_NET_DILATIONS)
        self.dropout = nn.Dropout(0.2)
        self.output = nn.Conv1d(channels, 1, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.input(((mel - self.mean) / self.std).transpose(1, 2)))
        for block in self.blocks:
            x = block(x)
        return self.output(self.dropout(x))[:, 0]


class LipClosure(nn.Module):
    """The contact head, the optional audio contact net and the weight covariance S (a buffer
    saved with the model)."""

    def __init__(self, options: dict[str, Any], feature_dim: int, mel_dim: int | None = None):
        super().__init__()
        self.options = closure_options(options)
        hidden = int(self.options["hidden"])
        self.head = nn.Sequential(nn.Linear(2 * feature_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.register_buffer("covariance", torch.eye(feature_dim))  # (d, d)
        self.audio_net = None
        if self.options["audio_net"]:
            if not mel_dim:
                raise ImitatorError("lip_closure: the audio contact net needs the log-mel encoder")
            self.audio_net = AudioContactNet(mel_dim, int(self.options["audio_channels"]))

    def logits(self, visemes: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """(B, T, d) + (B, T, d) -> (B, T) contact logits."""
        return self.head(torch.cat([visemes, audio_features], -1))[..., 0]

    def contact(self, visemes: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """(B, T) probability that the lips are closed at each frame."""
        return torch.sigmoid(self.logits(visemes, audio_features))


def closing_strength(contact: np.ndarray, low: float, high: float, smooth: float) -> np.ndarray:
    """(T,) in [0, 1]: 0 below ``low``, 1 above ``high``, linear between; then smoothed in time
    (the maximum of the raw and the smoothed value, so a one-frame closure still closes fully)."""
    s = np.clip((np.asarray(contact, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    if smooth > 0 and len(s) > 1:
        r = int(math.ceil(3 * smooth))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / smooth) ** 2)
        s = np.maximum(s, np.convolve(np.pad(s, r, mode="edge"), k / k.sum(), mode="valid"))
    return s


TRANSCRIPT_REACH_S = 0.1  # with a transcript, contact further than this from its m/b/p is dropped


def transcript_contact(contact: np.ndarray, intervals: list, fps: float) -> np.ndarray:
    """(T,) contact pinned by m/b/p ``intervals`` aligned with a transcript: 1 on their frames, the
    model's own contact kept within ``TRANSCRIPT_REACH_S`` of them (the lips may meet a little
    early or late), 0 elsewhere (no m/b/p is said there)."""
    from ..bilabial import interval_frames

    contact = np.asarray(contact, dtype=np.float64)
    pinned = np.zeros_like(contact)
    near = np.zeros(len(contact), dtype=bool)
    reach = int(round(TRANSCRIPT_REACH_S * fps))
    for iv in intervals:
        frames = interval_frames(iv, fps, len(contact))
        if frames.size:
            pinned[frames] = 1.0
            near[max(0, frames[0] - reach): frames[-1] + reach + 1] = True
    return np.maximum(pinned, np.where(near, contact, 0.0))


def close_lips(weights: np.ndarray, contact: np.ndarray, basis: np.ndarray, bias: np.ndarray,
               template: np.ndarray, covariance: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """(T, d) weights moved so the lip centres meet where ``contact`` (T,) says closed.

    ``basis`` (d, V, 3), ``bias`` and ``template`` (V, 3): the animation these weights drive."""
    u, l = options["centres"]
    A = (basis[:, u] - basis[:, l]).T.astype(np.float64)  # (3, d): gap change per weight
    g0 = (template[u] + bias[u] - template[l] - bias[l]).astype(np.float64)  # (3,) gap at w = 0
    S = np.asarray(covariance, dtype=np.float64)
    M = A @ S @ A.T
    M += 1e-9 * max(np.trace(M), 1e-30) * np.eye(3)  # a direction the model never moves stays put
    K = S @ A.T @ np.linalg.inv(M)  # (d, 3)
    gap = weights.astype(np.float64) @ A.T + g0  # (T, 3)
    s = closing_strength(contact, float(options["low"]), float(options["high"]), float(options["smooth"]))
    return (weights - (s[:, None] * gap) @ K.T).astype(weights.dtype)


# --------------------------------------------------------------------------- fitting
