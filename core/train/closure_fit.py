"""Fitting closure-aware decoding (``python -m core fit-closure``): the contact head and the audio
contact net of ``core.model.closure`` trained on a corpus's m/b/p frames, the rest of the model frozen,
and the decoding thresholds picked on the val split."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ImitatorError
from ..model.closure import AudioContactNet, LipClosure

log = logging.getLogger(__name__)


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
    from ..bilabial import interval_frames

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
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import hashlib
    import json

    from ..data.closure_labels import corpus_closures
    from ..data.commands import DEFAULT_HEAD_CACHE
    from ..data.vocaset import open_corpus
    from ..evaluate.metrics import resolve_regions
    from ..model.checkpoint import from_pretrained

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
