"""A lip-sync plot: lip gap over time above the speech envelope, m/b/p and pauses shaded.

Used by ``generate --plot`` and the real-speech benchmark. Needs matplotlib (a developer
dependency, not one of the add-on's): drawn with the Agg canvas directly, no pyplot, no global
state, written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ImitatorError

__all__ = ["plot_lip_sync"]

_HINT = "pip install matplotlib==3.11.2"


def plot_lip_sync(path: str | Path, gap_mm: np.ndarray, fps: float, *,
                  levels_db: np.ndarray | None = None, hop_s: float = 0.01,
                  speech: np.ndarray | None = None, closures: Sequence = (),
                  pauses: Sequence[tuple[float, float]] = (), rest_gap_mm: float | None = None,
                  title: str = "") -> Path:
    """Write a PNG: ``gap_mm`` (T,) at ``fps`` (top), ``levels_db`` (N,) per ``hop_s`` with the
    ``speech`` mask (bottom); ``closures`` (intervals with start_s, end_s, phone) shaded red,
    ``pauses`` (start_s, end_s) grey."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImitatorError(f"plots need matplotlib; {_HINT}") from None
    from .fileio import atomic_write

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ImitatorError(f"{path}: a plot is written as PNG; give a file name ending in .png")
    gap_mm = np.asarray(gap_mm, dtype=np.float64)
    t = np.arange(len(gap_mm)) / float(fps)
    rows = 2 if levels_db is not None else 1
    fig = Figure(figsize=(max(6.0, min(24.0, 1.2 * len(gap_mm) / fps + 2)), 2.2 * rows + 0.6),
                 dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        for a, b in pauses:
            ax.axvspan(a, b, color="0.85", lw=0)
        for iv in closures:
            ax.axvspan(iv.start_s, iv.end_s, color="tab:red", alpha=0.25, lw=0)
    ax = axes[0]
    ax.plot(t, gap_mm, color="tab:blue", lw=1.2, label="lip gap")
    ax.axhline(1.0, color="tab:red", lw=0.8, ls="--", label="closed (1 mm)")
    if rest_gap_mm is not None:
        ax.axhline(rest_gap_mm + 1.0, color="0.4", lw=0.8, ls=":", label="rest + 1 mm")
    for iv in closures:
        ax.text(0.5 * (iv.start_s + iv.end_s), 0.0, iv.phone, ha="center", va="bottom",
                fontsize=7, color="tab:red")
    ax.set_ylabel("lip gap (mm)")
    ax.set_ylim(bottom=-0.5)
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    if title:
        ax.set_title(title, fontsize=9)
    if levels_db is not None:
        ax = axes[1]
        levels_db = np.asarray(levels_db, dtype=np.float64)
        th = np.arange(len(levels_db)) * hop_s
        ax.plot(th, np.maximum(levels_db, -100), color="0.2", lw=0.8, label="level (150-4000 Hz)")
        if speech is not None:
            ax.fill_between(th, -100, np.where(np.asarray(speech, bool), 0, -100), color="tab:green",
                            alpha=0.15, lw=0, label="voice activity")
        ax.set_ylabel("dBFS")
        ax.set_ylim(max(-100.0, float(np.percentile(levels_db, 1)) - 5), 0)
        ax.legend(loc="upper right", fontsize=7, ncol=2)
    axes[-1].set_xlabel("time (s)   red: m/b/p, grey: pauses")
    axes[-1].set_xlim(0, max(t[-1] if len(t) else 0.0, 1.0 / fps))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def plot_animation(path: str | Path, anim, audio: str | Path, centres: tuple[int, int],
                   closures: Sequence = ()) -> Path:
    """``plot_lip_sync`` of an Animation: its lip-centre gap, the audio file's level and voice
    activity (streamed, as generation measures them) and the given m/b/p intervals."""
    from .audio import stream_audio
    from .evaluate.metrics import animation_lip_opening
    from .model.rest import HOP_S, VoiceLevels, speech_mask

    voice = VoiceLevels(16000)
    for block in stream_audio(Path(audio), 16000):
        voice.feed(block)
    levels = voice.levels()
    gap = animation_lip_opening(anim, centres) * 1000
    rest = float(np.linalg.norm(anim.template[centres[0]] - anim.template[centres[1]])) * 1000
    return plot_lip_sync(path, gap, anim.fps, levels_db=levels, hop_s=HOP_S, speech=speech_mask(levels),
                         closures=closures, rest_gap_mm=rest, title=Path(audio).name)
