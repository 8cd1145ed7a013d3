"""Closure-aware decoding: lips that meet on m, b and p.

A regression model trained with squared errors hedges: where the lips should press together it
often leaves them a few millimetres apart (the lip contact loss narrows that, it does not close it).
Two small parts close them without touching the rest of the model:

* a **contact head** on the style-agnostic viseme features and the audio features (closure is
  content, not style): p_t = sigmoid(MLP([viseme_t, audio_t])), fitted on the corpus' m/b/p frames
  with the rest of the model frozen (``python -m core fit-closure``); optionally joined (maximum)
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

import argparse
import logging
import math
from dataclasses import dataclass
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
    from ..metrics import interval_frames

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

@dataclass
class _Utterance:
    inputs: torch.Tensor  # (T, 2d) contact head inputs: viseme and audio features
    labels: torch.Tensor  # (T,) 1 on closure frames
    weights: np.ndarray  # (T, d) motion weights in the subject's (or the first) style
    intervals: list  # m/b/p intervals
    mel: torch.Tensor | None  # (K, n_mels + 1) log-mel frames, for the audio contact net


def _corpus_features(model, corpus, utterances, closures, with_mel: bool, progress: bool) -> list[_Utterance]:
    from tqdm import tqdm

    from ..data.closure_labels import closure_mask

    fps = model.config.fps
    out = []
    with torch.no_grad():
        for utt in tqdm(utterances, desc="viseme features", unit="utt", disable=not progress):
            audio = torch.from_numpy(corpus.read_audio(utt, model.config.sample_rate))[None]
            feats = model.audio_features(audio)
            visemes = model.viseme_features(feats)
            style = model.style_vector(utt.subject if utt.subject in model.config.styles else 0)
            weights = model.motion_weights(visemes, style)[0].numpy()
            intervals = closures.get(utt.key, [])
            labels = closure_mask(intervals, fps, feats.shape[1]).astype(np.float32)
            mel = model.audio_encoder.log_mel_frames(audio)[0] if with_mel else None
            out.append(_Utterance(torch.cat([visemes, feats], -1)[0], torch.from_numpy(labels), weights,
                                  intervals, mel))
    return out


def _fit_audio_net(net: AudioContactNet, items: list[_Utterance], rate: float, epochs: int,
                   seed: int, progress: bool) -> float:
    """AdamW with a cosine schedule on batches of 16 utterances; labels from the m/b/p intervals at
    the log-mel rate. Returns the last batch loss."""
    from tqdm import tqdm

    from ..data.closure_labels import closure_mask

    mels = [it.mel for it in items]
    labels = [torch.from_numpy(closure_mask(it.intervals, rate, len(it.mel)).astype(np.float32)) for it in items]
    every = torch.cat(mels)
    net.mean.copy_(every.mean(0))
    net.std.copy_(every.std(0) + 1e-5)
    y = torch.cat(labels)
    pos_weight = (len(y) - y.sum()) / y.sum().clamp(min=1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    rng = np.random.default_rng(seed)
    net.train()
    loss = torch.zeros(())
    for _ in tqdm(range(epochs), desc="audio contact net", unit="epoch", disable=not progress):
        order = rng.permutation(len(items))
        for b in range(0, len(order), 16):
            batch = order[b:b + 16]
            K = max(len(mels[i]) for i in batch)
            X = torch.zeros(len(batch), K, every.shape[1])
            Y = torch.zeros(len(batch), K)
            M = torch.zeros(len(batch), K)
            for j, i in enumerate(batch):
                X[j, :len(mels[i])], Y[j, :len(mels[i])], M[j, :len(mels[i])] = mels[i], labels[i], 1.0
            bce = F.binary_cross_entropy_with_logits(net(X), Y, pos_weight=pos_weight, reduction="none")
            loss = (bce * M).sum() / M.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    net.eval()
    return float(loss.detach())


def interval_recall(contact: list[np.ndarray], intervals: list[list], fps: float, threshold: float) -> float:
    """Share of m/b/p intervals with at least one frame at or above ``threshold``."""
    from ..metrics import interval_frames

    hit = total = 0
    for p, ivs in zip(contact, intervals):
        for iv in ivs:
            frames = interval_frames(iv, fps, len(p))
            if frames.size:
                total += 1
                hit += bool(p[frames].max() >= threshold)
    return hit / total if total else float("nan")


def fit_lip_closure(model, corpus, centres: tuple[int, int], closures: dict, *, steps: int = 300,
                    audio_net: bool = False, audio_epochs: int = 80, max_false_positives: float = 0.02,
                    seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Add a fitted ``LipClosure`` to ``model`` (in place; the rest stays frozen); returns figures
    on the val split per contact threshold: m/b/p intervals the head fires in, frame precision and
    the share of other frames it fires on (all, and those over 100 ms from any m/b/p). With a val
    split, ``high`` becomes the lowest threshold that fires on at most ``max_false_positives`` of the
    far frames (``low`` half of it).
    ``audio_net``: also fit the audio contact net (``audio_epochs`` passes over the train split)."""
    torch.manual_seed(seed)
    model.eval()
    train_utts = corpus.splits["train"]
    val_utts = corpus.splits.get("val", [])
    if not train_utts:
        raise ImitatorError(f"{corpus.root}: the train split is empty; nothing to fit the contact head on")
    closure = LipClosure({**(model.config.lip_closure or {}), "centres": list(centres), "audio_net": audio_net},
                         model.config.feature_dim, getattr(model.audio_encoder, "log_mel_dim", None))
    train = _corpus_features(model, corpus, train_utts, closures, audio_net, progress)
    val = _corpus_features(model, corpus, val_utts, closures, audio_net, progress) if val_utts else []
    W = np.concatenate([it.weights for it in train])
    closure.covariance.copy_(torch.from_numpy(np.cov(W, rowvar=False)).float())
    X = torch.cat([it.inputs for it in train])
    y = torch.cat([it.labels for it in train])
    pos = float(y.sum())
    if pos == 0:
        raise ImitatorError(f"{corpus.root}: no m/b/p closure frames in the train split; the contact "
                            f"head needs closures (transcripts or phone timings)")
    mean, std = X.mean(0), X.std(0) + 1e-6  # standardise inputs by folding into the first layer
    optimizer = torch.optim.AdamW(closure.head.parameters(), lr=3e-3, weight_decay=1e-2)
    pos_weight = torch.tensor((len(y) - pos) / pos)
    Xn = (X - mean) / std
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(closure.head(Xn)[:, 0], y, pos_weight=pos_weight)
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # fold the standardisation into the first layer
        first = closure.head[0]
        first.bias -= (first.weight * (mean / std)).sum(1)
        first.weight /= std
    figures: dict[str, Any] = {"train_frames": int(len(y)), "train_closure_frames": int(pos),
                               "loss": float(loss.detach())}
    if closure.audio_net is not None:
        figures["audio_net_loss"] = _fit_audio_net(closure.audio_net, train, model.audio_encoder.rate,
                                                   audio_epochs, seed, progress)
    model.closure = closure
    model.config = model.config.replace(lip_closure=closure.options)
    if val:
        d = model.config.feature_dim
        with torch.no_grad():
            probs = []
            for it in val:
                audio_contact = (None if closure.audio_net is None else
                                 model.audio_contact_from_log_mel(it.mel[None], len(it.labels)))
                probs.append(model.contact(it.inputs[None, :, :d], it.inputs[None, :, d:], audio_contact)[0].numpy())
        labels = np.concatenate([it.labels.numpy() for it in val]) > 0.5
        # lips may close a little before or after the sound (the corpus leads by up to 120 ms):
        # "far" frames are more than 100 ms from any m/b/p, where a closure is plainly wrong
        reach = int(round(0.1 * model.config.fps))
        far = np.concatenate([np.convolve(it.labels.numpy(), np.ones(2 * reach + 1), "same") == 0 for it in val])
        p_all = np.concatenate(probs)
        figures["val"] = []
        for threshold in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            on = p_all >= threshold
            figures["val"].append({
                "threshold": threshold,
                "interval_recall": round(interval_recall(probs, [it.intervals for it in val], model.config.fps,
                                                         threshold), 4),
                "frame_precision": round(float((on & labels).sum() / max(on.sum(), 1)), 4),
                "false_positive_rate": round(float((on & ~labels).sum() / max((~labels).sum(), 1)), 4),
                "far_false_positive_rate": round(float((on & far).sum() / max(far.sum(), 1)), 4)})
        # the most closures while the lips close on few frames far from any m/b/p
        allowed = [row for row in figures["val"] if row["far_false_positive_rate"] <= max_false_positives]
        if allowed:
            high = min(row["threshold"] for row in allowed)
            closure.options.update(high=high, low=round(high / 2, 3))
            model.config = model.config.replace(lip_closure=closure.options)
    figures["chosen"] = {"low": closure.options["low"], "high": closure.options["high"]}
    return figures


# --------------------------------------------------------------------------- command line

def add_commands(sub: argparse._SubParsersAction) -> None:
    """``python -m core fit-closure --model M --data DIR --out M2``."""
    p = sub.add_parser("fit-closure", help="fit the contact head of closure-aware decoding (lips that "
                       "meet on m/b/p) on a corpus, the rest of the model frozen")
    p.add_argument("--model", type=str, required=True, help="model folder")
    p.add_argument("--data", type=str, required=True, help="corpus folder (its train split is used)")
    p.add_argument("--out", type=str, required=True, help="model folder to write (may be --model)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--lip-centres", help="'U,L': upper and lower lip centre vertex indices (default: "
                                         "the default head's, for a corpus on its topology)")
    p.add_argument("--no-audio-net", dest="audio_net", action="store_false",
                   help="only the contact head on viseme features, no audio contact net on log-mel frames")
    p.add_argument("--audio-epochs", type=int, default=80, help="passes of the audio contact net (default 80)")
    p.add_argument("--max-false-positives", type=float, default=0.02,
                   help="share of frames over 100 ms from any m/b/p the lips may close on, on the val "
                        "split; sets the contact threshold (default 0.02)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import hashlib
    import json

    from ..data.closure_labels import corpus_closures
    from ..data.commands import DEFAULT_HEAD_CACHE
    from ..data.vocaset import open_corpus
    from ..metrics import resolve_regions
    from .checkpoint import from_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = open_corpus(args.data)
    model = from_pretrained(args.model, topology=str(corpus.info.get("topology", "")) or None)
    if corpus.num_vertices != model.config.num_vertices:
        raise ImitatorError(f"{corpus.root}: the corpus has {corpus.num_vertices} vertices, the model "
                            f"{model.config.num_vertices}; use the corpus the model was trained on")
    if args.lip_centres:
        try:
            centres = tuple(int(x) for x in args.lip_centres.split(","))
        except ValueError:
            centres = ()
        if len(centres) != 2 or not all(0 <= c < corpus.num_vertices for c in centres):
            raise ImitatorError(f"--lip-centres {args.lip_centres!r}: give two vertex indices 'U,L' below "
                                f"{corpus.num_vertices}")
    else:
        ns = argparse.Namespace(lip_mask=None, upper_mask=None, lip_centres=None, flame_masks=None,
                                cache_dir=DEFAULT_HEAD_CACHE)
        centres = resolve_regions(corpus, ns).lip_centres
        if centres is None:
            raise ImitatorError(f"{corpus.root}: no lip centre vertices known for this mesh; pass "
                                f"--lip-centres U,L")
    utts = corpus.splits["train"] + corpus.splits.get("val", [])
    tag = hashlib.sha1(str(corpus.root.resolve()).encode()).hexdigest()[:12]
    closures = corpus_closures(corpus, utts, DEFAULT_HEAD_CACHE / f"closures-{tag}.json", progress=True)
    figures = fit_lip_closure(model, corpus, centres, closures, steps=args.steps,
                              audio_net=args.audio_net and hasattr(model.audio_encoder, "log_mel_dim"),
                              audio_epochs=args.audio_epochs, max_false_positives=args.max_false_positives,
                              seed=args.seed, progress=True)
    model.save_pretrained(args.out)
    print(json.dumps(figures, indent=1))
    print(f"wrote {args.out} (closure-aware decoding on; generate --no-lip-closure turns it off)")
    return 0
