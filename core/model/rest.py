"""Rest in silence: where nobody speaks the face returns smoothly to its rest pose.

The model was trained on speech with short pauses only; on silence it holds whatever mouth shape
the last sound left (on real recordings the lips stay ~4 mm apart in pauses). Two small parts fix
that at decode time, like closure-aware decoding (``closure.py``) and in the same motion space:

* a **voice-activity measure** from the audio itself, streamed block by block (a 150-4000 Hz
  band-pass, then the level of each 10 ms hop), so hour-long files need no more memory than the
  (T, 64) weights; speech is what lies clearly above the file's own noise floor, pauses shorter
  than ``MIN_PAUSE_S`` are speech (stop closures, breaths between words), blips shorter than
  ``MIN_SPEECH_S`` are not;
* a **rest correction** in the motion basis: in a pause the lip centres return to their rest
  positions (offset 0, the template's) along the most likely pose under the Gaussian of the model's
  own weights (the same conditioning as ``close_lips``, six constraints instead of three), with
  strength r_t in [0, 1] rising ``REST_DELAY_S`` after the speech ends over ``REST_RAMP_S`` and
  falling over ``ONSET_RAMP_S`` up to ``ONSET_AFTER_S`` after the next onset, so speech starts
  from rest. Everything stays in the model's motion space: exact bakes stay exact.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

__all__ = ["HOP_S", "VoiceLevels", "speech_mask", "rest_strength", "rest_pose_weights"]

HOP_S = 0.01  # level hop
BAND_HZ = (150.0, 4000.0)
MIN_PAUSE_S = 0.35  # shorter silences belong to the speech around them
MIN_SPEECH_S = 0.06  # shorter bursts are clicks, not speech
REST_DELAY_S = 0.04  # the lips start to settle this long after the speech ends ...
REST_RAMP_S = 0.16  # ... and are at rest this much later
ONSET_RAMP_S = 0.06  # before an onset the face leaves rest over this long ...
ONSET_AFTER_S = 0.06  # ... ending this long after the onset (both chosen on the val split)
MOUTH_RADIUS_M = 0.06  # the region brought to rest: lips, jaw, chin, cheeks (heads in metres)
QUIET_DBFS = -55.0  # a file whose loud parts stay below this holds no speech
MIN_RANGE_DB = 12.0  # nor one whose level never rises this far above its floor


class VoiceLevels:
    """Band-limited level (dBFS) per 10 ms hop of audio fed block by block."""

    def __init__(self, sample_rate: int):
        self.sr = int(sample_rate)
        self.hop = max(1, int(round(self.sr * HOP_S)))
        high = min(BAND_HZ[1], 0.45 * self.sr)
        self.sos = butter(2, [BAND_HZ[0], high], btype="bandpass", fs=self.sr, output="sos")
        self.zi = sosfilt_zi(self.sos) * 0.0
        self.pending = np.zeros(0, dtype=np.float64)
        self.blocks: list[np.ndarray] = []

    def feed(self, block: np.ndarray) -> None:
        x, self.zi = sosfilt(self.sos, np.asarray(block, dtype=np.float64).reshape(-1), zi=self.zi)
        x = np.concatenate([self.pending, x])
        n = len(x) // self.hop
        if n:
            power = np.mean(x[: n * self.hop].reshape(n, self.hop) ** 2, axis=1)
            self.blocks.append(10.0 * np.log10(power + 1e-12))
        self.pending = x[n * self.hop:]

    def levels(self) -> np.ndarray:
        """(N,) dBFS per hop so far (a last partial hop included)."""
        out = list(self.blocks)
        if self.pending.size:
            out.append(np.array([10.0 * np.log10(np.mean(self.pending ** 2) + 1e-12)]))
        return np.concatenate(out) if out else np.zeros(0)


def _runs(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, end, value) of the constant runs of a bool array."""
    if not mask.size:
        return []
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [mask.size]])
    return [(int(a), int(b), bool(mask[a])) for a, b in zip(starts, ends)]


def speech_mask(levels: np.ndarray) -> np.ndarray:
    """(N,) bool per hop: someone speaks. Relative to the file's own floor and peak (the 10th and
    97th percentile of the levels); all False for silence, steady noise or very quiet files."""
    levels = np.asarray(levels, dtype=np.float64)
    if not levels.size:
        return np.zeros(0, dtype=bool)
    floor, peak = np.percentile(levels, [10, 97])
    if peak < QUIET_DBFS or peak - floor < MIN_RANGE_DB:
        return np.zeros(levels.size, dtype=bool)
    mask = levels > max(floor + 0.4 * (peak - floor), peak - 35.0)
    min_pause, min_speech = int(round(MIN_PAUSE_S / HOP_S)), int(round(MIN_SPEECH_S / HOP_S))
    for a, b, on in _runs(mask):  # short bursts out first, then short pauses in
        if on and b - a < min_speech:
            mask[a:b] = False
    for a, b, on in _runs(mask):
        if not on and b - a < min_pause and a > 0 and b < mask.size:
            mask[a:b] = True
    return mask


def _ramp(x: np.ndarray) -> np.ndarray:
    """Raised cosine from 0 (x <= 0) to 1 (x >= 1)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def rest_strength(mask: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """(num_frames,) in [0, 1]: how far frame i (time i / fps) is pulled to rest, from the per-hop
    speech ``mask``. Leading and trailing silence are at rest from the first / to the last frame."""
    t = np.arange(num_frames) / float(fps)
    r = np.zeros(num_frames)
    end = mask.size * HOP_S
    for a, b, on in _runs(np.asarray(mask, dtype=bool)):
        if on:
            continue
        a_s, b_s = a * HOP_S, b * HOP_S
        lo = int(math.floor(a_s * fps))
        hi = min(num_frames, int(math.ceil((b_s + ONSET_AFTER_S) * fps)) + 1)
        if lo >= hi:
            continue
        tt = t[lo:hi]
        rise = np.ones_like(tt) if a == 0 else _ramp((tt - a_s - REST_DELAY_S) / REST_RAMP_S)
        fall = (np.ones_like(tt) if b_s >= end - 1e-9 else
                _ramp((b_s + ONSET_AFTER_S - tt) / (ONSET_RAMP_S + ONSET_AFTER_S)))
        r[lo:hi] = np.maximum(r[lo:hi], np.minimum(rise, fall))
    return r


def rest_pose_weights(weights: np.ndarray, strength: np.ndarray, basis: np.ndarray, bias: np.ndarray,
                      template: np.ndarray, covariance: np.ndarray | None,
                      centres: tuple[int, int]) -> np.ndarray:
    """(T, d) weights moved toward the rest pose by ``strength`` (T,): the mouth region (vertices
    of ``template`` within ``MOUTH_RADIUS_M`` of the lip centres' midpoint: lips, jaw, chin, cheeks)
    goes to offset 0 in the least-squares sense; directions that leave it alone (eyes, brows) keep
    the model's motion, under the Gaussian of its weights (``covariance``) as a light prior.

    ``basis`` (d, V, 3) and ``bias`` (V, 3): offsets = weights @ basis + bias."""
    s = np.asarray(strength, dtype=np.float64)
    if not s.any():
        return weights
    mouth = 0.5 * (np.asarray(template[centres[0]], np.float64) + template[centres[1]])
    region = np.flatnonzero(np.linalg.norm(np.asarray(template, np.float64) - mouth, axis=1)
                            < MOUTH_RADIUS_M)
    d = basis.shape[0]
    A = basis[:, region].reshape(d, -1).T.astype(np.float64)  # (3R, d): region offsets per weight
    b0 = bias[region].reshape(-1).astype(np.float64)  # (3R,) region offsets at w = 0
    S = np.eye(d) if covariance is None else np.asarray(covariance, dtype=np.float64)
    P = np.linalg.inv(S + 1e-6 * max(np.trace(S) / d, 1e-30) * np.eye(d))  # prior precision
    AtA = A.T @ A
    eps = 1e-6 * np.trace(AtA) / max(np.trace(P), 1e-30)
    # argmin |A w' + b0|^2 + eps (w' - w)^T P (w' - w), for every frame at once
    W = weights.astype(np.float64)
    rest = np.linalg.solve(AtA + eps * P, (eps * P @ W.T) - (A.T @ b0)[:, None]).T  # (T, d)
    return (W + s[:, None] * (rest - W)).astype(weights.dtype)
