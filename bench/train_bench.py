"""Training speed: training frames per second for the shipped model config, the step time split
into data loading, audio features, viseme decoder, motion decoder + loss, backward and optimizer.

    python -m bench.train_bench [--data CORPUS] [--threads 2] [--steps 6]

Rows, measured in one run on the same data:
* ``reference``: the official recipe (one sequence per step, autoregressive viseme decoder,
  losses on vertex frames expanded from the ARKit weights on the device), as ``train`` runs with
  ``batch_size 1, decoder_passes 0, reduced_loss false``;
* ``fast``: the default recipe of the shipped model (batches of 16, two parallel decoder passes,
  Gram-matrix losses), and variants.
Without ``--data`` a small compact corpus is synthesized once into data/bench_train (TTS, about a
minute). Table + bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import report

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("data", "audio_features", "viseme_decoder", "motion_loss", "backward", "optimizer")
RECIPES = {  # name: (batch size, decoder passes, reduced loss)
    "reference": (1, 0, False),
    "batch16 rollout": (16, 0, True),
    "batch16, 2 passes": (16, 2, True),
    "batch32, 2 passes": (32, 2, True),
    "batch64, 2 passes": (64, 2, True),
}


def corpus_folder(data: Path | None) -> Path:
    if data is not None:
        return data
    folder = ROOT / "data" / "bench_train"
    if not (folder / "dataset.json").is_file():
        from core.data.commands import DEFAULT_HEAD_CACHE
        from core.data.synth import CorpusConfig, build_corpus
        from core.faces.default_head import load_default_head

        print(f"synthesizing a small corpus into {folder} (once)")
        build_corpus(folder, CorpusConfig(subjects=4, utterances=8, seed=0), load_default_head(DEFAULT_HEAD_CACHE),
                     progress=False)
    return folder


def measure(data: Path, recipe: tuple[int, int, bool], steps: int, max_frames: int, seed: int = 0) -> dict:
    """Seconds per phase over ``steps`` optimizer steps (after one warm-up step), frames trained."""
    from core.model.imitator import Imitator
    from core.train.loop import _arkit_basis, _closures, _crop, _Items, _to_batch, model_config_for, _Dist
    from core.train.reduced_loss import ReducedTargets
    from core.train.step import TrainStep
    from core.data.vocaset import open_corpus

    batch_size, passes, reduced_on = recipe
    config_json = json.loads((ROOT / "models" / "default" / "config.json").read_text())
    settings = {k: config_json[k] for k in ("encoder", "encoder_options", "lip_contact_weight")}
    corpus = open_corpus(data)
    utts = corpus.splits["train"]
    config = model_config_for(corpus, settings)
    closures = _closures(corpus, utts, data / ".bench_closures.json", _Dist(), False)
    basis_np = _arkit_basis(corpus, utts, None)
    basis = torch.from_numpy(basis_np)
    torch.manual_seed(seed)
    model = Imitator(config)
    torch.nn.init.normal_(model.motion_decoder.final.weight, std=1e-3)
    step = TrainStep(model, passes, 1, ReducedTargets(basis_np) if reduced_on else None).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    times = dict.fromkeys(PHASES, 0.0)
    frames = 0
    items = None
    for k in range(steps + 1):
        t = [time.perf_counter()]
        if items is None:  # first pass over the corpus reads and decodes its files
            items = _Items(corpus, utts, config, closures, True, cache=True)
        picks = rng.integers(0, len(items), batch_size)
        batch = _to_batch([_crop(items[int(i)], max_frames, rng, config.sample_rate, config.fps) for i in picks],
                          torch.device("cpu"), None if reduced_on else basis)
        t.append(time.perf_counter())
        features = step.features(batch)
        t.append(time.perf_counter())
        visemes = step.visemes(features)
        t.append(time.perf_counter())
        terms = step.loss(visemes, batch)
        t.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        t.append(time.perf_counter())
        optimizer.step()
        t.append(time.perf_counter())
        if k == 0:
            continue  # warm-up (and the one-off decoding of the corpus files)
        for name, a, b in zip(PHASES, t[:-1], t[1:]):
            times[name] += b - a
        frames += sum(batch.lengths)
    total = sum(times.values())
    return {"frames_per_s": frames / total, "step_s": total / steps, "frames_per_step": frames / steps,
            **{f"{name}_%": 100 * times[name] / total for name in PHASES}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="corpus folder (default: a small synthesized one)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per recipe")
    p.add_argument("--max-frames", type=int, default=90, help="training window, frames (default 3 s)")
    p.add_argument("--recipes", help="comma-separated substrings of the recipes to run (default all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = corpus_folder(args.data)
    rows = []
    for name, recipe in RECIPES.items():
        if args.recipes and not any(r.strip() in name for r in args.recipes.split(",")) and name != "reference":
            continue
        steps = max(2, args.steps // (4 if recipe[0] == 1 else 1)) if recipe[1] == 0 else args.steps
        r = measure(data, recipe, steps, args.max_frames)
        rows.append({"recipe": name, "batch": recipe[0], "decoder_passes": recipe[1],
                     "reduced_loss": recipe[2], **{k: round(v, 1) for k, v in r.items()}})
    base = rows[0]["frames_per_s"]
    for row in rows:
        row["speedup"] = round(row["frames_per_s"] / base, 1)
    report("train", rows, {"threads": args.threads, "max_frames": args.max_frames, "data": str(data)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
