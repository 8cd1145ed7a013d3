"""Speaking styles of synthetic subjects: a few interpretable parameters sampled from a seed.

A style says *how* a subject articulates (how far the jaw drops, how much the lips round, how
early they anticipate the next sound...), independent of the voice that speaks: the corpus draws
voices per utterance, so a model has to learn the style from the motion, as Imitator does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

# name -> (low, high) of the uniform distribution each parameter is drawn from
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "jaw": (0.55, 1.3),           # jaw opening amplitude (x the phone targets)
    "rounding": (0.45, 1.4),      # lip rounding / funnel strength on w, uw, ow, r, sh ...
    "protrusion": (0.35, 1.4),    # lip protrusion (pucker) strength
    "width": (0.15, 1.0),         # mouth widening (stretch) on spread vowels
    "smile_bias": (0.0, 0.35),    # constant smile, even at rest
    "smile": (0.0, 0.6),          # extra smile on spread vowels
    "asymmetry": (-0.35, 0.35),   # > 0: the subject's left side moves more, mouth pulled left
    "lead": (0.55, 1.8),          # anticipation: scale of the dominance time before a phone
    "lag": (0.55, 1.8),           # carry-over: scale of the dominance time after a phone
    "pressure": (0.1, 0.9),       # lip press and roll during m/b/p closures
    "lower_lip": (0.0, 0.6),      # lower lip drop on open vowels (shows the lower teeth)
    "upper_lip": (0.0, 0.45),     # upper lip raise while speaking (shows the upper teeth)
    "energy": (0.75, 1.25),       # overall articulation and brow activity
    "brow": (0.1, 0.7),           # brow raise amplitude on emphasised syllables
    "blink_rate": (0.15, 0.45),   # blinks per second
}


@dataclass(frozen=True)
class Style:
    """One subject's style parameters (see STYLE_RANGES for meaning and range)."""

    jaw: float = 1.0
    rounding: float = 1.0
    protrusion: float = 1.0
    width: float = 0.5
    smile_bias: float = 0.1
    smile: float = 0.3
    asymmetry: float = 0.0
    lead: float = 1.0
    lag: float = 1.0
    pressure: float = 0.5
    lower_lip: float = 0.3
    upper_lip: float = 0.2
    energy: float = 1.0
    brow: float = 0.3
    blink_rate: float = 0.3

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Style:
        names = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in d.items() if k in names})


def sample_style(rng: np.random.Generator) -> Style:
    """A style with each parameter uniform in its STYLE_RANGES interval (6 decimals, as saved)."""
    return Style(**{k: round(float(rng.uniform(lo, hi)), 6)
                    for k, (lo, hi) in STYLE_RANGES.items()})


# ---------------------------------------------------------------------------------------------
# How much styles matter: lip vertex error between two renditions


def lip_error_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T,) max over lip vertices of the L2 distance, for (T, L, 3) lip vertex tracks."""
    return np.linalg.norm(a - b, axis=2).max(axis=1)


def lip_vertex_error(a: np.ndarray, b: np.ndarray) -> float:
    """Lip vertex error (same units as the input): per-frame max L2 over lip vertices, mean
    over frames, for two (T, L, 3) tracks of the same timing."""
    if a.shape != b.shape:
        raise ValueError(f"lip tracks of different shapes {a.shape} and {b.shape}; use dtw")
    return float(lip_error_per_frame(a, b).mean())


def _max_distance_matrix(a: np.ndarray, b: np.ndarray, block: int = 16) -> np.ndarray:
    """(T1, T2) max over vertices of |a[i] - b[j]| for (T1, L, 3) and (T2, L, 3), in row blocks
    (the full (T1, T2, L, 3) difference would take gigabytes)."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    out = np.empty((len(a), len(b)))
    for i in range(0, len(a), block):
        d = a32[i:i + block, None] - b32[None]  # (block, T2, L, 3)
        out[i:i + block] = np.sqrt(np.einsum("ijkl,ijkl->ijk", d, d).max(axis=2))
    return out


def dtw_lip_vertex_error(a: np.ndarray, b: np.ndarray) -> float:
    """Lip vertex error after dynamic time warping (for renditions of different timing): the
    mean over the optimal alignment path of the per-pair max L2 over lip vertices."""
    cost = _max_distance_matrix(a, b)  # (T1, T2)
    t1, t2 = cost.shape
    acc = np.empty_like(cost)
    acc[0] = np.cumsum(cost[0])
    for i in range(1, t1):
        # acc[i, j] = cost[i, j] + min(acc[i-1, j], acc[i-1, j-1], acc[i, j-1]); the last term
        # is a running minimum: acc[i, j] = S[j] + min_{k<=j} (step[k] - S[k]), S = cumsum.
        diag = np.concatenate([[np.inf], acc[i - 1, :-1]])
        step = cost[i] + np.minimum(acc[i - 1], diag)
        s = np.cumsum(cost[i])
        acc[i] = s + np.minimum.accumulate(step - s)
    i, j, total, n = t1 - 1, t2 - 1, cost[-1, -1], 1
    while i > 0 or j > 0:  # walk the path back to count its length
        moves = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((m for m in moves if m[0] >= 0 and m[1] >= 0), key=lambda m: acc[m])
        total, n = total + cost[i, j], n + 1
    return float(total / n)
