"""Hours-long audio: peak memory and time of ``python -m core generate`` on 1 and 60 minutes.

    python -m bench long_audio        # or: python -m bench.long_audio_bench [--minutes 1 60]

The audio (speech-like noise with a syllable-rate envelope, 16 kHz 16-bit mono WAV) is written in
blocks, then the CLI runs in a child process exactly as a user runs it (shipped default model, 1
torch thread, npz out). The row gives the frames written, wall seconds, the real-time factor and the
child's peak resident memory (``ru_maxrss``): streaming keeps memory flat, so 60 minutes should
cost about what 1 minute does plus the output's weights. Table on stdout, JSON in
bench/results/long_audio.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import report

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def write_speech_like(path: Path, minutes: float, seed: int = 0) -> None:
    """Minutes of speech-like noise, written a minute at a time (bounded memory)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16", format="WAV") as f:
        for start in range(0, int(minutes * 60 * SR), 60 * SR):
            n = min(60 * SR, int(minutes * 60 * SR) - start)
            t = (start + np.arange(n)) / SR
            envelope = np.clip(np.sin(2 * np.pi * 3.1 * t) * np.sin(2 * np.pi * 0.23 * t) * 1.3, 0, 1)
            f.write((0.25 * envelope * rng.normal(size=n)).astype(np.float32))


def run_child(audio: Path, out: Path, model: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stdout of one generate in a fresh child process."""
    code = ("import resource, sys; from core.cli import main; rc = main(sys.argv[1:]); "
            "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    cmd = [sys.executable, "-c", code, "generate", "--audio", str(audio), "--model", str(model),
           "--out", str(out), "--threads", "1"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"generate failed: {proc.stderr[-2000:]}")
    peak = int(next(ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("peak_kib")))
    return seconds, peak, proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    args = p.parse_args(argv)
    from core.animation import Animation

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            audio, out = Path(tmp) / f"speech-{minutes:g}min.wav", Path(tmp) / f"anim-{minutes:g}.npz"
            write_speech_like(audio, minutes)
            seconds, peak, _ = run_child(audio, out, args.model)
            anim = Animation.load(out)
            rows.append({"audio_minutes": minutes, "frames": anim.num_frames, "fps": anim.fps,
                         "seconds": round(seconds, 1), "real_time_factor": round(seconds / (minutes * 60), 4),
                         "peak_rss_mib": round(peak / 1024), "wav_mib": round(audio.stat().st_size / 2**20),
                         "npz_mib": round(out.stat().st_size / 2**20, 1)})
            audio.unlink()
    report("long_audio", rows, {"model": str(args.model), "threads": 1,
                                "command": "python -m bench long_audio"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
