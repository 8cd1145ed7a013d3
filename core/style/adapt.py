"""Style adaptation: a new person's speaking style from a short tracked clip (Imitator, Sec. 3.3).

    python -m core adapt --model M --clip CLIP [--audio A] [--name N] [--steps1 N --steps2 N]
                         --out NAME.imstyle

As the reference: the trained prior is frozen except the style; stage 1 optimizes the style
embedding alone (from the training style that fits the clip best, or the mean style), stage 2 also
the motion decoder's final layer; the loss is the training loss (reconstruction, velocity x10, lip
contact x5 around m/b/p closures). Ours adds early stopping on a held-out tail of the clip (each
stage keeps the parameters with the lowest held-out loss), a gain between the stages (the
least-squares scale of the predicted motion on the clip: a model trained on squared errors hedges,
so its motion is smaller than a known person's) and works on CPU in seconds:

1. the clip is validated against the model's head (topology, NaN, fps, units, audio length; at
   least ``min_seconds``, not static), cut to ``max_seconds``, resampled to the model fps and
   rigidly aligned to the template (Kabsch on its steadiest vertices; optional scale);
2. m/b/p closures come from ``core.bilabial`` on the clip audio (forced alignment when a transcript
   is given, recognition otherwise);
3. the viseme decoder is frozen, so its features are computed once, without autograd;
4. the fit runs in a reduced space that is exact. The final layer is linear: offsets =
   [h, 1] @ W~ with W~ = [W^T; b^T] ((d + 1) x 3V). Every loss term is a sum of squared norms of
   per-frame residual rows (or their frame differences), which any orthonormal change of basis of
   R^3V preserves. The rows of W~ and of the target offsets Y (T x 3V) span r <= d + 1 + T
   dimensions; in an orthonormal basis of that span W~ and Y have r coordinates, the loss values
   are identical, and stage 2 moves W~ within the span, where its gradient lies. A step then costs
   O(T d (d + r)) instead of O(T d V): 600 steps on a 20 s clip take seconds, not minutes.

The result is a ``StyleProfile`` (``core.style.profile``): the style vector, the adapted final
layer when stage 2 ran, and metadata naming the base model; ``generate(..., style=profile)`` uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ImitatorError
from .profile import SUFFIX, StyleProfile, model_hash, model_topology

log = logging.getLogger(__name__)

__all__ = ["AdaptSettings", "AdaptCancelled", "PreparedClip", "adapt", "prepare_clip", "rigid_transform",
           "align_clip", "find_closures", "fit_loss_terms", "add_commands"]

# the losses are in m^2 and their gradients ~1e-12: torch's eps of 1e-8 would swallow them (steps
# of ~1e-4 lr instead of lr), so the learning rates below would not be the steps taken
ADAM_EPS = 1e-20
Progress = Callable[[int, int, int, float], None]  # (stage, step, steps of the stage, training loss)
Status = Callable[[str], None]  # a phase before the stages start ("finding lip closures", ...)

STATIC_PEAK_M = 1e-4  # a clip whose vertices all move less than 0.1 mm is static
STEADY_SHARE = 0.5  # alignment uses the steadiest half of the vertices (the skull, not the jaw)
MIN_HOLDOUT_FRAMES = 8  # a shorter held-out tail is no use for early stopping: none is kept
GAIN_MIN, GAIN_MAX = 0.5, 2.0  # the motion gain after stage 1 stays in this range
GAIN_MIN_CHANGE = 0.01  # a gain closer to 1 is not worth a final layer in the profile
ALIGN_MODES = ("clip", "frame", "none")


class AdaptCancelled(ImitatorError):
    """The cancel flag was set; nothing was written."""

    def __init__(self) -> None:
        super().__init__("adaptation cancelled; nothing was written")


@dataclass
class AdaptSettings:
    """How to adapt; the defaults follow the reference (300 steps per stage, one sequence per step)."""

    steps1: int = 300  # stage 1: style vector only
    steps2: int = 300  # stage 2: style + final layer (0 skips it: a style-only profile)
    lr1: float = 0.05  # Adam step of the style, relative to the RMS of the model's style vectors
    lr2: float = 0.02  # Adam step of the final layer, relative to the RMS of its coordinates
    holdout: float = 0.2  # share of the clip's tail kept out of the fit, for early stopping (0: none)
    patience: int = 50  # steps without a better held-out loss before a stage stops
    gain: bool = True  # after stage 1, scale the motion by its least-squares gain on the clip
    init: str = "nearest"  # nearest (training style that fits best) | mean | a style name or index
    align: str = "clip"  # clip: one rigid transform | frame: one per frame (head motion) | none
    scale: bool = False  # alignment may scale too (another person's head size)
    max_seconds: float = 30.0  # longer clips are cut: more costs time and adds little
    min_seconds: float = 1.0

    def validate(self) -> "AdaptSettings":
        if self.steps1 < 0 or self.steps2 < 0 or self.steps1 + self.steps2 == 0:
            raise ImitatorError(f"steps {self.steps1} + {self.steps2}: give stage 1 and/or stage 2 a "
                                f"positive number of steps")
        if not (self.lr1 > 0 and self.lr2 > 0):
            raise ImitatorError(f"learning rates {self.lr1}, {self.lr2} must be positive")
        if not 0 <= self.holdout < 0.9:
            raise ImitatorError(f"holdout {self.holdout} must be in [0, 0.9)")
        if self.patience < 1:
            raise ImitatorError(f"patience {self.patience} must be at least 1 step")
        if self.align not in ALIGN_MODES:
            raise ImitatorError(f"alignment {self.align!r} is unknown; use one of {', '.join(ALIGN_MODES)}")
        if not self.max_seconds >= self.min_seconds > 0:
            raise ImitatorError(f"max_seconds {self.max_seconds} must be >= min_seconds {self.min_seconds} > 0")
        return self


# --------------------------------------------------------------------------- rigid alignment

def rigid_transform(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None,
                    scale: bool = False) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising sum_i w_i |s R x_i + t - y_i|^2 (Kabsch/Umeyama; R a proper rotation)."""
    x = np.asarray(source, np.float64).reshape(-1, 3)
    y = np.asarray(target, np.float64).reshape(-1, 3)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    w = w / w.sum()
    mx, my = w @ x, w @ y
    xc, yc = x - mx, y - my
    cov = (yc * w[:, None]).T @ xc  # (3, 3) sum w y x^T
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    var_x = float(w @ (xc ** 2).sum(1))
    s = float(np.trace(np.diag(S) @ D) / var_x) if scale and var_x > 0 else 1.0
    t = my - s * R @ mx
    return s, R, t


def _apply(points: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (s * points.astype(np.float64) @ R.T + t).astype(np.float32)


def align_clip(vertices: np.ndarray, template: np.ndarray, mode: str = "clip",
               scale: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """(T, V, 3) clip rigidly aligned to the (V, 3) template; and a record of what was done.

    The transform is fitted on the steadiest half of the vertices (lowest motion over the clip), so
    the jaw and lips do not tilt the head. ``clip``: one transform for all frames (a registered
    clip); ``frame``: one per frame (a clip with head motion); ``none``: unchanged.
    """
    v = np.asarray(vertices, np.float32)
    if mode == "none":
        return v, {"mode": "none"}
    if mode not in ALIGN_MODES:
        raise ImitatorError(f"alignment {mode!r} is unknown; use one of {', '.join(ALIGN_MODES)}")
    if mode == "frame":  # rough per-frame pass on all vertices, so steadiness ignores head motion
        v = np.stack([_apply(f, *rigid_transform(f, template, scale=scale)) for f in v])
    motion = v.std(axis=0).sum(axis=1)  # (V,)
    steady = np.argsort(motion, kind="stable")[: max(3, int(STEADY_SHARE * len(motion)))]
    if mode == "clip":
        s, R, t = rigid_transform(v.mean(axis=0)[steady], template[steady], scale=scale)
        out = _apply(v, s, R, t)
        record = {"mode": "clip", "scale": s, "rotation_deg": _angle(R),
                  "translation_mm": float(1e3 * np.linalg.norm(t))}
    else:
        fits = [rigid_transform(f[steady], template[steady], scale=scale) for f in v]
        out = np.stack([_apply(f, *fit) for f, fit in zip(v, fits)])
        record = {"mode": "frame", "scale": float(np.mean([f[0] for f in fits])),
                  "rotation_deg": max(_angle(f[1]) for f in fits)}
    residual = out.mean(axis=0)[steady] - template[steady]
    record["steady_rms_mm"] = float(1e3 * np.sqrt((residual ** 2).sum(1).mean()))
    return out, record


def _angle(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


# --------------------------------------------------------------------------- the clip

@dataclass
class PreparedClip:
    """A clip ready to fit: at the model's fps and sample rate, aligned to the template."""

    vertices: np.ndarray  # (T, V, 3) float32 metres
    audio: np.ndarray  # (N,) float32 at the model's sample rate
    fps: float
    name: str
    sample_rate: int = 16000
    alignment: dict[str, Any] = field(default_factory=dict)
    source_fps: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


def prepare_clip(model, clip, settings: AdaptSettings | None = None,
                 template: np.ndarray | None = None) -> PreparedClip:
    """Validate a ``core.data.clips.Clip`` against the model, cut, resample to the model fps, align.

    ``template``: the person's neutral face in the model's topology (default: the model's template).
    """
    from ..data.clips import resample, validate_clip
    from ..faces.head import Head
    from ..model.encoders import prepare_audio

    settings = (settings or AdaptSettings()).validate()
    cfg = model.config
    template = _template(model, template)
    head = Head("of the model", template, np.zeros(0, np.int32), np.zeros(0, np.int32))
    clip = validate_clip(clip, head, require_audio=True)
    name = clip.name
    if clip.duration < settings.min_seconds:
        raise ImitatorError(f"{name}: clip is {clip.duration:.2f} s long; adaptation needs at least "
                            f"{settings.min_seconds:g} s of speech")
    if clip.duration > settings.max_seconds:
        n = int(math.floor(settings.max_seconds * clip.fps))
        log.info("%s: using the first %.1f s of %.1f s", name, n / clip.fps, clip.duration)
        clip = dataclasses.replace(clip, vertices=clip.vertices[:n],
                                   audio=clip.audio[: int(round(n / clip.fps * clip.sample_rate))])
    audio = prepare_audio(clip.audio, clip.sample_rate, cfg.sample_rate)
    moved = resample(clip, cfg.fps)
    vertices, record = align_clip(moved.vertices, template, settings.align, settings.scale)
    peak = float(np.ptp(vertices, axis=0).max()) if len(vertices) > 1 else 0.0
    if peak < STATIC_PEAK_M:
        raise ImitatorError(f"{name}: clip is static (no vertex moves more than {peak * 1e3:.3f} mm); "
                            f"choose a clip of the person speaking")
    return PreparedClip(vertices, audio, float(cfg.fps), name, int(cfg.sample_rate), record, float(clip.fps))


def _template(model, template: np.ndarray | None) -> np.ndarray:
    V = model.config.num_vertices
    if template is None:
        return model.template.detach().float().cpu().numpy()
    template = np.asarray(template, np.float32)
    if template.shape != (V, 3):
        raise ImitatorError(f"neutral face has shape {template.shape}; the model animates {V} "
                            f"vertices (V, 3)")
    return template


def find_closures(audio: np.ndarray, sr: int, fps: float, num_frames: int,
                  transcript: str | None = None) -> tuple[np.ndarray | None, str]:
    """(T,) m/b/p closure mask of the clip and where it came from; (None, why) if no detector."""
    from ..bilabial import closures_from_audio, closures_from_transcript
    from ..data.closure_labels import closure_mask

    try:
        if transcript and transcript.strip():
            intervals, source = closures_from_transcript(audio, sr, transcript), "aligned"
        else:
            intervals, source = closures_from_audio(audio, sr), "recognized"
    except ImitatorError as e:  # pocketsphinx missing: adapt without the lip contact term
        log.warning("no lip contact loss: %s", e)
        return None, f"unavailable ({e})"
    return closure_mask(intervals, fps, num_frames), source


# --------------------------------------------------------------------------- the reduced fit

def fit_loss_terms(pred: torch.Tensor, target: torch.Tensor, config, closures: torch.Tensor | None,
                   scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The model's loss terms of (T, C) predictions in any coordinates whose squared norms equal
    the vertex ones, ``scale`` = C / 3V (``imitator_loss`` averages over its C columns)."""
    from ..model.losses import imitator_loss

    terms = imitator_loss(pred[None, :, :, None], target[None, :, :, None], config, closures)
    return {"total": terms.total * scale, "reconstruction": terms.reconstruction * scale,
            "velocity": terms.velocity * scale, "lip_contact": terms.lip_contact * scale}


class _Reduced:
    """The final layer W~ and the target offsets in an orthonormal basis of the span of their rows."""

    def __init__(self, weight_t: np.ndarray, bias: np.ndarray, targets: np.ndarray):
        d1 = weight_t.shape[0] + 1
        self.rows = np.concatenate([weight_t, bias[None], targets]).astype(np.float64)  # (k, 3V)
        gram = self.rows @ self.rows.T  # (k, k)
        lam, U = np.linalg.eigh(gram)
        keep = lam > max(lam.max(), 1e-300) * 1e-12
        if not keep.any():  # everything zero: one dummy dimension keeps the shapes valid
            keep[-1] = True
            lam[-1] = 1.0
        self.U, self.lam = U[:, keep], lam[keep]
        coords = self.U * np.sqrt(self.lam)  # (k, r): rows = coordinates of self.rows
        self.A0 = coords[:d1].astype(np.float32)  # (d + 1, r)
        self.Y = coords[d1:].astype(np.float32)  # (T, r)
        self.rank = int(keep.sum())

    def expand(self, A: np.ndarray) -> np.ndarray:
        """(d + 1, r) coordinates -> (d + 1, 3V) W~, exact at A0."""
        d1 = self.A0.shape[0]
        delta = (np.asarray(A, np.float64) - self.A0) / np.sqrt(self.lam)  # (d + 1, r)
        return (self.rows[:d1] + (delta @ self.U.T) @ self.rows).astype(np.float32)


class _Fit:
    """Frozen visemes, reduced targets and closure mask of one clip; losses of frame ranges."""

    def __init__(self, model, visemes: torch.Tensor, reduced: _Reduced, closures: np.ndarray | None,
                 split: int):
        import copy

        self.config = model.config
        # a frozen CPU copy: the fit is small (a GPU would only wait) and the model gets no gradients
        self.motion_decoder = copy.deepcopy(model.motion_decoder).cpu().requires_grad_(False)
        self.visemes = visemes  # (T, d), no grad
        self.Y = torch.from_numpy(reduced.Y)
        self.A0 = torch.from_numpy(reduced.A0)
        self.scale = reduced.rank / model.config.vertex_dim
        self.closures = None if closures is None else torch.from_numpy(np.asarray(closures, bool))
        self.T, self.split = visemes.shape[0], split

    def predict(self, style: torch.Tensor, A: torch.Tensor) -> torch.Tensor:  # (T, r)
        h = self.motion_decoder.hidden((self.visemes + style)[None])[0]  # (T, d)
        return torch.cat([h, h.new_ones(len(h), 1)], 1) @ A

    def terms(self, pred: torch.Tensor, a: int, b: int) -> dict[str, torch.Tensor]:
        c = None if self.closures is None else self.closures[a:b]
        return fit_loss_terms(pred[a:b], self.Y[a:b], self.config, c, self.scale)

    def train(self, pred: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.terms(pred, 0, self.split)

    def held_out(self, pred: torch.Tensor) -> dict[str, torch.Tensor] | None:
        return self.terms(pred, self.split, self.T) if self.split < self.T else None


def _floats(terms: dict[str, torch.Tensor] | None) -> dict[str, float] | None:
    return None if terms is None else {k: float(v.detach()) for k, v in terms.items()}


def _rms(x: torch.Tensor) -> float:
    return float(x.detach().pow(2).mean().sqrt()) if x.numel() else 0.0


def _run_stage(stage: int, fit: _Fit, params: dict[str, torch.Tensor], lrs: dict[str, float],
               forward: Callable[[dict[str, torch.Tensor]], torch.Tensor], steps: int,
               settings: AdaptSettings, progress: Progress | None, cancel: threading.Event | None
               ) -> dict[str, Any]:
    """Adam on ``params`` (deltas, scaled inside ``forward``); keeps the step with the best held-out
    loss (the training loss without a held-out tail) and stops after ``patience`` steps without one."""
    from ..model.imitator import _single_thread

    with _single_thread():  # (T, r) tensors: a second thread only waits (8x slower on a loaded 2-core box)
        return _stage_loop(stage, fit, params, lrs, forward, steps, settings, progress, cancel)


def _stage_loop(stage, fit, params, lrs, forward, steps, settings, progress, cancel) -> dict[str, Any]:
    optimizer = torch.optim.Adam([{"params": [p], "lr": lrs[k]} for k, p in params.items()], eps=ADAM_EPS)
    best, best_state, since, done = math.inf, None, 0, 0
    stopped_early = False
    for step in range(steps + 1):  # the last pass only scores the final parameters
        _check(cancel)
        pred = forward(params)
        train = fit.train(pred)
        held = fit.held_out(pred)
        score = float((held or train)["total"].detach())
        if not math.isfinite(score):
            raise ImitatorError(f"stage {stage}: the fit diverged (loss {score}); try smaller "
                                f"learning rates")
        if best_state is None or score < best - 1e-7 * abs(best):
            best, since = score, 0
            best_state = {k: p.detach().clone() for k, p in params.items()}
            best_terms = (_floats(train), _floats(held), step)
        else:
            since += 1
        if step == steps:
            break
        if since >= settings.patience:
            stopped_early = True
            break
        optimizer.zero_grad(set_to_none=True)
        train["total"].backward()
        optimizer.step()
        done = step + 1
        if progress is not None:
            progress(stage, done, steps, float(train["total"].detach()))
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(best_state[k])
    train_terms, held_terms, best_step = best_terms
    return {"steps": done, "best_step": best_step, "stopped_early": stopped_early,
            "train": train_terms, "held_out": held_terms}


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise AdaptCancelled()


def _motion_gain(fit: _Fit, style: torch.Tensor) -> tuple[float, dict[str, Any]]:
    """The least-squares scale of the predicted offsets on the fit frames (a squared-error model
    hedges: its motion is smaller than a known person's), clamped to [GAIN_MIN, GAIN_MAX]; 1 when
    it is within GAIN_MIN_CHANGE of 1. Not gated by the held-out tail: on the val subjects of the
    adaptation bench the gated gain lost to this one at 2.5, 5 and 10 s (the tail is noisy); the
    held-out loss before and after is recorded."""
    pred = fit.predict(style, fit.A0)
    head, target = pred[: fit.split], fit.Y[: fit.split]
    power = float((head * head).sum())
    fitted = min(max(float((head * target).sum()) / power, GAIN_MIN), GAIN_MAX) if power > 0 else 1.0
    kept = fitted if abs(fitted - 1.0) >= GAIN_MIN_CHANGE else 1.0
    score = lambda p: float((fit.held_out(p) or fit.train(p))["total"])  # noqa: E731
    return kept, {"fitted": fitted, "kept": kept, "held_out_before": score(pred),
                  "held_out_after": score(pred * kept)}


def _initial_style(model, fit: _Fit, init: str) -> tuple[torch.Tensor, str, dict[str, float]]:
    """(d,) starting style and its name: the training style that fits best, the mean, or a named one."""
    table = model.style_embedding.weight.detach().t().float().cpu()  # (S, d)
    names = model.config.styles
    if init == "mean":
        return table.mean(0), "mean", {}
    if init != "nearest":
        index = int(init) if str(init).isdigit() else model.style_index(init)
        if not 0 <= index < len(names):
            raise ImitatorError(f"initial style {index} is out of range; the model has {len(names)} styles")
        return table[index], names[index], {}
    scores = {}
    with torch.no_grad():
        for i, name in enumerate(names):
            scores[name] = float(fit.train(fit.predict(table[i], fit.A0))["total"])
    best = min(scores, key=scores.get)
    return table[names.index(best)], best, scores


def adapt(model, clip, *, name: str = "style", settings: AdaptSettings | None = None,
          transcript: str | None = None, closures: np.ndarray | list | str | None = "auto",
          template: np.ndarray | None = None, topology: str | None = None, model_id: str | None = None,
          model_name: str = "", progress: Progress | None = None, status: Status | None = None,
          cancel: threading.Event | None = None) -> StyleProfile:
    """Adapt ``model`` to a tracked ``clip`` (``core.data.clips.Clip`` with audio); a StyleProfile.

    ``closures``: "auto" (detect m/b/p in the clip audio; ``transcript`` makes it forced alignment),
    None (no lip contact term), a list of ``core.bilabial.Interval`` or a (T,) mask at the model fps.
    ``topology``: the clip's topology hash when known (a mesh object); must match the model's.
    ``cancel``: set it from another thread to stop at the next step (raises ``AdaptCancelled``).
    Nothing is written; ``StyleProfile.save`` writes the file.
    """
    t0 = time.perf_counter()
    settings = (settings or AdaptSettings()).validate()
    say = status or (lambda text: log.info("%s", text))
    cfg = model.config
    if topology and cfg.topology and topology != cfg.topology:
        raise ImitatorError(f"{clip.name}: clip is on head topology {topology} but the model animates "
                            f"{cfg.topology}; use a clip of the model's head")
    prepared = prepare_clip(model, clip, settings, template)
    template = _template(model, template)
    T = prepared.num_frames
    _check(cancel)

    mask, closure_source = _closure_mask(prepared, closures, transcript, say)
    _check(cancel)

    say("computing viseme features")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            audio = torch.from_numpy(prepared.audio)[None].to(model.template.device)
            visemes = model.viseme_features(model.audio_features(audio, T))[0].float().cpu()  # (T, d)
        _check(cancel)
        say("preparing the fit")
        weight_t, bias = (t.detach().float().cpu().numpy() for t in model.basis())  # (d, 3V), (3V,)
        offsets = (prepared.vertices - template).reshape(T, -1)  # (T, 3V)
        reduced = _Reduced(weight_t, bias, offsets)
        held = int(round(settings.holdout * T))
        split = T - held if held >= MIN_HOLDOUT_FRAMES and T - held >= MIN_HOLDOUT_FRAMES else T
        fit = _Fit(model, visemes, reduced, mask, split)
        _check(cancel)

        style0, init_name, init_scores = _initial_style(model, fit, settings.init)
        s_scale = _rms(model.style_embedding.weight.detach().float()) or 1.0
        with torch.no_grad():
            h0 = fit.predict(style0, torch.eye(fit.A0.shape[0]))  # (T, d + 1): [h, 1]
        a_scale = _rms(fit.A0) or (_rms(fit.Y) / max(_rms(h0) * math.sqrt(fit.A0.shape[0]), 1e-12))
        params = {"style": torch.zeros_like(style0, requires_grad=True)}

        def style_of(p):
            return style0 + s_scale * p["style"]

        with torch.no_grad():
            start_pred = fit.predict(style0, fit.A0)
            losses: dict[str, Any] = {"initial": {"style": init_name, "train": _floats(fit.train(start_pred)),
                                                  "held_out": _floats(fit.held_out(start_pred))}}
        if init_scores:
            losses["initial"]["candidates"] = init_scores
        A = None
        if settings.steps1:
            say("stage 1: style")
            losses["stage1"] = _run_stage(1, fit, params, {"style": settings.lr1},
                                          lambda p: fit.predict(style_of(p), fit.A0), settings.steps1,
                                          settings, progress, cancel)
        gain = 1.0
        if settings.gain:
            with torch.no_grad():
                gain, losses["gain"] = _motion_gain(fit, style_of(params))
        A_base = fit.A0 * gain
        if gain != 1.0:
            A = A_base.numpy()
        if settings.steps2:
            say("stage 2: style and final layer")
            params["final"] = torch.zeros_like(fit.A0, requires_grad=True)
            losses["stage2"] = _run_stage(2, fit, params, {"style": settings.lr1, "final": settings.lr2},
                                          lambda p: fit.predict(style_of(p), A_base + a_scale * p["final"]),
                                          settings.steps2, settings, progress, cancel)
            A = (A_base + a_scale * params["final"]).detach().numpy()
        _check(cancel)
        style = style_of(params).detach().numpy().astype(np.float32)
    finally:
        model.train(was_training)

    final_weight = final_bias = None
    if A is not None:
        w_tilde = reduced.expand(A)  # (d + 1, 3V)
        final_weight, final_bias = np.ascontiguousarray(w_tilde[:-1].T), w_tilde[-1].copy()
    meta = {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": model_id or model_hash(model),
        "base_model_name": model_name,
        "topology": model_topology(model),
        "num_vertices": cfg.num_vertices,
        "feature_dim": cfg.feature_dim,
        "fps": cfg.fps,
        "clip": prepared.name,
        "clip_fps": prepared.source_fps,
        "clip_seconds": round(prepared.seconds, 3),
        "fit_frames": split,
        "held_out_frames": T - split,
        "stages": 2 if settings.steps2 else 1,
        "gain": gain,
        "init": init_name,
        "closures": {"source": closure_source, "frames": None if mask is None else int(np.sum(mask))},
        "alignment": prepared.alignment,
        "losses": losses,
        "settings": dataclasses.asdict(settings),
        "reduced_rank": reduced.rank,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return StyleProfile(style, final_weight, final_bias, meta)


def _closure_mask(prepared: PreparedClip, closures: Any, transcript: str | None,
                  say: Status) -> tuple[np.ndarray | None, str]:
    from ..data.closure_labels import closure_mask

    T = prepared.num_frames
    if closures is None:
        return None, "none"
    if isinstance(closures, str):
        if closures != "auto":
            raise ImitatorError(f"closures {closures!r}: use 'auto', None, intervals or a frame mask")
        say("finding lip closures (m, b, p)")
        return find_closures(prepared.audio, prepared.sample_rate, prepared.fps, T, transcript)
    if isinstance(closures, np.ndarray) and closures.dtype == bool:
        if closures.shape != (T,):
            raise ImitatorError(f"closure mask has {closures.shape} frames; the clip has {T} at "
                                f"{prepared.fps:g} fps")
        return closures, "given"
    return closure_mask(list(closures), prepared.fps, T), "given"


# --------------------------------------------------------------------------- command line

def add_commands(sub: argparse._SubParsersAction) -> None:
    """``python -m core adapt --model M --clip CLIP --out NAME.imstyle``."""
    from ..data.commands import DEFAULT_HEAD_CACHE

    d = AdaptSettings()
    p = sub.add_parser("adapt", help="a speaking style from a tracked clip -> NAME.imstyle profile",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="model folder (default models/default)")
    p.add_argument("--clip", type=Path, required=True,
                   help="tracked clip: .npz (vertices or FLAME parameters), a folder of OBJ/PLY frames, "
                        "or a Live Link Face .csv (default head)")
    p.add_argument("--audio", type=Path, help="the clip's audio, if not inside or beside the clip")
    p.add_argument("--fps", type=float, help="the clip's frame rate, if the file does not say")
    p.add_argument("--transcript", help="what is said (closures by forced alignment instead of recognition)")
    p.add_argument("--no-lip-loss", action="store_true", help="leave out the lip contact term")
    p.add_argument("--neutral", type=Path, help="the person's neutral face (.obj/.ply in the model's "
                                                "topology; default: the model's template)")
    p.add_argument("--name", help="style name (default: the --out file name)")
    p.add_argument("--out", type=Path, required=True, help=f"profile to write (NAME{SUFFIX})")
    p.add_argument("--steps1", type=int, default=d.steps1, help=f"stage 1 steps (default {d.steps1})")
    p.add_argument("--steps2", type=int, default=d.steps2,
                   help=f"stage 2 steps, 0 for a style-only profile (default {d.steps2})")
    p.add_argument("--lr1", type=float, default=d.lr1, help=f"relative style step (default {d.lr1})")
    p.add_argument("--lr2", type=float, default=d.lr2, help=f"relative final-layer step (default {d.lr2})")
    p.add_argument("--holdout", type=float, default=d.holdout,
                   help=f"share of the clip's tail held out for early stopping (default {d.holdout})")
    p.add_argument("--patience", type=int, default=d.patience, help=f"early-stopping patience (default {d.patience})")
    p.add_argument("--init", default=d.init, help="nearest, mean, or a training style name/index")
    p.add_argument("--no-gain", action="store_true", help="no least-squares motion gain after stage 1")
    p.add_argument("--align", choices=ALIGN_MODES, default=d.align,
                   help="rigid alignment: one transform (clip), one per frame (frame), none")
    p.add_argument("--scale", action="store_true", help="let the alignment scale the clip")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help=f"use at most this much of the clip (default {d.max_seconds:g})")
    p.add_argument("--flame", type=Path, help="your FLAME model file, for clips of FLAME parameters")
    p.add_argument("--clip-head", type=Path, help="a mesh (.obj) of the clip's topology when it is not the "
                                                 "model's (OBJ frames and FLAME clips bring their own)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_HEAD_CACHE,
                   help=f"default head cache, for Live Link Face clips (default {DEFAULT_HEAD_CACHE})")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_run, outputs={"out": f"file:{SUFFIX}"})


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.clips import load_clip
    from ..generate_cli import default_model_path
    from ..model.checkpoint import from_pretrained
    from ..device import pick_device

    out = args.out  # checked by core.cli.check_outputs (suffix, exists, folder, writable)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = AdaptSettings(steps1=args.steps1, steps2=args.steps2, lr1=args.lr1, lr2=args.lr2,
                             holdout=args.holdout, patience=args.patience, init=args.init,
                             align=args.align, scale=args.scale, max_seconds=args.max_seconds,
                             gain=not args.no_gain).validate()
    folder = args.model if args.model is not None else default_model_path()
    model = from_pretrained(folder, pick_device(args.device))
    head = flame = None
    if args.clip.suffix.lower() == ".csv":
        from ..faces.default_head import load_default_head

        head = load_default_head(args.cache_dir)
    if args.flame is not None:
        from ..faces.flame import load_flame

        flame = load_flame(args.flame)
    clip = load_clip(args.clip, head=head, flame=flame, fps=args.fps, audio=args.audio)
    if clip.vertices.shape[1] != model.config.num_vertices:  # another topology: through a head fit
        from ..faces.default_head import load_default_head
        from ..faces.fit_cli import clip_onto_model_head, clip_triangles

        clip, _ = clip_onto_model_head(clip, clip_triangles(args.clip, args.clip_head, flame),
                                       load_default_head(args.cache_dir))
    neutral = None
    if args.neutral is not None:
        from ..data.meshfiles import read_mesh_vertices

        neutral = read_mesh_vertices(args.neutral)
    bars: dict[int, tqdm] = {}

    def progress(stage: int, step: int, total: int, loss: float) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=f"stage {stage}", unit="step")
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3g}")

    try:
        profile = adapt(model, clip, name=args.name or out.stem, settings=settings,
                        transcript=args.transcript, closures=None if args.no_lip_loss else "auto",
                        template=neutral, topology=head.topology if head is not None else None,
                        model_name=Path(folder).resolve().name, progress=progress,
                        status=lambda text: log.info("%s", text))
    finally:
        for bar in bars.values():
            bar.close()
    profile.save(out)
    meta = profile.meta
    losses = meta["losses"]
    last = losses.get("stage2") or losses.get("stage1")
    held = "held_out" if last.get("held_out") else "train"
    first = losses["initial"][held]["total"]
    print(f"wrote {out}: style '{profile.name}' from {meta['clip_seconds']:.1f} s of {meta['clip']} "
          f"({meta['stages']} stage{'s' if meta['stages'] > 1 else ''}, from style {meta['init']}, "
          f"motion gain {meta['gain']:.3g}; "
          f"{held.replace('_', '-')} loss {first:.4g} -> {last[held]['total']:.4g}; "
          f"closures {meta['closures']['source']}; {meta['seconds']:.1f} s)")
    return 0
