"""Click-to-keys of the first and the second Generate in a fresh Blender session, without and with
the warm-up the Imitator tab starts when it is first drawn (10 s of speech, shipped model, default
head, 2 threads). Each row runs in its own process (torch is imported once per process).

    python -m bench.first_click_bench
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import report  # noqa: E402

SECONDS = 10.0


def one_session(zip_path: Path, warm: bool, head: str) -> dict:
    """In this (fresh) process: install, add a head, Generate twice; the times as a row."""
    from tools.blender_session import install_extension, isolate_home

    tmp = Path(tempfile.mkdtemp(prefix="imitator-bench-"))
    isolate_home(tmp / "home")
    import bpy

    module = install_extension(zip_path)
    ext = lambda name: importlib.import_module(f"{module}.{name}")  # noqa: E731
    audio = ext("core.audio")
    sample = audio.load_audio(ROOT / "models" / "sample" / "sample.wav")
    speech = np.tile(sample, int(np.ceil(SECONDS * 16000 / len(sample))))[: int(SECONDS * 16000)]
    audio.save_wav(tmp / "speech.wav", speech, 16000, "PCM_16")
    bpy.ops.imitator.add_default_head()
    bpy.context.scene.imitator.audio_path = str(tmp / "speech.wav")
    warm_s = None
    if warm:  # what drawing the tab starts; the user reads the panel, picks the audio ...
        t0 = time.perf_counter()
        ext("imitator_blender.warmup").warm_up_once(bpy.context)
        ext("imitator_blender.warmup").MODELS._thread.join()
        warm_s = time.perf_counter() - t0
    clicks = []
    for _ in range(2):
        t0 = time.perf_counter()
        assert bpy.ops.imitator.generate() == {"FINISHED"}
        clicks.append(time.perf_counter() - t0)
    return {"session": "warm-up first" if warm else "cold", "head": head, "warmup_s": warm_s,
            "first_click_s": round(clicks[0], 3), "second_click_s": round(clicks[1], 3)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--session":
        print(json.dumps(one_session(Path(sys.argv[2]), sys.argv[3] == "warm", "default head")))
        return
    import build

    zip_path = build.build(Path(tempfile.mkdtemp(prefix="imitator-bench-dist-")))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    rows = []
    for mode in ("cold", "warm"):
        out = subprocess.run([sys.executable, "-m", "bench.first_click_bench", "--session", str(zip_path), mode],
                             cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append({k: (round(v, 3) if isinstance(v, float) else ("-" if v is None else v)) for k, v in row.items()})
    report("first_click", rows, {"audio_seconds": SECONDS, "threads": 2})


if __name__ == "__main__":
    main()
