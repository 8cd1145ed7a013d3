"""A procedural talking motion on ARKit shape keys: the demo and a known animation for tests."""

from __future__ import annotations

import numpy as np

from .animation import Animation
from .errors import ImitatorError

SPEECH_KEYS = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft",
               "mouthSmileRight", "mouthRollLower", "eyeBlinkLeft", "eyeBlinkRight")


def speech_like_weights(seconds: float, fps: float, seed: int = 0) -> np.ndarray:
    """(T, 9) weights for SPEECH_KEYS: syllables at ~4.5 Hz with lip closures, rounding, blinks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fps))) / fps
    rate = 4.5 * (1 + 0.15 * np.sin(2 * np.pi * 0.31 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(rate) / fps
    syllable = np.clip(np.sin(phase), 0, None)  # jaw opens once per syllable
    phrase = np.clip(np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6)) + 0.6, 0, 1)  # pauses
    jaw = 0.45 * syllable * phrase
    closure = np.exp(-0.5 * ((np.sin(phase / 3) - 1) / 0.05) ** 2) * (jaw < 0.05)  # every 3rd gap: m/b/p
    round_ = 0.5 * np.clip(np.sin(2 * np.pi * 0.9 * t + rng.uniform(0, 6)), 0, None) * phrase
    smile = 0.25 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.13 * t + rng.uniform(0, 6)))
    blink_times = np.cumsum(rng.uniform(2.0, 4.5, size=int(seconds / 2) + 2))
    blink = np.exp(-0.5 * ((t[:, None] - blink_times[None]) / 0.05) ** 2).sum(1).clip(0, 1)
    # ARKit's mouthClose is relative to jawOpen: equal amounts keep the lips together while the
    # jaw drops a little, as on a pressed m/b/p (mouthClose alone would push the lips through).
    press = 0.15 * closure
    return np.stack([jaw + press, press, round_ * 0.6, round_ * 0.4, smile, smile * 0.9,
                     0.3 * closure, blink, blink], axis=1).astype(np.float32)


def speech_like_animation(template: np.ndarray, shape_keys: dict[str, np.ndarray],
                          seconds: float = 4.0, fps: float = 30.0, seed: int = 0) -> Animation:
    """An exact-basis Animation on a head that has the ARKit keys (e.g. the default head)."""
    missing = [k for k in SPEECH_KEYS if k not in shape_keys]
    if missing:
        raise ImitatorError(f"the head lacks the ARKit shape keys {', '.join(missing)}; "
                            "use the default head or a head with ARKit keys")
    basis = np.stack([np.asarray(shape_keys[k], dtype=np.float32) for k in SPEECH_KEYS])
    return Animation(template=np.asarray(template, dtype=np.float32), basis=basis,
                     weights=speech_like_weights(seconds, fps, seed),
                     bias=np.zeros_like(basis[0]), fps=fps)
