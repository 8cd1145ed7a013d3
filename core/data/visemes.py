"""Phones -> ARKit weight curves: articulatory targets blended with dominance functions.

Coarticulation follows Cohen & Massaro (1993): every phone has, per articulatory channel, a
target and a dominance that is full over the phone's core and decays exponentially before it
(anticipation, time constant ``lead``) and after it (carry-over, ``lag``); a channel's value at
time t is the dominance-weighted mean of all targets. Phones that do not care about a channel
(k for the lips) have low dominance there, so lip rounding of "w" spreads over the consonants
around it, while m/b/p dominate lip closure.

Channels are mapped to the 52 ARKit shapes with a subject's Style. Lip closure is then *solved*:
vertex positions are linear in the weights, so the gap between the upper and lower lip centre
vertices is ``d0 + W @ delta``; at every m/b/p frame ``mouthClose`` is set to the value that
cancels it (the ARKit meaning of mouthClose: lips together while the jaw is open), elsewhere it
follows the closure channel. Non-speech motion: blinks, brow raises on emphasised vowels, idle
breathing (jaw and nostrils); all of it vertex-only (no rigid head motion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImitatorError
from ..faces.default_head import ARKIT_SHAPE_NAMES
from ..faces.head import Head
from . import phones as ph
from .styles import Style
from .tts import Phone

ARKIT = {name: i for i, name in enumerate(ARKIT_SHAPE_NAMES)}
CHANNELS = ("jaw", "close", "round", "protrude", "spread", "labiodental", "tongue")
JAW, CLOSE, ROUND, PROTRUDE, SPREAD, LABIODENTAL, TONGUE = range(len(CHANNELS))

# Targets per phone: (jaw, close, round, protrude, spread, labiodental, tongue), 0..1.
_V = {
    "AA": (0.75, 0, 0.0, 0.0, 0.10, 0, 0), "AE": (0.60, 0, 0.0, 0.0, 0.45, 0, 0),
    "AH": (0.50, 0, 0.0, 0.0, 0.10, 0, 0), "AO": (0.60, 0, 0.60, 0.25, 0.0, 0, 0),
    "EH": (0.45, 0, 0.0, 0.0, 0.35, 0, 0), "ER": (0.30, 0, 0.30, 0.35, 0.0, 0, 0),
    "IH": (0.25, 0, 0.0, 0.0, 0.50, 0, 0), "IY": (0.15, 0, 0.0, 0.0, 0.75, 0, 0),
    "UH": (0.30, 0, 0.45, 0.50, 0.0, 0, 0), "UW": (0.20, 0, 0.55, 0.90, 0.0, 0, 0),
}
DIPHTHONGS = {"AW": ("AA", "UH"), "AY": ("AA", "IH"), "EY": ("EH", "IY"), "OW": ("AO", "UW"),
              "OY": ("AO", "IY")}
_C = {
    **{p: (0.06, 1, 0, 0, 0, 0, 0) for p in ph.BILABIALS},
    **{p: (0.12, 0, 0, 0, 0, 1, 0) for p in ("F", "V")},
    **{p: (0.18, 0, 0, 0, 0, 0, 0.6) for p in ("TH", "DH")},
    **{p: (0.08, 0, 0, 0, 0.35, 0, 0) for p in ("S", "Z")},
    **{p: (0.12, 0, 0.40, 0.60, 0, 0, 0) for p in ("SH", "ZH", "CH", "JH")},
    **{p: (0.15, 0, 0, 0, 0.15, 0, 0) for p in ("T", "D", "N")},
    **{p: (0.20, 0, 0, 0, 0.05, 0, 0) for p in ("K", "G", "NG")},
    "L": (0.25, 0, 0, 0, 0.10, 0, 0.1), "R": (0.20, 0, 0.25, 0.45, 0, 0, 0),
    "W": (0.12, 0, 0.60, 1.0, 0, 0, 0), "Y": (0.12, 0, 0, 0, 0.50, 0, 0),
    "HH": (0.35, 0, 0, 0, 0, 0, 0), ph.SILENCE: (0.0, 0, 0, 0, 0, 0, 0),
}
TARGETS = {**_V, **_C}

# Dominance magnitude per phone class and channel (same channel order).
_DOM = {
    "spread_vowel": (1.0, 0.4, 0.7, 0.7, 1.0, 0.4, 0.4),
    "round_vowel": (1.0, 0.4, 1.0, 1.0, 0.8, 0.4, 0.4),
    "open_vowel": (1.0, 0.4, 0.5, 0.5, 0.5, 0.4, 0.4),
    "bilabial": (1.5, 1.0, 0.15, 0.15, 0.15, 0.5, 0.3),
    "labiodental": (0.7, 0.6, 0.6, 0.6, 0.3, 1.0, 0.3),
    "dental": (0.7, 0.5, 0.15, 0.15, 0.15, 0.5, 1.0),
    "rounded_consonant": (0.7, 0.5, 1.0, 1.0, 0.7, 0.5, 0.4),
    "sibilant": (0.9, 0.5, 0.15, 0.15, 0.4, 0.5, 0.4),
    "consonant": (0.5, 0.5, 0.1, 0.1, 0.2, 0.5, 0.4),
    "glide": (0.5, 0.5, 0.1, 0.1, 0.8, 0.5, 0.4),
    "aspirate": (0.05, 0.5, 0.1, 0.1, 0.1, 0.5, 0.4),
    "silence": (0.4, 0.3, 0.3, 0.3, 0.3, 0.5, 0.5),
}
_CLASS = {
    **{p: "spread_vowel" for p in ("AE", "EH", "IH", "IY")},
    **{p: "round_vowel" for p in ("AO", "ER", "UH", "UW")},
    **{p: "open_vowel" for p in ("AA", "AH")},
    **{p: "bilabial" for p in ph.BILABIALS}, "F": "labiodental", "V": "labiodental",
    "TH": "dental", "DH": "dental", "S": "sibilant", "Z": "sibilant",
    **{p: "rounded_consonant" for p in ("SH", "ZH", "CH", "JH", "R", "W")},
    "Y": "glide", "HH": "aspirate", ph.SILENCE: "silence",
}


@dataclass(frozen=True)
class MotionConfig:
    """Frame rate and coarticulation time constants (seconds, before a subject's lead/lag)."""

    fps: float = 60.0
    core: float = 0.5  # middle fraction of a phone where its dominance is full
    lead_s: tuple[float, ...] = (0.05, 0.025, 0.12, 0.12, 0.06, 0.04, 0.04)  # per channel
    lag_s: tuple[float, ...] = (0.04, 0.02, 0.08, 0.08, 0.05, 0.03, 0.03)
    vowel_jitter: float = 0.12  # per-vowel random jaw emphasis (sd, relative): renditions differ
    energy_jitter: float = 0.05  # per-utterance random articulation energy (sd, relative)


def num_frames(duration: float, fps: float) -> int:
    return max(1, int(round(duration * fps)))


def bilabial_frames(phones: list[Phone], num: int, fps: float) -> np.ndarray:
    """(T,) bool: frames whose time f/fps lies in an m/b/p phone; a phone shorter than a frame
    gets the frame nearest its middle, so every m/b/p has at least one closed frame."""
    t = np.arange(num) / fps
    mask = np.zeros(num, bool)
    for name, start, end in phones:
        if name in ph.BILABIALS:
            inside = (t >= start) & (t < end)
            if not inside.any():
                inside[min(num - 1, int(round(0.5 * (start + end) * fps)))] = True
            mask |= inside
    return mask


# ---------------------------------------------------------------------------------------------
# Articulation


def _segments(phones: list[Phone]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dominance segments: diphthongs split in two. Returns starts (S,), ends (S,), targets
    (S, C), dominance magnitudes (S, C) and vowel flags folded into a 4th array (S,) bool."""
    starts, ends, targets, doms, vowel = [], [], [], [], []
    for name, s, e in phones:
        parts = DIPHTHONGS.get(name, (name,))
        cls = _CLASS.get(parts[0], "consonant")
        step = (e - s) / len(parts)
        for k, part in enumerate(parts):
            starts.append(s + k * step)
            ends.append(s + (k + 1) * step)
            targets.append(TARGETS.get(part, TARGETS["AH"]))
            doms.append(_DOM[cls])
            vowel.append(name in ph.VOWELS)
    return (np.array(starts), np.array(ends), np.array(targets, float), np.array(doms, float),
            np.array(vowel, bool))


def articulation(phones: list[Phone], num: int, style: Style, cfg: MotionConfig,
                 rng: np.random.Generator) -> np.ndarray:
    """(T, C) channel curves in [0, 1] from dominance-weighted targets."""
    s0, s1, targets, dom, vowel = _segments(phones)  # (S,), (S,), (S, C), (S, C), (S,)
    targets = targets.copy()
    targets[vowel, JAW] *= np.clip(1 + cfg.vowel_jitter * rng.standard_normal(vowel.sum()),
                                   0.6, 1.4)
    pad = 0.5 * (1 - cfg.core) * (s1 - s0)
    c0, c1 = s0 + pad, s1 - pad  # core of each segment, (S,)
    t = np.arange(num)[:, None] / cfg.fps  # (T, 1)
    before = np.maximum(c0[None] - t, 0)  # (T, S): time until the core starts
    after = np.maximum(t - c1[None], 0)  # (T, S): time since the core ended
    lead = np.asarray(cfg.lead_s) * style.lead  # (C,)
    lag = np.asarray(cfg.lag_s) * style.lag
    # (T, S, C) dominance: full inside the core, exponential decay outside.
    d = dom[None] * np.exp(-before[..., None] / lead - after[..., None] / lag)
    curves = (d * targets[None]).sum(1) / np.maximum(d.sum(1), 1e-12)  # (T, C)
    return np.clip(curves, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Lip contact


# Keys the closure solver may add to: the lips meet along mouthClose (or part along jawOpen),
# the rolls move them front/back, jawLeft/Right sideways (asymmetric styles shear the lips).
CLOSURE_KEYS = ("mouthClose", "jawOpen", "mouthRollLower", "mouthRollUpper", "jawLeft",
                "jawRight")
CLOSURE_ACTIVE_SETS = [(first, *rolls, *side) for first in (0, 1)
                       for rolls in ((), (2,), (3,), (2, 3)) for side in ((), (4,), (5,))]
MAX_CLOSURE_EXTRA = 0.6  # at most this much extra jaw, roll or sideways jaw to meet the lips


@dataclass(frozen=True)
class LipContact:
    """Gap between the upper and lower lip centre vertices as a linear function of the weights."""

    rest: np.ndarray  # (3,) upper - lower at rest, metres
    delta: np.ndarray  # (52, 3) how each ARKit weight moves upper - lower

    @classmethod
    def from_head(cls, head: Head) -> LipContact:
        u, lo = lip_centres(head)
        delta = np.zeros((len(ARKIT_SHAPE_NAMES), 3))
        for name, k in ARKIT.items():
            if name in head.shape_keys:
                off = np.asarray(head.shape_keys[name], np.float64)
                delta[k] = off[u] - off[lo]
        if not np.any(delta[ARKIT["mouthClose"]]):
            raise ImitatorError(f"Head '{head.name}' has no mouthClose shape key that moves the "
                                f"lips; the corpus needs the ARKit mouth shapes.")
        rest = head.vertices[u].astype(np.float64) - head.vertices[lo]
        return cls(rest, delta)

    def gap(self, weights: np.ndarray) -> np.ndarray:
        """(T,) distance in metres between the lip centres for (T, 52) weights."""
        return np.linalg.norm(self.rest + weights.astype(np.float64) @ self.delta, axis=1)

    def closing_weights(self, weights: np.ndarray) -> np.ndarray:
        """(T, 6) additions to CLOSURE_KEYS (all >= 0) that best cancel the lip gap.

        mouthClose brings the lips together along one direction (jawOpen, nearly its opposite,
        parts lips that a strong press or pucker pushed through each other); the lip rolls and
        the sideways jaw move them across it, so the gap closes whatever else the lips do.
        ``weights`` must not hold mouthClose yet. The bounded least-squares problem is solved by
        trying each set of active keys.
        """
        keys = [ARKIT[k] for k in CLOSURE_KEYS]
        g = self.rest + weights.astype(np.float64) @ self.delta  # (T, 3) gap without mouthClose
        best = np.zeros((len(g), len(keys)))
        best_res = np.linalg.norm(g, axis=1)
        for active in CLOSURE_ACTIVE_SETS:
            a = self.delta[[keys[i] for i in active]].T  # (3, k)
            x = -(np.linalg.pinv(a) @ g.T).T  # (T, k) least squares
            res = np.linalg.norm(g + x @ a.T, axis=1)
            limit = np.where(np.array(active) == 0, 1.0, MAX_CLOSURE_EXTRA)  # (k,)
            ok = ((x >= 0) & (x <= limit)).all(1)
            better = ok & (res < best_res - 1e-12)
            sol = np.zeros_like(best)
            sol[:, list(active)] = x
            best[better], best_res[better] = sol[better], res[better]
        return best


def lip_centres(head: Head) -> tuple[int, int]:
    """Indices of the upper and lower lip centre vertices (regions, or the closest midline pair
    of the upper_lip / lower_lip regions)."""
    r = head.regions
    if "upper_lip_centre" in r and "lower_lip_centre" in r:
        return int(r["upper_lip_centre"][0]), int(r["lower_lip_centre"][0])
    if "upper_lip" not in r or "lower_lip" not in r:
        raise ImitatorError(f"Head '{head.name}' has no lip regions (upper_lip, lower_lip); the "
                            f"corpus needs them to close the lips on m/b/p.")
    up, lo = np.asarray(r["upper_lip"]), np.asarray(r["lower_lip"])
    x = head.vertices[:, 0]
    up = up[np.argsort(np.abs(x[up]))[:8]]
    lo = lo[np.argsort(np.abs(x[lo]))[:8]]
    d = np.linalg.norm(head.vertices[up][:, None] - head.vertices[lo][None], axis=2)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return int(up[i]), int(lo[j])


# ---------------------------------------------------------------------------------------------
# Weights


def _bump(t: np.ndarray, centres: np.ndarray, rise: float, fall: float) -> np.ndarray:
    """(T,) sum of smooth bumps (rise seconds up, fall seconds down) at ``centres``, max 1."""
    dt = t[:, None] - centres[None]  # (T, K)
    up = np.clip(1 + dt / rise, 0, 1) * (dt < 0)
    down = np.clip(1 - dt / fall, 0, 1) * (dt >= 0)
    x = up + down
    return np.clip((x * x * (3 - 2 * x)).sum(1), 0, 1) if len(centres) else np.zeros(len(t))


def _set(w: np.ndarray, name: str, value: np.ndarray | float) -> None:
    w[:, ARKIT[name]] = value


def _pair(w: np.ndarray, stem: str, value: np.ndarray | float, asym: float) -> None:
    """Set ``stemLeft`` / ``stemRight`` with the subject's left/right imbalance."""
    _set(w, f"{stem}Left", value * (1 + asym))
    _set(w, f"{stem}Right", value * (1 - asym))


def arkit_weights(phones: list[Phone], duration: float, style: Style, contact: LipContact,
                  rng: np.random.Generator, cfg: MotionConfig = MotionConfig()) -> np.ndarray:
    """(T, 52) ARKit weights at cfg.fps, lips closed (gap solved) at every m/b/p frame."""
    T = num_frames(duration, cfg.fps)
    t = np.arange(T) / cfg.fps
    a = articulation(phones, T, style, cfg, rng)  # (T, C)
    e = style.energy * float(np.clip(1 + cfg.energy_jitter * rng.standard_normal(), 0.8, 1.2))
    asym = style.asymmetry
    speaking = _activity(phones, t)  # (T,) 1 while speaking, 0 in pauses, smooth
    w = np.zeros((T, len(ARKIT_SHAPE_NAMES)))

    # Speech.
    jaw = np.clip(style.jaw * e * a[:, JAW], 0, 0.9)
    _set(w, "jawOpen", jaw)
    _set(w, "mouthFunnel", np.clip(style.rounding * e * a[:, ROUND], 0, 1))
    _set(w, "mouthPucker", np.clip(style.protrusion * e * a[:, PROTRUDE], 0, 1))
    _pair(w, "mouthStretch", np.clip(style.width * e * a[:, SPREAD], 0, 1), asym)
    _pair(w, "mouthSmile", np.clip(style.smile_bias + style.smile * a[:, SPREAD], 0, 1), asym)
    _pair(w, "mouthLowerDown", np.clip(style.lower_lip * e * (a[:, JAW] - 0.25) / 0.5, 0, 1),
          asym)
    lab = a[:, LABIODENTAL]  # f/v: lower lip under the upper teeth
    _pair(w, "mouthUpperUp", np.clip(style.upper_lip * speaking * (1 - lab) + 0.3 * lab, 0, 1),
          asym)
    _set(w, "tongueOut", 0.25 * a[:, TONGUE])
    _set(w, "mouthLeft", max(asym, 0) * 0.5 * speaking)
    _set(w, "mouthRight", max(-asym, 0) * 0.5 * speaking)
    # Closure pressure: press, plus a balanced roll (the upper roll's inward pull is ~2.3x the
    # lower's, so 0.43 keeps the two lips' centres level).
    close = a[:, CLOSE]
    _pair(w, "mouthPress", style.pressure * close, asym * 0.5)
    _set(w, "mouthRollLower", np.clip(lab + 0.5 * style.pressure * close, 0, 1))
    _set(w, "mouthRollUpper", 0.43 * 0.5 * style.pressure * close)

    # Non-speech: breathing, blinks, brows.
    breath = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * t + rng.uniform(0, 6.3))
    w[:, ARKIT["jawOpen"]] += 0.02 * breath * (1 - speaking)
    _pair(w, "noseSneer", 0.06 * breath, 0.0)
    blinks = _blink_times(duration, style.blink_rate, rng)
    blink = _bump(t, blinks, 0.07, 0.16)
    _set(w, "eyeBlinkLeft", blink * (1 + 0.05 * asym))
    _set(w, "eyeBlinkRight", blink * (1 - 0.05 * asym))
    brow = style.brow * e * _bump(t, _emphasis_times(phones, rng), 0.15, 0.35)
    _set(w, "browInnerUp", brow)
    _pair(w, "browOuterUp", 0.7 * brow, asym)

    # Lip closure: follow the closure channel, full at every m/b/p frame.
    w = np.clip(w, 0, 1)
    need = contact.closing_weights(w)  # (T, 6)
    closing = np.where(bilabial_frames(phones, T, cfg.fps), 1.0, np.clip(close, 0, 1) ** 2)
    keys = [ARKIT[k] for k in CLOSURE_KEYS]
    w[:, keys] = np.clip(w[:, keys] + closing[:, None] * need, 0, 1)
    return w.astype(np.float32)


def _activity(phones: list[Phone], t: np.ndarray, ramp: float = 0.12) -> np.ndarray:
    """(T,) smooth 0..1 indicator of speech (not SIL), ramping over ``ramp`` seconds."""
    x = np.zeros(len(t))
    for name, s, e in phones:
        if name != ph.SILENCE:
            x = np.maximum(x, np.clip(np.minimum(t - s, e - t) / ramp + 0.5, 0, 1))
    return x * x * (3 - 2 * x)


def _blink_times(duration: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Blink centres (s): a renewal process with at least 0.8 s between blinks."""
    gaps = 0.8 + rng.exponential(max(1 / rate - 0.8, 0.2), size=int(duration * rate * 3) + 3)
    times = rng.uniform(-1, 1) + np.cumsum(gaps)
    return times[(times > 0.1) & (times < duration - 0.1)]


def _emphasis_times(phones: list[Phone], rng: np.random.Generator) -> np.ndarray:
    """Centres (s) of 1-2 emphasised vowels per phrase: the longer a vowel, the likelier."""
    vowels = np.array([(0.5 * (s + e), e - s) for n, s, e in phones if n in ph.VOWELS])
    if len(vowels) == 0:
        return np.zeros(0)
    k = min(len(vowels), 1 + int(rng.integers(0, 2)) + int(vowels[:, 1].sum() > 1.0))
    p = vowels[:, 1] ** 2 / (vowels[:, 1] ** 2).sum()
    return np.sort(vowels[rng.choice(len(vowels), size=k, replace=False, p=p), 0])


# ---------------------------------------------------------------------------------------------
# Vertices


def shape_key_basis(head: Head) -> np.ndarray:
    """(52, V*3) float32 ARKit offsets in ARKIT_SHAPE_NAMES order (zeros for missing keys)."""
    basis = np.zeros((len(ARKIT_SHAPE_NAMES), head.num_vertices * 3), np.float32)
    for name, k in ARKIT.items():
        if name in head.shape_keys:
            basis[k] = np.asarray(head.shape_keys[name], np.float32).reshape(-1)
    return basis


def weights_to_vertices(weights: np.ndarray, template: np.ndarray,
                        basis: np.ndarray) -> np.ndarray:
    """(T, 52) weights -> (T, V*3) float32 vertices = template + weights @ basis."""
    return (template.reshape(1, -1) + weights.astype(np.float32) @ basis).astype(np.float32)
