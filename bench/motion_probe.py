"""Where the audio model's error lies: its own-style motion on sentences it was trained on.

    .venv/bin/python -m bench.motion_probe --model models/default --data data/corpus_v03
                                           [--every 4] [--per-subject 2] [--threads 1]

The adaptation bench's "trained-on" floor (training subjects' train-split utterances in their own
trained style) is several times the corpus generator's own error; this asks why, on every
``--every``-th training style. Each row is a lip vertex error (mm, per-frame max L2 over the lips,
closure-aware decoding on, as ``generate``):

* ``shift k``: the output moved k frames later (k < 0: earlier); a latency would make k != 0 best;
* ``decode``: autoregressive (as ``generate``) vs 1 and 2 parallel passes (as training decodes);
  a drift of the rollout would make the parallel passes better;
* ``gain``: the output's lip offsets scaled by their least-squares gain per utterance (> 1: the
  motion is too small, hedged), with the ratio of lip speeds (output / data);
* ``oracle``: the corpus's generator given the true phones (the mean over its random jitter) in
  the subject's style, with the style's timing parameters (lead, lag) set to the middle of their
  range, and with every other parameter at the middle instead (synthetic corpora only).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from bench.adapt_bench import GeneratorOracle, open_model_and_corpus, predict, test_set
from bench.common import report
from core.data.styles import STYLE_RANGES, Style, lip_vertex_error
from core.faces.default_head import load_default_head

SHIFTS = (-3, -2, -1, 0, 1, 2, 3)
TIMING = ("lead", "lag")
EDGE = 5  # frames left out at both ends, so that every shift scores the same frames


def shifted_error(pred: np.ndarray, target: np.ndarray, k: int) -> float:
    """LVE of ``pred`` moved k frames later, on the frames both cover (minus EDGE at each end)."""
    T = len(target)
    a, b = (pred[: T - k], target[k:]) if k >= 0 else (pred[-k:], target[: T + k])
    return lip_vertex_error(a[EDGE:-EDGE], b[EDGE:-EDGE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    parser.add_argument("--data", type=Path, required=True, help="the model's synthetic corpus")
    parser.add_argument("--every", type=int, default=4, help="probe every N-th training style (default 4)")
    parser.add_argument("--per-subject", type=int, default=2, help="train-split utterances per style (default 2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "imitator")
    parser.add_argument("--name", default="motion_probe", help="results/<name>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    corpus, regions, model = open_model_and_corpus(args.model, args.data, args.cache_dir)
    model.eval()
    fps, lips = model.config.fps, regions.lips
    oracle = GeneratorOracle.for_corpus(corpus, regions, fps, load_default_head(args.cache_dir))
    middle = Style(**{k: (lo + hi) / 2 for k, (lo, hi) in STYLE_RANGES.items()})
    decoders = {"autoregressive": model.viseme_features,
                "1 parallel pass": lambda f: model.viseme_decoder.parallel(f, 1),
                "2 parallel passes": lambda f: model.viseme_decoder.parallel(f, 2)}
    errors: dict[str, list[float]] = {}
    speeds = [0.0, 0.0]  # summed |frame differences| of output and data lip offsets

    def add(key: str, value: float) -> None:
        errors.setdefault(key, []).append(1000 * value)

    table = model.style_embedding.weight.detach().t()
    styles = model.config.styles[:: args.every]
    for subject in styles:
        style = table[model.config.styles.index(subject)]
        utts = [u for u in corpus.splits.get("train", []) if u.subject == subject][: args.per_subject]
        for name, decode in decoders.items():
            model.viseme_features = decode
            tests = test_set(model, corpus, utts)
            del model.viseme_features  # back to the method
            for utt, test in zip(utts, tests):
                pred, target = predict(model, test, style)[:, lips], test.target[:, lips]
                add(f"decode: {name}", lip_vertex_error(pred, target))
                if name != "autoregressive":
                    continue
                for k in SHIFTS:
                    add(f"shift {k:+d} frames", shifted_error(pred, target, k))
                offsets, truth = pred - test.template[lips], target - test.template[lips]
                gain = float((offsets * truth).sum() / (offsets * offsets).sum())
                add("gain: at the least-squares gain", lip_vertex_error(gain * offsets, truth))
                errors.setdefault("gain: the gain (x, not mm)", []).append(gain)
                speeds[0] += float(np.abs(np.diff(offsets, axis=0)).sum())
                speeds[1] += float(np.abs(np.diff(truth, axis=0)).sum())
                if oracle is None:
                    continue
                own = oracle.styles[subject]
                for label, variant in (("own style", own),
                                       ("own style, lead/lag at the middle", dataclasses.replace(
                                           own, **{k: getattr(middle, k) for k in TIMING})),
                                       ("only lead/lag of the own style", dataclasses.replace(
                                           middle, **{k: getattr(own, k) for k in TIMING}))):
                    verts = oracle.vertices(utt, test, [variant] * oracle.draws, 12)
                    add(f"oracle: {label}", lip_vertex_error(verts[:, lips], target[: len(verts)]))

    rows = [{"probe": key, "value": float(np.mean(v))} for key, v in errors.items()]
    rows.append({"probe": "gain: lip speed, output / data (x)", "value": speeds[0] / speeds[1]})
    report(args.name, rows, {"model": str(args.model), "data": str(args.data), "styles": styles,
                             "utterances": len(errors["shift +0 frames"]), "unit": "mm unless (x)"})


if __name__ == "__main__":
    main()
