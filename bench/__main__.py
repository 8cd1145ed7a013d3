"""Run every benchmark, each in its own process (Blender ones need a fresh bpy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ["bench.bake_bench", "bench.bake_default_head_bench", "bench.render_bench",
           "bench.kv_cache_bench", "bench.bilabial_bench", "bench.fuzz_bench", "bench.long_audio_bench",
           "bench.head_fit_bench", "bench.first_click_bench", "bench.real_speech_bench", "bench.train_bench"]
# Need a trained model and a corpus, so they are run on their own:
#   python -m bench.adapt_bench --model models/default --data data/corpus
#   python -m bench.motion_probe --model models/default --data data/corpus


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    only = sys.argv[1:]
    failed = 0
    for module in BENCHES:
        if only and not any(o in module for o in only):
            continue
        failed += subprocess.call([sys.executable, "-m", module], cwd=root) != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
