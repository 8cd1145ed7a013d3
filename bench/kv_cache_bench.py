"""KV cache vs the reference's full-prefix recomputation, and the shipped model's whole pipeline on 60 s.

    .venv/bin/python -m bench.kv_cache_bench [--seed N] [--threads N] [--full-3000]

Decoder at the reference size (d=64, 4 heads, FF 128, 1 layer), random weights and audio memory.
"reference" re-runs the decoder on the whole prefix at every frame, as the official ``predict``
does; "cached" is ``VisemeDecoder.forward``. At 3000 frames the reference takes minutes, so unless
``--full-3000`` is given its time is estimated: one reference step at prefix length n costs one
decoder pass over n frames; passes are timed at 13 lengths and integrated (trapezoid). The same
estimate is reported at 600 frames next to the measured time, to show how good it is.
Both paths run with ``--threads`` intra-op threads (default 1: at this tensor size more threads
only wait, and on a loaded 2-core machine the reference ran 10x slower with 2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import report, timed
from core.model import Imitator, ImitatorConfig
from core.model.imitator import memory_mask, self_attention_mask


def reference_pass_time(model: Imitator, memory: torch.Tensor, n: int, repeat: int = 3) -> float:
    """Seconds of one reference step at prefix length n (one decoder pass over n frames)."""
    dec = model.viseme_decoder
    tokens = torch.randn(1, n, memory.shape[-1])
    mask = self_attention_mask(model.config, n)
    mm = memory_mask(n, memory.shape[1])

    def one() -> None:
        x = dec.positional_encoding(tokens)
        for layer in dec.layers:
            x = layer(x, memory, tgt_mask=mask, memory_mask=mm)

    return timed(one, repeat)


def estimated_reference(model: Imitator, memory: torch.Tensor, T: int) -> float:
    lengths = np.unique(np.linspace(1, T, 13).astype(int))
    times = [reference_pass_time(model, memory, int(n)) for n in lengths]
    grid = np.arange(1, T + 1)
    return float(np.interp(grid, lengths, times).sum())


def pipeline_seconds(seconds: float, seed: int) -> tuple[float, int]:
    """End-to-end ``generate`` with the shipped default model (log-mel encoder with its context
    blocks, closure-aware decoding, 5,034-vertex head): what Generate runs."""
    from core.model.checkpoint import from_pretrained
    from core.model.generate import generate

    model = from_pretrained(Path(__file__).resolve().parents[1] / "models" / "default")
    audio = (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)
    frames = []
    t = timed(lambda: frames.append(generate(model, audio, 16000, 0).num_frames), repeat=3)
    return t, frames[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-3000", action="store_true", help="measure the reference at 3000 frames")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Imitator(ImitatorConfig(encoder="logmel", num_vertices=10)).eval()

    rows = []
    with torch.no_grad():
        for T in (600, 3000):
            memory = torch.randn(1, T, 64)
            t0 = time.perf_counter()
            cached = model.viseme_decoder(memory)
            cached_s = min(time.perf_counter() - t0, timed(lambda: model.viseme_decoder(memory), 2))
            if T <= 600 or args.full_3000:
                t0 = time.perf_counter()
                reference = model.viseme_decoder.full_prefix(memory)
                ref_s, how = time.perf_counter() - t0, "measured"
                max_diff = float((cached - reference).abs().max())
            else:
                ref_s, how, max_diff = estimated_reference(model, memory, T), "estimated", float("nan")
            rows.append({"frames": T, "reference_s": round(ref_s, 3), "reference": how,
                         "cached_s": round(cached_s, 4), "speedup": round(ref_s / cached_s, 1),
                         "cached_ms_per_frame": round(1000 * cached_s / T, 3), "max_abs_diff": max_diff})
            if T == 600:
                est = estimated_reference(model, memory, T)
                rows.append({"frames": T, "reference_s": round(est, 3), "reference": "estimated",
                             "cached_s": round(cached_s, 4), "speedup": round(est / cached_s, 1),
                             "cached_ms_per_frame": round(1000 * cached_s / T, 3),
                             "max_abs_diff": float("nan")})
    pipe_s, frames = pipeline_seconds(60.0, args.seed)
    extra = {"threads": args.threads, "seed": args.seed, "decoder": "d=64, 4 heads, FF 128, 1 layer",
             "pipeline_60s_default_model_s": round(pipe_s, 3), "pipeline_frames": frames,
             "pipeline_real_time_factor": round(pipe_s / 60.0, 4)}
    report("kv_cache", rows, extra)
    print(f"pipeline: 60 s of audio -> {frames} frames in {pipe_s:.3f} s (shipped default model, "
          f"{args.threads} thread(s)): real-time factor {pipe_s / 60:.4f}")


if __name__ == "__main__":
    main()
